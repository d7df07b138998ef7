#ifndef TESTS_INTEGRATION_HARNESS_H_
#define TESTS_INTEGRATION_HARNESS_H_

// The integration tests' view of a node: the real daemon binary on a real
// socket, real processes in real namespaces and kubelet-shaped cgroups. Every
// helper here cleans up after itself in its destructor, also when a test
// fails; every wait is bounded.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sc::test {

using std::chrono::milliseconds;

// True when the test may go on. When not root: under CI=true the test fails,
// otherwise it is skipped with a message.
bool RequireRoot();
// A test that cannot run on this machine: under CI=true that is a failure
// (FAIL with `under_ci`), elsewhere a skip (WARN with `skipped`). The test
// returns after it.
void SkipOrFailUnderCi(const std::string& under_ci, const std::string& skipped);
#define SC_REQUIRE_ROOT()                   \
  do {                                      \
    if (!::sc::test::RequireRoot()) return; \
  } while (0)

// Paths of the binaries under test.
std::string DaemonBinary();
std::string ScExecBinary();
std::string TestClientBinary();  // sc-test-client SOCKET METHOD [TEXTPROTO]

// A fresh directory under /tmp named sc-test-*. On destruction, anything
// still mounted below it is detached (deepest first) and the tree removed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Mount points at or below `dir` in /proc/self/mountinfo, deepest first.
std::vector<std::string> MountsUnder(const std::string& dir);
// Unmounts everything at or below `dir` (MNT_DETACH), deepest first.
void UnmountUnder(const std::string& dir);

struct ProcessResult {
  bool timed_out = false;
  int exit_code = -1;  // set when the process exited
  int signal = 0;      // set when it was killed by a signal
  std::string out;
  std::string err;
  // "exited 3", "killed by signal 9", "timed out"; for messages.
  std::string Describe() const;
};

struct RunOptions {
  std::string stdin_data;
  bool close_stdin = true;       // false: stdin stays open (never written) until exit
  std::vector<std::string> env;  // empty: inherit the test's environment
  milliseconds timeout{30000};
};

// Runs a command on the host, feeding stdin and collecting stdout/stderr
// concurrently. A process still running at the timeout is SIGKILLed.
ProcessResult Run(const std::vector<std::string>& argv, const RunOptions& options = {});

// The real sc-mount-helper, started with --socket, --audit_log and --ready_fd
// (waits until it says READY, at most 10 s) plus `extra_args`.
class DaemonProcess {
 public:
  DaemonProcess(const std::string& socket_path, std::vector<std::string> extra_args = {});
  ~DaemonProcess();  // SIGKILL if still running, then reap
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& socket_path() const { return socket_path_; }
  const std::string& audit_log_path() const { return audit_log_; }
  // Everything the daemon printed (human log) so far.
  std::string Log() const;
  std::string AuditLog() const;

  // Sends SIGTERM and waits (bounded) for the exit status; -1 on timeout.
  int Terminate(milliseconds timeout = milliseconds(15000));
  // SIGKILL and reap.
  void Kill();
  // Number of open fds and of child processes of the daemon, from /proc.
  int OpenFdCount() const;
  int ChildCount() const;

 private:
  std::string dir_;
  std::string socket_path_;
  std::string audit_log_;
  std::string log_path_;
  std::vector<std::string> cgroup_dirs_;  // its own, below kubepods/
  pid_t pid_ = -1;
};

// Runs a command through the static sc-exec on the host against `socket`.
ProcessResult RunScExec(const std::string& socket, const std::vector<std::string>& args,
                        const RunOptions& options = {});

// A pod as the kubelet and a runtime would make it, without either: a process
// tree in its own mount, pid, net, uts and ipc namespaces, in the cgroup
// <hierarchy>/kubepods/<qos>/pod<uid>/<container-id> of every mounted cgroup
// hierarchy (v1 and v2), with optional bind mounts. The pod's pid 1 is a
// reaper that runs until the pod is destroyed.
struct PodOptions {
  std::string qos = "besteffort";  // besteffort, burstable or guaranteed
  std::string hostname = "sc-test-pod";
  // Host directory bound at /rootfs in the pod (rbind, rslave: like a
  // hostPath with HostToContainer propagation). Empty: none.
  std::string rootfs_host_path;
  // Extra host paths bound at the same path inside the pod (e.g. the
  // directory holding the daemon's socket). The pod's mount namespace is a
  // private copy of the host's, so everything else but /dev is visible as on
  // the host.
  std::vector<std::string> binds;
  // Extra environment for the pod's pid 1 (e.g. "ROOTFS_MARKER=true").
  std::vector<std::string> init_env;
  // Host directory used as the read-only lower layer of an overlay that is
  // the pod's root (upper and work on a tmpfs of the pod), the way a runtime
  // mounts a container's image; the host directories are bound into it as
  // usual. Empty: the root is a plain tmpfs.
  std::string root_lower;
  // Host device nodes the pod was given (a volumeDevices entry, a device
  // plugin's device): made in its /dev at the same path. Its /dev is
  // otherwise what runc gives a container (the runtime-spec's default set).
  std::vector<std::string> devices;
};

