// Security checks as tests (issue 6, item 6): from a simulated consumer pod,
// through the static sc-exec, a workload tries to leave what the daemon put it
// in, and each test asserts how the attempt fails. The attempts are made by
// sc-escape-probe (tests/tools/escape_probe.cc), copied into the instance's
// image, which prints the kernel's answer to each.
//
// What exec_test.cc already shows is not repeated here: a pod sees only its
// own /rootfs, the workload's namespaces, cgroup, capabilities (none),
// no_new_privs, seccomp mode, fds 0-2 by number, `mount -t tmpfs` and
// `unshare -U` failing, a pod naming an instance being refused; rootfs_test.cc
// covers symlinks in requests' paths.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <linux/bpf.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/unique_fd.h"
#include "mounthelper.grpc.pb.h"
#include "tests/integration/harness.h"

extern char** environ;

namespace sc::test {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::stoppablecontainer::mounthelper::v1;
using Clock = std::chrono::steady_clock;

constexpr uid_t kUser = 1000;

std::string DevIno(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "<" + std::string(strerror(errno)) + ">";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

// The lines of `text`, sorted.
std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> Sorted(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  std::sort(a.begin(), a.end());
  return a;
}

// What `ls -A /dev` shows in a container (the OCI runtime-spec's defaults).
std::vector<std::string> DefaultDev() {
  return {"fd",  "full",   "mqueue", "null",   "ptmx", "pts",     "random",
          "shm", "stderr", "stdin",  "stdout", "tty",  "urandom", "zero"};
}

// A node with two instances, a and b, each with a consumer pod. The image
// holds the probe (also as a setuid-root copy), busybox, a marker, and
// symlinks that point out of the rootfs. Instances are prepared on a mount of
// their own that propagates nothing, and b after pod A started: pod A has
// not mounted b in any form (the simulated pods see the host's /tmp).
struct EscapeNode {
  TempDir dir;
  std::string run = dir / "run";
  std::string layers = dir / "layers";
  std::string image = layers + "/image";
  std::string instances = dir / "instances";
  std::string host_marker = "host-marker-" + RandomHex(8);
  std::string rootfs_a = instances + "/ns/a/rootfs";
  std::string rootfs_b = instances + "/ns/b/rootfs";
  std::string secret_b = "secret-of-b-" + RandomHex(8);
  std::unique_ptr<DaemonProcess> daemon;
  std::unique_ptr<SimulatedPod> pod_a;
  std::unique_ptr<SimulatedPod> pod_b;

  EscapeNode() {
    // uid 1000 must reach the socket and the images.
    REQUIRE(chmod(dir.path().c_str(), 0755) == 0);
    fs::create_directories(run);
    fs::create_directories(instances);
    MakeBusyboxTree(image);
    for (const char* name : {"probe", "probe-suid"}) {
      fs::copy_file(SC_ESCAPE_PROBE_BIN, image + "/bin/" + name);
    }
    REQUIRE(chown((image + "/bin/probe-suid").c_str(), 0, 0) == 0);
    REQUIRE(chmod((image + "/bin/probe-suid").c_str(), 04755) == 0);
    std::ofstream(image + "/image-marker") << "inside\n";
    std::ofstream(dir / host_marker) << "outside\n";
    fs::create_symlink("/", image + "/evil");
    fs::create_symlink("../../../../../../../..", image + "/evil-rel");
    fs::create_symlink("/proc/1/root", image + "/evil-proc");
    fs::create_symlink(dir / host_marker, image + "/evil-host");
    REQUIRE(mount(instances.c_str(), instances.c_str(), nullptr, MS_BIND, nullptr) == 0);
    REQUIRE(mount(nullptr, instances.c_str(), nullptr, MS_PRIVATE, nullptr) == 0);
    StartDaemon();
    Prepare("a");
    pod_a = MakePod(rootfs_a);
    Prepare("b");
    std::ofstream(rootfs_b + "/" + secret_b) << secret_b << "\n";
    pod_b = MakePod(rootfs_b);
  }

  // A new daemon with the same flags, once the old one (if any) is killed.
  void StartDaemon() {
    daemon.reset();
    daemon = std::make_unique<DaemonProcess>(
        run + "/mh.sock",
        std::vector<std::string>{"--instance_base=" + instances, "--layer_root=" + layers,
                                 "--socket_mode=0666", "--exec_kill_grace=1s"});
    REQUIRE(daemon->started());
  }

  void Prepare(const std::string& name) {
    ProcessResult r =
        Run({TestClientBinary(), daemon->socket_path(), "PrepareRootfs",
             "instance{namespace:\"ns\" name:\"" + name + "\"} layers{paths:\"" + image + "\"}"});
    INFO(r.Describe() << r.err);
    REQUIRE(r.exit_code == 0);
  }

  std::unique_ptr<SimulatedPod> MakePod(const std::string& rootfs) {
    PodOptions options;
    options.rootfs_host_path = rootfs;
    options.binds = {run};
    auto pod = std::make_unique<SimulatedPod>(options);
    REQUIRE(pod->started());
    return pod;
  }

  std::vector<std::string> ScExec(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {ScExecBinary(), "--socket", daemon->socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  // sc-exec in a pod, as its root or as `uid`.
  ProcessResult InPod(SimulatedPod& pod, const std::vector<std::string>& args, uid_t uid = 0) {
    std::vector<std::string> argv;
    if (uid != 0) {
      argv = {"/usr/bin/setpriv", "--reuid=" + std::to_string(uid),
              "--regid=" + std::to_string(uid), "--clear-groups"};
    }
    for (const std::string& a : ScExec(args)) argv.push_back(a);
    return pod.Exec(argv);
  }
  // A script run by sh in pod A's rootfs, from /.
  ProcessResult ShInA(const std::string& script, uid_t uid = 0) {
    return InPod(*pod_a, {"--workdir", "/", "sh", "-c", script}, uid);
  }
  // An operator's exec into an instance (fresh namespaces).
  ProcessResult AsOperator(const std::string& instance, const std::string& script,
                           const std::string& workdir = "/") {
    return Run(ScExec({"--instance", "ns/" + instance, "--workdir", workdir, "sh", "-c", script}));
  }
};

// A process whose stdin stays open until Release(): a workload that holds
// still (`probe hold`) while the test looks at it from the host.
class Held {
 public:
  explicit Held(const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) FAIL("pipe2");
    UniqueFd in_r(in[0]), out_w(out[1]);
    in_.reset(in[1]);
    out_.reset(out[0]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_r.get(), 0);
    posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, out_w.get(), 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Held() {
    Release();
    if (pid_ > 0 &&
        !PollUntil([&] { return waitpid(pid_, nullptr, WNOHANG) == pid_; }, milliseconds(15000))) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // Reads until `needle` was printed (bounded).
  bool WaitFor(const std::string& needle) {
    auto deadline = Clock::now() + std::chrono::seconds(20);
    while (!Has(output_, needle) && Clock::now() < deadline) {
      pollfd pfd{out_.get(), POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t n = read(out_.get(), buf, sizeof(buf));
      if (n <= 0) break;
      output_.append(buf, static_cast<size_t>(n));
    }
    return Has(output_, needle);
  }
  void Release() { in_.reset(); }
  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  UniqueFd in_;
  UniqueFd out_;
  std::string output_;
};

// The workload whose command line contains `marker`, or 0: a child of the
// daemon (a streaming session) or of a session's keeper (by reference).
pid_t WorkloadWith(const DaemonProcess& daemon, const std::string& marker) {
  auto parent_of = [](const std::string& pid) {
    std::string stat = ReadFile("/proc/" + pid + "/stat");
    size_t close = stat.rfind(')');
    if (close == std::string::npos) return std::string();
    std::istringstream rest(stat.substr(close + 2));
    std::string state, ppid;
    rest >> state >> ppid;
    return ppid;
  };
  const std::string daemon_pid = std::to_string(daemon.pid());
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (!Has(ReadFile(entry.path() / "cmdline"), marker)) continue;
    std::string ppid = parent_of(name);
    if (ppid.empty()) continue;
    if (ppid == daemon_pid ||
        ReadFile("/proc/" + ppid + "/cmdline").rfind("sc-mount-helper: keeper", 0) == 0) {
      return std::stoi(name);
    }
  }
  return 0;
}

// The host pid of a process whose command line contains `marker`, or 0.
pid_t ProcessWith(const std::string& marker) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFile(entry.path() / "cmdline");
    // Not the helper that entered the pod to start it.
    if (Has(cmdline, marker) && !Has(cmdline, "__sc_pod")) return std::stoi(name);
  }
  return 0;
}

// The pid of a process in its own pid namespace (the last NSpid field).
std::string PidInNamespace(pid_t pid) {
  std::istringstream status(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line, last;
  while (std::getline(status, line)) {
    if (line.rfind("NSpid:", 0) != 0) continue;
    std::istringstream fields(line.substr(6));
    while (fields >> last) {
    }
  }
  return last;
}

// fd number -> what it points at, from the host.
std::map<int, std::string> FdsOf(pid_t pid) {
  std::map<int, std::string> fds;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code link_ec;
    fds[std::stoi(it->path().filename().string())] = fs::read_symlink(it->path(), link_ec).string();
  }
  return fds;
}

// A loop device over a file of the node that no rootfs contains: a stand-in
// for the node's disks, whose device nodes are in /dev. Empty path() if the
// node has no loop devices.
class LoopDevice {
 public:
  LoopDevice(const std::string& backing, const std::string& content) {
    std::ofstream(backing) << content;
    fs::resize_file(backing, 1 << 20);
    ProcessResult r = Run({"/sbin/losetup", "--find", "--show", backing});
    if (r.exit_code == 0 && !r.out.empty()) path_ = r.out.substr(0, r.out.find('\n'));
  }
  ~LoopDevice() {
    if (!path_.empty()) Run({"/sbin/losetup", "--detach", path_});
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Pod B's workload, held until released: uid 0 without capabilities, like
// every workload. Its pid on the node goes to `*pid`.
std::unique_ptr<Held> HoldWorkloadInB(const EscapeNode& node, pid_t* pid) {
  std::string marker = "hold-" + RandomHex(8);
  std::vector<std::string> argv = node.pod_b->ExecPrefix();
  for (const std::string& a :
       node.ScExec({"--workdir", "/", "sh", "-c", "exec probe hold $0", marker})) {
    argv.push_back(a);
  }
  auto held = std::make_unique<Held>(argv);
  REQUIRE(held->WaitFor("ready"));
  REQUIRE(PollUntil([&] { return (*pid = WorkloadWith(*node.daemon, marker)) > 0; },
                    milliseconds(15000)));
  return held;
}

}  // namespace

TEST_CASE("escape: a pod cannot exec into another pod's instance", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;

  SECTION("by the host path of the other instance's rootfs") {
    // The path exists in pod A (the host's /tmp is bound in), but only as the
    // bare mount point: b's overlay is not mounted there, so nothing of b is
    // reachable, and the daemon refuses to run in that empty directory.
    ProcessResult r = node.InPod(*node.pod_a, {"--rootfs", node.rootfs_b, "--workdir", "/",
                                               "/bin/busybox", "cat", "/" + node.secret_b});
    INFO(r.Describe() << " out=" << r.out << " err=" << r.err);
    CHECK(r.exit_code == 122);
    CHECK(Has(r.err, "FAILED_PRECONDITION"));
    CHECK(Has(r.err, "rootfs directory of instance ns/b with nothing mounted on it"));
    CHECK(Has(r.err, "mountPropagation: HostToContainer"));
    CHECK_FALSE(Has(r.out, node.secret_b));
  }
  SECTION("through a magic link, named or planted in its own rootfs") {
    for (const char* path : {"/proc/1/root", "/rootfs/evil-proc"}) {
      ProcessResult r =
          node.InPod(*node.pod_a, {"--rootfs", path, "--workdir", "/", "/bin/busybox", "true"});
      INFO(path << ": " << r.Describe() << " err=" << r.err);
      CHECK(r.exit_code == 122);
      CHECK(Has(r.err, "INVALID_ARGUMENT"));
      CHECK(Has(r.err, "Too many levels of symbolic links (ELOOP)"));
    }
  }
  SECTION("through .. or a symlink to / in rootfs_path: the pod's own root, never the node's") {
    for (const char* path : {"/rootfs/evil", "/rootfs/../../.."}) {
      ProcessResult r = node.InPod(*node.pod_a, {"--rootfs", path, "--workdir", "/", "/bin/busybox",
                                                 "stat", "-c", "%d:%i", "/"});
      INFO(path << ": " << r.Describe() << " err=" << r.err);
      REQUIRE(r.exit_code == 0);
      std::string seen = r.out.substr(0, r.out.find('\n'));
      // Busybox prints the device number in decimal, as stat(2) has it.
      CHECK(seen != DevIno("/"));
      CHECK(seen != DevIno(node.rootfs_b));
      CHECK(seen == DevIno("/proc/" + std::to_string(node.pod_a->init_pid()) + "/root/"));
    }
  }
}

// Without this refusal the command ran in the bare directory and failed as
// "command not found" (exit 127), which named nothing of the real cause.
TEST_CASE("escape: an exec into an instance that is not ready is refused, naming its state",
          "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  struct Case {
    const char* instance;
    const char* state;
  };
  // c: prepared, then released (its upper layer stays); d: only its
  // directory exists, as a consumer pod's hostPath of type
  // DirectoryOrCreate makes it.
  node.Prepare("c");
  ProcessResult released = Run({TestClientBinary(), node.daemon->socket_path(), "ReleaseRootfs",
                                "instance{namespace:\"ns\" name:\"c\"}"});
  INFO(released.Describe() << released.err);
  REQUIRE(released.exit_code == 0);
  fs::create_directories(node.instances + "/ns/d/rootfs");
  for (const Case& c : {Case{"c", "it is RELEASED"}, Case{"d", "it was never prepared"}}) {
    std::unique_ptr<SimulatedPod> pod =
        node.MakePod(node.instances + "/ns/" + c.instance + "/rootfs");
    ProcessResult r = node.InPod(*pod, {"--workdir", "/", "/bin/busybox", "true"});
    INFO(c.instance << ": " << r.Describe() << " err=" << r.err);
    CHECK(r.exit_code == 122);
    CHECK(Has(r.err, "FAILED_PRECONDITION"));
    CHECK(Has(r.err, std::string("instance ns/") + c.instance + " with nothing mounted on it"));
    CHECK(Has(r.err, c.state));
  }
  // A ready instance still runs.
  ProcessResult ok = node.InPod(*node.pod_a, {"--workdir", "/", "/bin/busybox", "true"});
  INFO(ok.Describe() << " err=" << ok.err);
  CHECK(ok.exit_code == 0);
}

TEST_CASE("escape: .. and symlinks in the rootfs lead back into it", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  const std::string root = DevIno(node.rootfs_a);

  SECTION("working directories") {
    for (const char* workdir : {"/../../../..", "/evil", "/evil-rel", "/evil/../evil-rel/.."}) {
      ProcessResult r = node.InPod(*node.pod_a, {"--workdir", workdir, "probe", "stat", "."});
      INFO(workdir << ": " << r.Describe() << " out=" << r.out << " err=" << r.err);
      CHECK(r.exit_code == 0);
      CHECK(r.out == "stat . ok " + root + "\n");
    }
    // A symlink to a path of the node resolves inside the rootfs, where it
    // does not exist; one to a magic link is refused by the kernel.
    ProcessResult host = node.InPod(*node.pod_a, {"--workdir", "/evil-host", "probe", "ids"});
    INFO(host.Describe() << " err=" << host.err);
    CHECK(host.exit_code == 122);
    CHECK(Has(host.err, "NOT_FOUND: working directory /evil-host in the rootfs"));
    ProcessResult magic = node.InPod(*node.pod_a, {"--workdir", "/evil-proc", "probe", "ids"});
    INFO(magic.Describe() << " err=" << magic.err);
    CHECK(magic.exit_code == 122);
    CHECK(Has(magic.err, "PERMISSION_DENIED: working directory /evil-proc in the rootfs"));
  }
  SECTION("a magic link the workload may open still may not lead out") {
    // A process of pod A without capabilities, as uid 0: the workload (uid
    // 0, no capabilities either) may open its /proc/<pid>/root, whose target
    // is pod A's root, outside the rootfs.
    std::string marker = "hold-" + RandomHex(8);
    std::vector<std::string> argv = node.pod_a->ExecPrefix();
    for (const char* a : {"/usr/bin/setpriv", "--bounding-set=-all", "--inh-caps=-all"}) {
      argv.push_back(a);
    }
    for (const std::string& a : {std::string(SC_ESCAPE_PROBE_BIN), std::string("hold"), marker}) {
      argv.push_back(a);
    }
    Held neighbour(argv);
    REQUIRE(neighbour.WaitFor("ready"));
    pid_t host_pid = 0;
    REQUIRE(PollUntil([&] { return (host_pid = ProcessWith(marker)) > 0; }, milliseconds(10000)));
    std::string link = "/proc/" + PidInNamespace(host_pid) + "/root";
    fs::create_symlink(link, node.rootfs_a + "/evil-neighbour");
    for (const std::string& workdir : {link, std::string("/evil-neighbour")}) {
      ProcessResult r = node.InPod(*node.pod_a, {"--workdir", workdir, "probe", "stat", "."});
      INFO(workdir << ": " << r.Describe() << " out=" << r.out << " err=" << r.err);
      CHECK(r.exit_code == 122);
      CHECK(Has(r.err,
                "PERMISSION_DENIED: working directory " + workdir + " leads out of the rootfs"));
      CHECK(r.out.empty());
    }
  }
  SECTION("an operator's working directory through a link to a node process's root") {
    // The image of an instance is its owner's; an operator who execs into it
    // with --workdir /app where /app -> /proc/<pid>/root must not start in
    // the node's root. Here the node process is this test (root, with every
    // capability), and pod B's workload (no capabilities, another rootfs).
    pid_t b_pid = 0;
    std::unique_ptr<Held> b = HoldWorkloadInB(node, &b_pid);
    fs::create_symlink("/proc/" + std::to_string(getpid()) + "/root", node.rootfs_a + "/app");
    fs::create_symlink("/proc/" + std::to_string(b_pid) + "/root", node.rootfs_a + "/app-b");
    // The exec's /proc is of its own pid namespace, where neither pid is a
    // process: both links lead nowhere.
    ProcessResult node_root = node.AsOperator("a", "probe stat .", "/app");
    INFO(node_root.Describe() << " out=" << node_root.out << " err=" << node_root.err);
    CHECK(node_root.exit_code == 122);
    CHECK(Has(node_root.err, "NOT_FOUND: working directory /app in the rootfs"));
    CHECK_FALSE(Has(node_root.out, DevIno("/")));
    ProcessResult other = node.AsOperator("a", "probe stat .", "/app-b");
    INFO(other.Describe() << " out=" << other.out << " err=" << other.err);
    CHECK(other.exit_code == 122);
    CHECK(Has(other.err, "NOT_FOUND: working directory /app-b in the rootfs"));
    CHECK_FALSE(Has(other.out, DevIno(node.rootfs_b)));
  }
  SECTION("from inside the process") {
    ProcessResult r = node.ShInA(
        "cd ../../../../..; probe stat .; probe stat /evil-rel/..; "
        "probe read /evil-rel/../../../../" +
        node.host_marker + " 64; probe read /evil-host 64; probe readlink /proc/self/root; " +
        "probe chroot /tmp; probe open-by-handle /dev/null; probe mknod /tmp/disk");
    INFO(r.Describe() << "\n" << r.out << r.err);
    CHECK(Has(r.out, "stat . ok " + root + "\n"));
    CHECK(Has(r.out, "stat /evil-rel/.. ok " + root + "\n"));
    CHECK(Has(r.out, "read /evil-rel/../../../../" + node.host_marker + " ENOENT\n"));
    CHECK(Has(r.out, "read /evil-host ENOENT\n"));
    CHECK(Has(r.out, "readlink /proc/self/root /\n"));
    // The classic chroot breakout (chroot into a subdirectory, then climb
    // out with ..) needs CAP_SYS_CHROOT; a file handle names inodes outside
    // the root and is refused (seccomp and CAP_DAC_READ_SEARCH); a device
    // node of the node's disk cannot be made (CAP_MKNOD).
    CHECK(Has(r.out, "chroot /tmp EPERM\n"));
    CHECK(Has(r.out, "open-by-handle /dev/null EPERM\n"));
    CHECK(Has(r.out, "mknod /tmp/disk EPERM\n"));
    CHECK_FALSE(Has(r.out, "outside"));
  }
}

TEST_CASE("escape: the launched process holds no fd of the daemon", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  for (bool tty : {false, true}) {
    DYNAMIC_SECTION((tty ? "with a terminal" : "with pipes")) {
      std::string marker = "hold-" + RandomHex(8);
      std::vector<std::string> argv = node.pod_a->ExecPrefix();
      for (const std::string& a : node.ScExec({tty ? "--tty" : "--no-tty", "--workdir", "/", "sh",
                                               "-c", "probe fds; exec probe hold $0", marker})) {
        argv.push_back(a);
      }
      Held held(argv);
      REQUIRE(held.WaitFor("ready"));
      // As the process itself sees them: stdio only, pipes or its terminal.
      INFO(held.output());
      for (const char* fd : {"fd 0 ", "fd 1 ", "fd 2 "}) {
        CHECK(Has(held.output(), fd + std::string(tty ? "/dev/pts/0" : "pipe:[")));
      }
      CHECK_FALSE(Has(held.output(), "fd 3 "));
      CHECK_FALSE(Has(held.output(), "socket:"));
      // As the node sees it: fds 0-2 only; with pipes, sc-exec's own, with a
      // terminal the pty of the session's own devpts.
      pid_t pid = 0;
      REQUIRE(PollUntil([&] { return (pid = WorkloadWith(*node.daemon, marker)) > 0; },
                        milliseconds(15000)));
      std::map<int, std::string> fds = FdsOf(pid);
      // The daemon drops its copies of the caller's fds once the launch
      // returns, a moment after the workload runs.
      std::set<std::string> daemon_targets;
      PollUntil(
          [&] {
            daemon_targets.clear();
            for (const auto& [fd, target] : FdsOf(node.daemon->pid())) {
              daemon_targets.insert(target);
            }
            for (const auto& [fd, target] : fds) {
              if (daemon_targets.count(target) != 0) return false;
            }
            return true;
          },
          milliseconds(5000));
      INFO("workload " << pid);
      CHECK(fds.size() == 3);
      for (const auto& [fd, target] : fds) {
        INFO("fd " << fd << " -> " << target);
        CHECK(fd <= 2);
        if (tty) {
          // The pty of the rootfs's devpts (a Unix98 pty slave).
          struct stat st {};
          std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
          REQUIRE(stat(path.c_str(), &st) == 0);
          CHECK(S_ISCHR(st.st_mode));
          CHECK((major(st.st_rdev) >= 136 && major(st.st_rdev) <= 143));
          CHECK(Has(target, "/dev/pts/"));
        } else {
          // By reference the pipes are sc-exec's own stdio: the daemon
          // holds neither end of them.
          CHECK(target.rfind("pipe:[", 0) == 0);
          CHECK(daemon_targets.count(target) == 0);
        }
      }
      // Nothing of the daemon's is mapped either: only the probe itself.
      std::string maps = ReadFile("/proc/" + std::to_string(pid) + "/maps");
      CHECK_FALSE(Has(maps, "sc-mount-helper"));
      CHECK_FALSE(Has(maps, ".so"));
      held.Release();
    }
  }
}

TEST_CASE("escape: a setuid-root binary in the rootfs gives nothing (no_new_privs)", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  // Control: in the image, without no_new_privs, the bit works; through the
  // rootfs (nosuid) it does not, even without no_new_privs.
  ProcessResult control = Run({"/usr/bin/setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                               node.image + "/bin/probe-suid", "ids"});
  INFO(control.Describe() << " " << control.out << control.err);
  REQUIRE(control.exit_code == 0);
  REQUIRE(Has(control.out, "uid=1000 euid=0 "));
  ProcessResult nosuid = Run({"/usr/bin/setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                              node.rootfs_a + "/bin/probe-suid", "ids"});
  INFO(nosuid.Describe() << " " << nosuid.out << nosuid.err);
  CHECK(Has(nosuid.out, "uid=1000 euid=1000 "));

  // As uid 1000 in the pod: the euid stays, and no capability comes with it.
  ProcessResult user = node.ShInA("probe-suid ids; probe-suid setuid 0; probe-suid capset", kUser);
  INFO(user.Describe() << "\n" << user.out << user.err);
  CHECK(Has(user.out, "uid=1000 euid=1000 gid=1000 egid=1000 capeff=0 capprm=0 nnp=1"));
  CHECK(Has(user.out, "setuid 0 EPERM\n"));
  CHECK(Has(user.out, "capset EPERM\n"));
  // As the pod's root: still no capability (no root privileges on execve).
  ProcessResult root = node.ShInA("probe-suid ids");
  INFO(root.Describe() << "\n" << root.out << root.err);
  CHECK(Has(root.out, "uid=0 euid=0 gid=0 egid=0 capeff=0 capprm=0 nnp=1"));
}

TEST_CASE("escape: mount, namespaces, chroot and tracing are refused inside", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  struct Attempt {
    std::string command;
    std::string answer;
  };
  // EPERM from the seccomp filter or for want of a capability; clone3 is
  // ENOSYS so that libcs fall back to clone, whose flags the filter sees.
  const std::vector<Attempt> attempts = {
      {"mount /tmp", "EPERM"},
      {"umount /proc", "EPERM"},
      {"umount /dev", "EPERM"},
      {"pivot /", "EPERM"},
      {"fsopen", "EPERM"},
      {"open-tree /", "EPERM"},
      {"unshare mnt", "EPERM"},
      {"unshare user", "EPERM"},
      {"unshare pid", "EPERM"},
      {"unshare net", "EPERM"},
      {"unshare uts", "EPERM"},
      {"unshare ipc", "EPERM"},
      {"unshare cgroup", "EPERM"},
      {"clone user", "EPERM"},
      {"clone mnt", "EPERM"},
      {"clone pid", "EPERM"},
      {"clone3", "ENOSYS"},
      {"setns /proc/self/ns/mnt", "EPERM"},
      {"setns /proc/1/ns/mnt (open)", "EACCES"},
      {"chroot /tmp", "EPERM"},
      {"ptrace 1", "EPERM"},
      {"vmread 1", "EPERM"},
      {"capset", "EPERM"},
  };
  std::string script;
  for (const Attempt& a : attempts) {
    std::string command = a.command.substr(0, a.command.find(" ("));
    script += "probe " + command + "; ";
  }
  for (uid_t uid : {uid_t{0}, kUser}) {
    DYNAMIC_SECTION("as uid " << uid) {
      ProcessResult r = node.ShInA(script, uid);
      INFO(r.Describe() << "\n" << r.out << r.err);
      for (const Attempt& a : attempts) {
        CHECK(Has(r.out, a.command + " " + a.answer + "\n"));
      }
      // Nothing was mounted or unmounted in the pod either.
      std::string mountinfo =
          ReadFile("/proc/" + std::to_string(node.pod_a->init_pid()) + "/mountinfo");
      CHECK_FALSE(Has(mountinfo, " /rootfs/tmp "));
    }
  }
}

TEST_CASE("escape: the daemon's binary and process are out of reach", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  const std::string daemon_exe = DevIno(DaemonBinary());
  const std::string daemon = std::to_string(node.daemon->pid());
  // The daemon's pid names nothing in the workload's pid namespace (a pod's,
  // or an operator exec's own), so signals and pidfds find no process; the
  // tracing calls are refused before any lookup. SIGKILL is tried only when
  // the number cannot be a process of the small pid namespaces here.
  std::string kill = node.daemon->pid() > 1000 ? "probe kill " + daemon + " 9; " : "";
  std::string script = "grep PPid /proc/$$/status; probe exe-scan " + daemon_exe +
                       "; probe open /proc/1/exe; probe kill " + daemon + " 0; " + kill +
                       "probe pidfd " + daemon + "; probe ptrace " + daemon + "; probe vmread " +
                       daemon + "; probe open /proc/" + daemon + "/exe";

  auto check = [&](const ProcessResult& r) {
    INFO(r.Describe() << "\n" << r.out << r.err);
    // The parent (the daemon) is outside the process's pid namespace.
    CHECK(Has(r.out, "PPid:\t0\n"));
    CHECK(Has(r.out, " match=0\n"));
    CHECK_FALSE(Has(r.out, "exe_match"));
    CHECK(Has(r.out, "kill " + daemon + " ESRCH\n"));
    CHECK(Has(r.out, "pidfd " + daemon + " ESRCH\n"));
    CHECK(Has(r.out, "ptrace " + daemon + " EPERM\n"));
    CHECK(Has(r.out, "vmread " + daemon + " EPERM\n"));
    CHECK_FALSE(Has(r.out, "open /proc/" + daemon + "/exe ok"));
  };
  SECTION("from a pod's exec") {
    ProcessResult r = node.ShInA(script);
    check(r);
    // pid 1 is the pod's pause process: beyond a process without capabilities.
    CHECK(Has(r.out, "open /proc/1/exe EACCES\n"));
  }
  SECTION("from an operator's exec") {
    // The exec's /proc is of its own pid namespace: no daemon in it. Its
    // pid 1 is the daemon's binary as a reaper (pid_init.h), not dumpable.
    ProcessResult r = node.AsOperator("a", script);
    check(r);
    CHECK(Has(r.out, "open /proc/1/exe EACCES\n"));
    CHECK(Has(r.out, "open /proc/" + daemon + "/exe ENOENT\n"));
  }
  SECTION("from a process of the consumer pod without capabilities") {
    // A container of the pod itself (not a workload): the rootfs's /proc,
    // before any exec mounted the pod's own over it, shows no process.
    ProcessResult r =
        node.pod_a->Exec({"/usr/bin/setpriv", "--bounding-set=-all", "--inh-caps=-all",
                          SC_ESCAPE_PROBE_BIN, "open", "/rootfs/proc/" + daemon + "/exe"});
    INFO(r.Describe() << " " << r.out << r.err);
    CHECK(r.out == "open /rootfs/proc/" + daemon + "/exe ENOENT\n");
  }
  // Still there and serving.
  CHECK(::kill(node.daemon->pid(), 0) == 0);
  ProcessResult health = Run({TestClientBinary(), node.daemon->socket_path(), "Health", ""});
  CHECK(Has(health.out, "SERVING"));
}

// What runc does for a cgroup v2 pod that may open no block device: a
// BPF_PROG_TYPE_CGROUP_DEVICE program on the container's cgroup, answering 0
// (deny) for every block device. Returns the program's fd (the attachment
// lives as long as the cgroup), or an empty fd with *error set.
UniqueFd AttachBlockDeviceDeny(const std::string& cgroup_dir, std::string* error) {
  const bpf_insn program[] = {
      // r2 = ctx->access_type & 0xffff: the device type.
      {BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, 0, 0},
      {BPF_ALU | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff},
      {BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_2, 0, 2, BPF_DEVCG_DEV_BLOCK},
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  char license[] = "GPL";
  bpf_attr load{};
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = reinterpret_cast<uintptr_t>(program);
  load.insn_cnt = sizeof(program) / sizeof(program[0]);
  load.license = reinterpret_cast<uintptr_t>(license);
  UniqueFd prog(static_cast<int>(syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof(load))));
  if (!prog) {
    *error = std::string("bpf(BPF_PROG_LOAD, CGROUP_DEVICE): ") + strerror(errno);
    return UniqueFd();
  }
  UniqueFd cgroup(open(cgroup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cgroup) {
    *error = "open " + cgroup_dir + ": " + strerror(errno);
    return UniqueFd();
  }
  bpf_attr attach{};
  attach.target_fd = static_cast<__u32>(cgroup.get());
  attach.attach_bpf_fd = static_cast<__u32>(prog.get());
  attach.attach_type = BPF_CGROUP_DEVICE;
  attach.attach_flags = BPF_F_ALLOW_MULTI;
  if (syscall(SYS_bpf, BPF_PROG_ATTACH, &attach, sizeof(attach)) != 0) {
    *error = "bpf(BPF_PROG_ATTACH, " + cgroup_dir + "): " + strerror(errno);
    return UniqueFd();
  }
  return prog;
}

bool IsCgroup2(const std::string& dir) {
  struct statfs st {};
  return statfs(dir.c_str(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

// The rootfs's /dev is a container's default set: a node's disk is reached
// only when the pod was given it (a volumeDevices entry, a device plugin's
// device: a node in the pod's own /dev), and then the pod's device limit
// decides, as a runtime's would: the device cgroup (v1) or a device program
// on the pod's container cgroup (v2); the workload must be under whichever
// the node has.
TEST_CASE("escape: a pod's workload gets only the devices its pod has, under its limit",
          "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  LoopDevice disk(node.dir / "disk.img", "node-disk-" + RandomHex(8));
  if (disk.path().empty()) {
    SkipOrFailUnderCi("no loop device on this node", "no loop device on this node");
    return;
  }
  const std::string name = disk.path().substr(5);  // below /dev
  // Pod A was given nothing: the node's disk is not in its rootfs.
  ProcessResult none = node.ShInA("probe read " + disk.path() + " 64");
  INFO(none.Describe() << " " << none.out << none.err);
  CHECK(none.out == "read " + disk.path() + " ENOENT\n");

  PodOptions options;
  options.rootfs_host_path = node.rootfs_a;
  options.binds = {node.run};
  options.devices = {disk.path()};
  SimulatedPod pod(options);
  REQUIRE(pod.started());
  auto in_pod = [&](const std::string& script) {
    return node.InPod(pod, {"--workdir", "/", "sh", "-c", script});
  };
  ProcessResult listed = in_pod("ls -A /dev");
  INFO(listed.Describe() << " " << listed.out << listed.err);
  CHECK(Lines(listed.out) == Sorted(DefaultDev(), {name}));
  std::string v1_devices;
  std::string v2_container;
  for (const std::string& d : pod.cgroup_dirs()) {
    if (!Has(d, pod.container_id())) continue;
    if (Has(d, "/devices/")) v1_devices = d;
    if (IsCgroup2(d)) v2_container = d;
  }
  // Before any limit: the disk opens (the probe is not refused for another
  // reason).
  auto disk_read_gives = [&](const std::string& outcome) {
    ProcessResult r = in_pod("probe read " + disk.path() + " 64");
    INFO(r.Describe() << " " << r.out << r.err);
    CHECK(r.out == "read " + disk.path() + " " + outcome + "\n");
  };
  disk_read_gives("ok 64 bytes");
  SECTION("cgroup v1: the devices controller") {
    if (v1_devices.empty()) {
      SUCCEED("no cgroup v1 devices controller on this node");
      return;
    }
    std::ofstream(v1_devices + "/devices.deny") << "b *:* rwm\n";
    disk_read_gives("EPERM");
  }
  SECTION("cgroup v2: a device program on the container's cgroup") {
    if (v2_container.empty()) {
      SUCCEED("no cgroup v2 hierarchy on this node");
      return;
    }
    std::string error;
    UniqueFd program = AttachBlockDeviceDeny(v2_container, &error);
    INFO(error);
    REQUIRE(program);
    disk_read_gives("EPERM");
    // Character devices stay open to it, as the program says.
    ProcessResult null = in_pod("probe read /dev/null 1");
    INFO(null.Describe() << " " << null.out << null.err);
    CHECK(null.out == "read /dev/null ok 0 bytes\n");
  }
  CHECK((!v1_devices.empty() || !v2_container.empty()));
}

// The rootfs's /proc was the node's (PrepareRootfs mounted it from the
// daemon's pid namespace) until these tests found it: a consumer pod's
// container read another workload's files through /rootfs/proc/<pid>/root,
// and an operator's exec did the same, and read its memory.
TEST_CASE("escape: another workload's files and memory are out of a workload's /proc", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  pid_t pid = 0;
  std::unique_ptr<Held> held = HoldWorkloadInB(node, &pid);
  const std::string b = std::to_string(pid);
  const std::string file = "/proc/" + b + "/root/" + node.secret_b;

  SECTION("from an operator's exec into a") {
    ProcessResult r = node.AsOperator(
        "a", "probe read " + file + " 64; probe open /proc/" + b + "/mem; probe stat /proc/" + b);
    INFO(r.Describe() << "\n" << r.out << r.err);
    CHECK(Has(r.out, "read " + file + " ENOENT\n"));
    CHECK(Has(r.out, "open /proc/" + b + "/mem ENOENT\n"));
    CHECK(Has(r.out, "stat /proc/" + b + " ENOENT\n"));
  }
  SECTION("from a container of consumer pod a, through /rootfs/proc") {
    ProcessResult r =
        node.pod_a->Exec({"/usr/bin/setpriv", "--bounding-set=-all", "--inh-caps=-all",
                          SC_ESCAPE_PROBE_BIN, "read", "/rootfs" + file, "64"});
    INFO(r.Describe() << "\n" << r.out << r.err);
    CHECK(r.out == "read /rootfs" + file + " ENOENT\n");
  }
  SECTION("from a container of consumer pod a after an exec into it") {
    ProcessResult exec = node.ShInA("true");
    REQUIRE(exec.exit_code == 0);
    ProcessResult r =
        node.pod_a->Exec({"/usr/bin/setpriv", "--bounding-set=-all", "--inh-caps=-all",
                          SC_ESCAPE_PROBE_BIN, "read", "/rootfs" + file, "64"});
    INFO(r.Describe() << "\n" << r.out << r.err);
    CHECK(r.out == "read /rootfs" + file + " ENOENT\n");
  }
  held->Release();
}

// The node's block devices, as names below /dev (a stand-in list of what a
// workload might try: every one the node has, in subdirectories too).
std::vector<std::string> NodeBlockDevices() {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator("/dev", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_symlink()) {
      it.disable_recursion_pending();
      continue;
    }
    struct stat st {};
    if (lstat(it->path().c_str(), &st) == 0 && S_ISBLK(st.st_mode)) {
      out.push_back(it->path().string());
    }
  }
  return out;
}

std::vector<std::string> NodeInterfaces() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator("/sys/class/net")) out.push_back(e.path().filename());
  return out;
}

// "ok 0 bytes" where the node has the file (masked: it reads as /dev/null),
// ENOENT where its kernel lacks it.
std::string MaskedRead(const std::string& path) {
  return "read " + path + (access(path.c_str(), F_OK) == 0 ? " ok 0 bytes" : " ENOENT");
}

// What issue 15 asked: a workload sees a container's /dev, /sys and /proc,
// whether a pod's or an operator's exec, and so does a consumer pod's own
// container through the hostPath before any exec.
TEST_CASE("escape: /dev and /sys and /proc are a container's and not the node's", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  // An interface of pod A's own, which the node does not have (where the
  // kernel has bridges: the VM's has no such module).
  std::string ifname = "sctest" + RandomHex(4);
  ProcessResult added = node.pod_a->Exec({"ip", "link", "add", ifname, "type", "bridge"});
  if (added.exit_code != 0) {
    WARN("no interface of the pod's own (" << added.err << "): only lo is checked");
    ifname.clear();
  }
  const std::vector<std::string> blocks = NodeBlockDevices();
  REQUIRE_FALSE(blocks.empty());
  std::string script =
      "ls -A /dev; echo ---; ls -A /sys/class/net; echo ---; ls -A /sys/firmware; echo ---; ";
  for (const std::string& b : blocks) script += "probe open " + b + "; ";
  script +=
      "probe read /proc/kcore 4096; probe read /proc/keys 4096; probe read /proc/timer_list 4096; "
      "probe open-write /proc/sysrq-trigger; probe open-write /proc/sys/kernel/hostname; "
      "probe open-write /sys/class/net/lo/mtu";
  auto check = [&](const ProcessResult& r, const std::vector<std::string>& interfaces) {
    INFO(r.Describe() << "\n" << r.out << r.err);
    std::vector<std::string> parts = absl::StrSplit(r.out, "---\n");
    REQUIRE(parts.size() == 4);
    CHECK(Lines(parts[0]) == DefaultDev());
    CHECK(Lines(parts[1]) == interfaces);
    for (const std::string& i : NodeInterfaces()) {
      if (i != "lo") CHECK_FALSE(Has(parts[1], i));
    }
    CHECK(parts[2].empty());
    for (const std::string& b : blocks) CHECK(Has(parts[3], "open " + b + " ENOENT\n"));
    CHECK(Has(parts[3], MaskedRead("/proc/kcore") + "\n"));
    CHECK(Has(parts[3], MaskedRead("/proc/keys") + "\n"));
    CHECK(Has(parts[3], MaskedRead("/proc/timer_list") + "\n"));
    CHECK(Has(parts[3], access("/proc/sysrq-trigger", F_OK) == 0
                            ? "open-write /proc/sysrq-trigger EROFS\n"
                            : "open-write /proc/sysrq-trigger ENOENT\n"));
    CHECK(Has(parts[3], "open-write /proc/sys/kernel/hostname EROFS\n"));
    CHECK(Has(parts[3], "open-write /sys/class/net/lo/mtu EROFS\n"));
  };
  SECTION("a pod's workload") {
    check(node.ShInA(script),
          ifname.empty() ? std::vector<std::string>{"lo"} : Lines("lo\n" + ifname + "\n"));
  }
  SECTION("an operator's exec") { check(node.AsOperator("a", script), {"lo"}); }
  SECTION("a consumer pod's container, through the hostPath") {
    // Pod B has had no exec: it sees the rootfs as prepared.
    ProcessResult r = node.pod_b->Exec(
        {"sh", "-c",
         "ls -A /rootfs/dev; echo ---; ls -A /rootfs/sys/class/net /rootfs/sys/firmware"});
    INFO(r.Describe() << "\n" << r.out << r.err);
    std::vector<std::string> parts = absl::StrSplit(r.out, "---\n");
    REQUIRE(parts.size() == 2);
    CHECK(Lines(parts[0]) == DefaultDev());
    // Both empty: a sysfs of a network namespace with nothing in it.
    CHECK(Lines(parts[1]) == Lines("\n/rootfs/sys/class/net:\n/rootfs/sys/firmware:\n"));
  }
}

// A workload's /sys/fs/cgroup shows the cgroup it is in, read-only, and its
// /dev/mqueue is its IPC namespace's (the pod's), as in a container.
TEST_CASE("escape: a workload's cgroup view and mqueue are its pod's own", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  ProcessResult r = node.ShInA(
      "for f in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/*/cgroup.procs; do "
      "[ -L ${f%/cgroup.procs} ] || { grep -qx $$ $f 2>/dev/null && echo mine $f; }; done; ls -R /sys/fs/cgroup | grep -c kubepods; "
      "probe open-write $(ls /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/*/cgroup.procs 2>/dev/null "
      "| head -n 1); probe stat /dev/mqueue");
  INFO(r.Describe() << "\n" << r.out << r.err);
  size_t hierarchies = 0;
  for (const std::string& d : node.pod_a->cgroup_dirs()) {
    if (Has(d, node.pod_a->container_id())) ++hierarchies;
  }
  size_t mine = 0;
  for (const std::string& line : Lines(r.out)) {
    if (line.rfind("mine /sys/fs/cgroup/", 0) == 0) ++mine;
  }
  CHECK(mine == hierarchies);
  CHECK(Has(r.out, "\n0\n"));  // nothing above or beside its own cgroup
  CHECK(Has(r.out, "cgroup.procs EROFS\n"));
  // The pod's own mqueue (its container's /dev/mqueue), not the rootfs's
  // bare directory.
  ProcessResult pod = node.pod_a->Exec({"stat", "-c", "%d:%i", "/dev/mqueue"});
  REQUIRE(pod.exit_code == 0);
  std::string dev_ino = pod.out.substr(0, pod.out.find('\n'));
  CHECK(Has(r.out, "stat /dev/mqueue ok " + dev_ino + "\n"));
  CHECK_FALSE(dev_ino == DevIno(node.rootfs_a + "/dev/mqueue"));
}

// An instance `name` of `node` mounted the way an older daemon (before issue
// 15) prepared a rootfs: the node's /dev and /sys bound in, the proc knobs
// read-only but nothing masked. Released and unmounted at the end.
class OlderInstance {
 public:
  OlderInstance(EscapeNode& node, const std::string& name)
      : node_(node), name_(name), dir_(node.instances + "/ns/" + name) {
    fs::create_directories(dir_);
    const std::string& image = node.image;
    const std::string& dir = dir_;
    for (const char* d : {"/upper", "/work", "/rootfs"})
      REQUIRE(mkdir((dir + d).c_str(), 0755) == 0);
    const std::string root = dir + "/rootfs";
    const std::string options =
        "lowerdir=" + image + ",upperdir=" + dir + "/upper,workdir=" + dir + "/work";
    REQUIRE(mount("overlay", root.c_str(), "overlay", MS_NOSUID | MS_NODEV, options.c_str()) == 0);
    REQUIRE(mount(nullptr, root.c_str(), nullptr, MS_SHARED, nullptr) == 0);
    for (const char* d : {"/proc", "/dev", "/sys"}) mkdir((root + d).c_str(), 0755);
    REQUIRE(mount("proc", (root + "/proc").c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  nullptr) == 0);
    for (const char* knob : {"/proc/irq", "/proc/bus", "/proc/fs", "/proc/sys"}) {
      std::string at = root + knob;
      REQUIRE(mount(at.c_str(), at.c_str(), nullptr, MS_BIND, nullptr) == 0);
      REQUIRE(mount(nullptr, at.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0);
    }
    for (const char* d : {"/dev", "/sys"}) {
      std::string at = root + d;
      REQUIRE(mount(d, at.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0);
      REQUIRE(mount(nullptr, at.c_str(), nullptr, MS_REC | MS_SLAVE, nullptr) == 0);
    }
    REQUIRE(mount(nullptr, (root + "/sys").c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY,
                  nullptr) == 0);
    REQUIRE(mount("devpts", (root + "/dev/pts").c_str(), "devpts", MS_NOSUID | MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620,gid=5") == 0);
    REQUIRE(mount("tmpfs", (root + "/dev/shm").c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=1777") == 0);
  }
  ~OlderInstance() {
    Run({TestClientBinary(), node_.daemon->socket_path(), "ReleaseRootfs",
         "instance{namespace:\"ns\" name:\"" + name_ + "\"}"});
    umount2(rootfs().c_str(), MNT_DETACH);
  }
  std::string rootfs() const { return dir_ + "/rootfs"; }
  // What GetInstance says of it.
  std::string Get() const {
    return Run({TestClientBinary(), node_.daemon->socket_path(), "GetInstance",
                "instance{namespace:\"ns\" name:\"" + name_ + "\"}"})
        .out;
  }

 private:
  EscapeNode& node_;
  std::string name_;
  std::string dir_;
};

// Issue 15, item 6: an instance an older daemon prepared is converted by the
// next prepare without unmounting what a running workload uses; its shared
// memory and ptys are carried over.
TEST_CASE("escape: an instance an older daemon prepared is converted in place", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  OlderInstance older(node, "c");
  const std::string rootfs = older.rootfs();
  std::unique_ptr<SimulatedPod> pod = node.MakePod(rootfs);
  auto in_c = [&](const std::string& script) {
    return node.InPod(*pod, {"--workdir", "/", "sh", "-c", script});
  };
  // Before: the node's /dev in the rootfs. (A pod's exec already sees a
  // container's /dev: it mounts one in the pod's view.) A workload keeps a
  // file in the instance's /dev/shm and holds on, with /dev/shm as its
  // working directory.
  size_t node_dev = 0;
  for (const auto& e : fs::directory_iterator(rootfs + "/dev"))
    node_dev += e.path().empty() ? 0 : 1;
  CHECK(node_dev > DefaultDev().size());
  ProcessResult before = in_c("echo kept > /dev/shm/keep && ls -A /dev");
  INFO(before.Describe() << " " << before.out << before.err);
  REQUIRE(before.exit_code == 0);
  CHECK(Lines(before.out) == DefaultDev());
  CHECK(ReadFile(rootfs + "/dev/shm/keep") == "kept\n");
  std::string marker = "hold-" + RandomHex(8);
  std::vector<std::string> argv = pod->ExecPrefix();
  for (const std::string& a :
       node.ScExec({"--workdir", "/dev/shm", "sh", "-c", "exec probe hold $0", marker})) {
    argv.push_back(a);
  }
  Held held(argv);
  REQUIRE(held.WaitFor("ready"));
  const std::string overlay_before = DevIno(rootfs);
  const std::string pts_before = DevIno(rootfs + "/dev/pts");
  const std::string shm_before = DevIno(rootfs + "/dev/shm");
  const std::vector<std::string> mounts_before = MountsUnder(rootfs);

  node.Prepare("c");
  INFO(older.Get());
  CHECK(Has(older.Get(), "state: READY"));
  // Nothing was unmounted: every mount is still there, the new ones on top.
  const std::vector<std::string> mounts_after = MountsUnder(rootfs);
  for (const std::string& m : mounts_before) {
    CHECK(std::find(mounts_after.begin(), mounts_after.end(), m) != mounts_after.end());
  }
  CHECK(mounts_after.size() > mounts_before.size());
  CHECK(DevIno(rootfs) == overlay_before);
  CHECK(DevIno(rootfs + "/dev/pts") == pts_before);
  CHECK(DevIno(rootfs + "/dev/shm") == shm_before);
  ProcessResult after = in_c("ls -A /dev; cat /dev/shm/keep; ls -A /sys/firmware | grep -c .");
  INFO(after.Describe() << " " << after.out << after.err);
  CHECK(after.out == absl::StrJoin(DefaultDev(), "\n") + "\nkept\n0\n");
  // The held workload lived through it.
  held.Release();
  CHECK(PollUntil([&] { return WorkloadWith(*node.daemon, marker) == 0; }, milliseconds(15000)));
  // A second prepare finds it READY and changes nothing.
  node.Prepare("c");
  CHECK(MountsUnder(rootfs) == mounts_after);
}

// A restarted daemon (a DaemonSet rollout) converts what an older one
// prepared before it serves, without waiting for a provider's prepare.
TEST_CASE("escape: a restarted daemon converts an older daemon's instances", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  OlderInstance older(node, "d");
  const std::string rootfs = older.rootfs();
  CHECK(Has(older.Get(), "state: PARTIAL"));
  node.StartDaemon();
  CHECK(Has(older.Get(), "state: READY"));
  CHECK(Has(node.daemon->Log(), "instance ns/d: converted"));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(rootfs + "/dev"))
    names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  CHECK(names == DefaultDev());
}

// An operator's exec, as uid 0 in no pod, was the hole these tests found
// (the rootfs's /dev was the node's, and it ran in the daemon's cgroup): its
// /dev is the default set, and a cgroup of its own limits its devices, so
// that even a node disk's device node it finds in the rootfs does not open.
TEST_CASE("escape: an operator's exec reaches no node disk", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  std::string content = "node-disk-" + RandomHex(8);
  LoopDevice disk(node.dir / "disk.img", content);
  if (disk.path().empty()) {
    SkipOrFailUnderCi("no loop device on this node", "no loop device on this node");
    return;
  }
  ProcessResult r = node.AsOperator("a", "head -c 64 " + disk.path());
  INFO(r.Describe() << "\n" << r.out << r.err);
  CHECK_FALSE(Has(r.out, content));
  CHECK(Has(r.err, "No such file"));

  // A device node of the disk on a mount that admits devices, inside the
  // rootfs: only the exec's device limit stands in the way.
  const std::string dir = node.rootfs_a + "/devtest";
  REQUIRE(mkdir(dir.c_str(), 0755) == 0);
  REQUIRE(mount("tmpfs", dir.c_str(), "tmpfs", 0, "mode=755") == 0);
  struct Unmount {
    std::string dir;
    ~Unmount() { umount2(dir.c_str(), MNT_DETACH); }
  } unmount{dir};
  struct stat st {};
  REQUIRE(stat(disk.path().c_str(), &st) == 0);
  REQUIRE(mknod((dir + "/disk").c_str(), S_IFBLK | 0600, st.st_rdev) == 0);
  // The node itself reads it: the node is right.
  CHECK(Has(ReadFile(dir + "/disk").substr(0, 64), content));
  ProcessResult blocked =
      node.AsOperator("a", "probe read /devtest/disk 64; probe read /dev/null 1");
  INFO(blocked.Describe() << "\n" << blocked.out << blocked.err);
  CHECK(blocked.out == "read /devtest/disk EPERM\nread /dev/null ok 0 bytes\n");
  // Its cgroup's pids limit: v1's pids controller (a pure v2 node enables it
  // only below a cgroup without processes, which the test's daemon's is not).
  std::istringstream lines(ReadFile("/proc/" + std::to_string(node.daemon->pid()) + "/cgroup"));
  for (std::string line; std::getline(lines, line);) {
    size_t at = line.find(":pids:");
    if (at == std::string::npos) continue;
    CHECK(ReadFile("/sys/fs/cgroup/pids" + line.substr(at + 6) + "/sc-operator-exec/pids.max") ==
          "1024\n");
  }
}

}  // namespace sc::test
