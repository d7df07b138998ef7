#ifndef TESTS_INTEGRATION_STRESS_H_
#define TESTS_INTEGRATION_STRESS_H_

// What the fault and load tests share: a node whose daemon can be killed and
// started again over the same instance base, processes with piped stdio that
// a test drives without blocking, and a census of what runs in a pod.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "mounthelper.grpc.pb.h"
#include "tests/integration/harness.h"

namespace sc::test {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

// A node: a temp dir with an instance base (optionally a tmpfs of a given
// size), a layer root holding a busybox layer, and the real daemon on it.
// Instances are named ns/<name>. Calls are made as an operator (the test
// process is root in the daemon's namespaces), each with a 30 s deadline.
class InstanceNode {
 public:
  // `base_tmpfs_size`: "" for a plain directory, else a tmpfs size= value
  // ("8m"): the instance base, and so every upper layer, lives on it.
  explicit InstanceNode(std::vector<std::string> extra_args = {},
                        const std::string& base_tmpfs_size = "");
  ~InstanceNode();
  InstanceNode(const InstanceNode&) = delete;
  InstanceNode& operator=(const InstanceNode&) = delete;

  // (Re)starts the daemon on the same base; REQUIREs that it serves.
  void Start();
  // SIGKILL, reaped.
  void Kill();
  DaemonProcess& daemon() { return *daemon_; }
  const std::string& socket() const { return socket_; }

  grpc::Status Prepare(const std::string& name, v1::Instance* out = nullptr);
  grpc::Status Release(const std::string& name, bool delete_data = false,
                       v1::ReleaseRootfsResponse* out = nullptr);
  grpc::Status Get(const std::string& name, v1::Instance* out);
  grpc::Status List(v1::ListInstancesResponse* out);

  std::string InstanceDir(const std::string& name) const { return base + "/ns/" + name; }
  std::string Rootfs(const std::string& name) const { return InstanceDir(name) + "/rootfs"; }

  // A consumer pod of instance `name`: its rootfs bound at /rootfs, the
  // node's directory (socket) bound in.
  std::unique_ptr<SimulatedPod> ConsumerPod(const std::string& name) const;
  // argv of sc-exec against this node's socket.
  std::vector<std::string> ScExec(const std::vector<std::string>& args) const;

  TempDir dir;
  std::string base;
  std::string layers;
  std::string busybox;

 private:
  std::vector<std::string> args_;
  std::string socket_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::MountHelper::Stub> stub_;
};

// A process with stdin, stdout and stderr on pipes (the test's ends
// non-blocking) in a process group of its own; the group is SIGKILLed and
// the process reaped on destruction.
class PipedProcess {
 public:
  explicit PipedProcess(const std::vector<std::string>& argv);
  ~PipedProcess();
  PipedProcess(const PipedProcess&) = delete;
  PipedProcess& operator=(const PipedProcess&) = delete;

  pid_t pid() const { return pid_; }
  int stdin_fd() const { return in_.get(); }
  int stdout_fd() const { return out_.get(); }
  int stderr_fd() const { return err_.get(); }
  void CloseStdin() { in_.reset(); }
  void CloseStdout() { out_.reset(); }
  void CloseStderr() { err_.reset(); }

  // Reads what is there now (never blocks) into out()/err(); false for a
  // stream at EOF (its fd is then closed).
  bool DrainStdout();
  bool DrainStderr();
  // Reads stdout until `needle` is in out(), bounded.
  bool WaitForOutput(const std::string& needle, std::chrono::milliseconds timeout);
  // Drains both streams until the process exits; its exit code, 128+N for
  // signal N, -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  // The exit status once reaped by Wait or TryReap; -1 before.
  int status() const { return status_; }
  // Reaps without waiting; true once reaped.
  bool TryReap();

  std::string& out() { return out_data_; }
  const std::string& err() const { return err_data_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  UniqueFd pidfd_;
  UniqueFd in_, out_, err_;
  std::string out_data_, err_data_;
};

// Host pids of the processes in the pod's container cgroup.
std::set<pid_t> PodProcesses(const SimulatedPod& pod);
// "pid comm state" of each, for messages.
std::string DescribeProcesses(const std::set<pid_t>& pids);
// Host pids whose command line contains `marker`.
std::vector<pid_t> ProcessesWith(const std::string& marker);
// Mount points at or below `dir` with how often each is mounted there.
std::vector<std::pair<std::string, int>> StackedMounts(const std::string& dir);
// Mounts in the namespace of `pid` (lines of its mountinfo), leaving out
// those below /tmp that are not below `own_dir`: a simulated pod binds the
// host's /tmp, so every other test's mounts there propagate into it, and
// they are not the daemon's doing. What the daemon could leave (the rootfs,
// the node's directory, /dev, /proc) is still counted.
size_t MountCount(pid_t pid, const std::string& own_dir);
// The daemon's VmRSS in KiB.
long RssKiB(pid_t pid);
// Zombies among the processes.
int Zombies(const std::set<pid_t>& pids);
// An environment for a child (explicit, no SC_* leaks), with the sanitizer's
// options when the test runs under one.
std::vector<std::string> ChildEnv(std::vector<std::string> env = {});
// An integer from the environment, or `fallback`.
long EnvNumber(const char* name, long fallback);

// A deterministic byte stream (xorshift) so that a reader checks what a
// writer sent without keeping it.
class ByteStream {
 public:
  explicit ByteStream(uint64_t seed) : state_(seed * 2654435761u + 1) {}
  void Fill(char* data, size_t n);

 private:
  uint64_t state_;
  uint64_t word_ = 0;
  int left_ = 0;
};

}  // namespace sc::test

#endif  // TESTS_INTEGRATION_STRESS_H_
