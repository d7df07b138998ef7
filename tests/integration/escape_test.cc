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
    daemon = std::make_unique<DaemonProcess>(
        run + "/mh.sock",
        std::vector<std::string>{"--instance_base=" + instances, "--layer_root=" + layers,
                                 "--socket_mode=0666", "--exec_kill_grace=1s"});
    REQUIRE(daemon->started());
    Prepare("a");
    pod_a = MakePod(rootfs_a);
    Prepare("b");
    std::ofstream(rootfs_b + "/" + secret_b) << secret_b << "\n";
    pod_b = MakePod(rootfs_b);
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

TEST_CASE("escape: a pod's workload gets only the devices its pod may open", "[escape]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  LoopDevice disk(node.dir / "disk.img", "node-disk-" + RandomHex(8));
  if (disk.path().empty()) {
    SkipOrFailUnderCi("no loop device on this node", "no loop device on this node");
    return;
  }
  // The rootfs's /dev is the node's: a container runtime restricts what its
  // pods open with the device cgroup (v1) or a device program on the pod's
  // container cgroup (v2); the workload must be under whichever the node has.
  std::string v1_devices;
  std::string v2_container;
  for (const std::string& d : node.pod_a->cgroup_dirs()) {
    if (!Has(d, node.pod_a->container_id())) continue;
    if (Has(d, "/devices/")) v1_devices = d;
    if (IsCgroup2(d)) v2_container = d;
  }
  // Before any limit: the node's disk opens (the probe is not refused for
  // another reason).
  auto disk_read_gives = [&](const std::string& outcome) {
    ProcessResult r = node.ShInA("probe read " + disk.path() + " 64");
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
    ProcessResult null = node.ShInA("probe read /dev/null 1");
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

// A known open defect, found by these tests and not fixed (see the issue's
// closing note): the rootfs's /dev is the node's, and an operator's exec,
// which stays in the daemon's cgroup (no device restriction), opens a node
// disk as uid 0. A pod's exec is in its pod's device cgroup and is refused
// (see above). [!mayfail]: every run reports it as a failed assertion without
// failing the suite; drop the tag once it is fixed.
TEST_CASE("escape (open defect): an operator's exec reads a node disk through the rootfs's /dev",
          "[escape][!mayfail]") {
  SC_REQUIRE_ROOT();
  EscapeNode node;
  std::string content = "node-disk-" + RandomHex(8);
  LoopDevice disk(node.dir / "disk.img", content);
  if (disk.path().empty()) {
    WARN("no loop device on this node: the disk check is skipped");
    return;
  }
  ProcessResult r = node.AsOperator("a", "head -c 64 " + disk.path());
  INFO(r.Describe() << "\n" << r.out << r.err);
  CHECK_FALSE(Has(r.out, content));
}

}  // namespace sc::test