class SimulatedPod {
 public:
  explicit SimulatedPod(PodOptions options = {});
  ~SimulatedPod();  // kills the pod's processes, removes its cgroups
  SimulatedPod(const SimulatedPod&) = delete;
  SimulatedPod& operator=(const SimulatedPod&) = delete;

  bool started() const { return init_pid_ > 0; }
  const std::string& uid() const { return uid_; }
  const std::string& container_id() const { return container_id_; }
  // The host pid of the pod's pid 1 (its namespaces are the pod's).
  pid_t init_pid() const { return init_pid_; }
  // cgroup directories of the container, one per hierarchy.
  const std::vector<std::string>& cgroup_dirs() const { return cgroup_dirs_; }

  // Runs a command inside the pod: its namespaces (joined with setns, then a
  // fork so that it is really in the pid namespace) and its cgroup.
  ProcessResult Exec(const std::vector<std::string>& argv, const RunOptions& options = {});
  // The argv prefix that runs a command inside the pod (for Run() with
  // custom I/O): {"/proc/self/exe"-equivalent, "__sc_pod_exec", pid, ...}.
  std::vector<std::string> ExecPrefix() const;

 private:
  PodOptions options_;
  std::string uid_;
  std::string container_id_;
  std::vector<std::string> cgroup_dirs_;
  std::string pod_root_;     // host directory the pod's root tmpfs is mounted on
  pid_t launcher_pid_ = -1;  // our child; it waits for the pod's pid 1
  pid_t init_pid_ = -1;
};

// Entry points of the re-executed test binary (see main.cc): argv[1] is
// "__sc_pod_init" or "__sc_pod_exec". Return the process exit code.
int PodInitMain(int argc, char** argv);
int PodExecMain(int argc, char** argv);
int PodReaperMain();

// A busybox root filesystem in `dir`: /bin/busybox from Debian's
// busybox-static with every applet as a symlink, /etc/passwd, /tmp (1777).
void MakeBusyboxTree(const std::string& dir);

// A process left running while the test goes on: stdout and stderr go to a
// file, stdin is /dev/null. Destruction SIGKILLs and reaps it if still there.
class BackgroundProcess {
 public:
  explicit BackgroundProcess(const std::vector<std::string>& argv);
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig) const;
  // Waits (bounded) for the exit; the result has timed_out set if it did not.
  ProcessResult Wait(milliseconds timeout);
  // What it printed so far (stdout and stderr, interleaved).
  std::string Output() const;

 private:
  pid_t pid_ = -1;
  std::string output_path_;
};

// REQUIRE that a grpc::Status is OK, showing its code and message if not.
#define REQUIRE_OK(expr)                                 \
  do {                                                   \
    grpc::Status _s = (expr);                            \
    INFO(_s.error_code() << ": " << _s.error_message()); \
    REQUIRE(_s.ok());                                    \
  } while (0)

// Polls `condition` every 10 ms until it holds or `timeout` passes. For
// states that have no event to wait on (a kernel table, another process).
bool PollUntil(const std::function<bool()>& condition, milliseconds timeout);

// Whether `text` contains `part`: most output checks are this.
inline bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Random lowercase hex of `n` characters.
std::string RandomHex(size_t n);

// The whole file, or what could be read of it: empty when it cannot be
// opened, short when it vanishes mid-read (a /proc file of an exiting process).
std::string ReadFile(const std::string& path);

// How many /proc/<pid> directories the proc mounted at `proc` lists.
int ProcessEntries(const std::string& proc);

// A root process in the test's (= the daemon's) namespaces, an operator to
// the daemon, started with exactly the pid `pid` (clone3 set_tid: unlike
// writing ns_last_pid and forking, no other process can take the pid in
// between), to play whoever gets a dead caller's pid. The constructor returns
// once it has execve()d sleep: until then it is a copy of the test, holding
// every fd the test holds (a dead caller's socket among them, which on
// kernels without SO_PEERPIDFD is what proves a caller). Destruction
// SIGKILLs and reaps it.
class ProcessWithPid {
 public:
  explicit ProcessWithPid(pid_t pid);
  ~ProcessWithPid();
  ProcessWithPid(const ProcessWithPid&) = delete;
  ProcessWithPid& operator=(const ProcessWithPid&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// Sends `fd` over the Unix socket `socket` with one byte of data. Makes
// syscalls only, so a forked child of a threaded test may call it.
bool SendFd(int socket, int fd);
// Receives one fd sent that way (close-on-exec); -1 when none came.
int ReceiveFd(int socket);

}  // namespace sc::test

#endif  // TESTS_INTEGRATION_HARNESS_H_
