// Exec end to end: the real daemon, the real static sc-exec inside a simulated
// consumer pod, a busybox rootfs made from Debian's busybox-static.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "common/unique_fd.h"
#include "tests/integration/harness.h"

namespace sc::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kBusybox[] = "/bin/busybox";
// The argv[0] of an operator exec's pid 1 (daemon/exec/pid_init.h).
constexpr char kPidInitName[] = "sc-mount-helper: pid 1";

// A busybox rootfs: /bin/busybox with every applet as a symlink to it.
void MakeBusyboxRootfs(const std::string& root) {
  for (const char* d : {"bin", "proc", "dev", "dev/pts", "tmp", "etc", "home", "work"}) {
    fs::create_directories(root + "/" + d);
  }
  fs::permissions(root + "/tmp", fs::perms::all | fs::perms::sticky_bit);
  fs::copy_file(kBusybox, root + "/bin/busybox");
  ProcessResult list = Run({kBusybox, "--list"});
  REQUIRE(list.exit_code == 0);
  std::istringstream names(list.out);
  std::string name;
  while (std::getline(names, name)) {
    if (name.empty() || name == "busybox") continue;
    std::error_code ec;
    fs::create_symlink("busybox", root + "/bin/" + name, ec);
  }
  // A file that exists but may not be executed.
  std::ofstream(root + "/bin/not-executable") << "#!/bin/sh\necho no\n";
  fs::permissions(root + "/bin/not-executable", fs::perms::owner_read | fs::perms::owner_write);
}

// An explicit environment, plus the sanitizer's options when the test runs
// under one (the pod helper is this very binary).
std::vector<std::string> Env(std::vector<std::string> env) {
  for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"}) {
    if (const char* v = getenv(name)) env.push_back(std::string(name) + "=" + v);
  }
  return env;
}

// A node with a daemon and one consumer pod whose /rootfs is a busybox tree,
// with the pod's own /proc and devpts mounted into it (as the rootfs
// issue's PrepareRootfs does).
struct ExecNode {
  explicit ExecNode(std::vector<std::string> daemon_args = {})
      : daemon(dir / "mh.sock", std::move(daemon_args)) {
    rootfs = dir / "rootfs";
    MakeBusyboxRootfs(rootfs);
    pod = MakePod(rootfs);
  }
  // With a real instance: the busybox tree as its only lower layer, prepared
  // by the daemon (PrepareRootfs, as an operator), the pod's /rootfs bound
  // to the instance's rootfs as a consumer pod's hostPath is.
  struct Prepared {};
  explicit ExecNode(Prepared)
      : daemon(dir / "mh.sock",
               {"--instance_base=" + (dir / "instances"), "--layer_root=" + (dir / "layers")}) {
    std::string layer = dir / "layers/busybox";
    fs::create_directories(layer);
    MakeBusyboxRootfs(layer);
    fs::create_directories(dir / "instances");
    ProcessResult r =
        Run({TestClientBinary(), daemon.socket_path(), "PrepareRootfs",
             "instance{namespace:\"ns\" name:\"exec\"} layers{paths:\"" + layer + "\"}"});
    INFO(r.Describe() << r.out << r.err);
    REQUIRE(r.exit_code == 0);
    rootfs = dir / "instances/ns/exec/rootfs";
    PodOptions options;
    options.rootfs_host_path = rootfs;
    options.binds = {dir.path()};
    pod = std::make_unique<SimulatedPod>(options);
  }

  std::unique_ptr<SimulatedPod> MakePod(const std::string& root) {
    PodOptions options;
    options.rootfs_host_path = root;
    options.binds = {dir.path()};
    auto p = std::make_unique<SimulatedPod>(options);
    if (!p->started()) return p;
    ProcessResult proc =
        p->Exec({"/bin/mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", "/rootfs/proc"});
    INFO(proc.Describe() << proc.err);
    REQUIRE(proc.exit_code == 0);
    ProcessResult pts =
        p->Exec({"/bin/mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620",
                 "devpts", "/rootfs/dev/pts"});
    INFO(pts.Describe() << pts.err);
    REQUIRE(pts.exit_code == 0);
    return p;
  }

  // argv of sc-exec with this node's socket.
  std::vector<std::string> ScExec(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {ScExecBinary(), "--socket", daemon.socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  ProcessResult Exec(const std::vector<std::string>& args, const RunOptions& options = {}) {
    return pod->Exec(ScExec(args), options);
  }
  std::vector<std::string> Prefixed(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = pod->ExecPrefix();
    std::vector<std::string> sc = ScExec(args);
    argv.insert(argv.end(), sc.begin(), sc.end());
    return argv;
  }

  TempDir dir;
  std::string rootfs;
  DaemonProcess daemon;
  std::unique_ptr<SimulatedPod> pod;
};

std::string Readlink(const std::string& path) {
  char buf[256];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
  return n > 0 ? std::string(buf, n) : "";
}

std::string StatusField(const std::string& status, const std::string& key) {
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      std::string v = line.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "<missing " + key + ">";
}

// A process started by the test with its stdio on pipes or on a pty, killed
// and reaped on destruction. Used where Run() (which waits) does not fit.
class Child {
 public:
  Child(const std::vector<std::string>& argv, bool use_pty = false, winsize size = {24, 80, 0, 0}) {
    int in[2], out[2];
    if (use_pty) {
      int master = -1, slave = -1;
      if (openpty(&master, &slave, nullptr, nullptr, &size) != 0) return;
      in_.reset(master);
      out_.reset(dup(master));
      pid_ = fork();
      if (pid_ == 0) {
        setsid();
        ioctl(slave, TIOCSCTTY, 0);
        dup2(slave, 0);
        dup2(slave, 1);
        dup2(slave, 2);
        Exec(argv);
      }
      close(slave);
      return;
    }
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 2);
      Exec(argv);
    }
    close(in[0]);
    close(out[1]);
    in_.reset(in[1]);
    out_.reset(out[0]);
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  int in() const { return in_.get(); }
  void CloseIn() { in_.reset(); }
  void Write(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = write(in_.get(), s.data() + off, s.size() - off);
      if (n <= 0) return;
      off += n;
    }
  }
  // Reads until `needle` has appeared in everything read so far, or timeout.
  bool WaitFor(const std::string& needle, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (output_.find(needle) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{out_.get(), POLLIN, 0};
      if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = read(out_.get(), buf, sizeof(buf));
      if (n <= 0) return output_.find(needle) != std::string::npos;
      output_.append(buf, n);
    }
    return true;
  }
  // Reads what there is, without waiting: whether `needle` has appeared.
  bool Saw(const std::string& needle) {
    pollfd pfd{out_.get(), POLLIN, 0};
    while (out_ && poll(&pfd, 1, 0) > 0) {
      char buf[4096];
      ssize_t n = read(out_.get(), buf, sizeof(buf));
      if (n <= 0) break;
      output_.append(buf, n);
    }
    return output_.find(needle) != std::string::npos;
  }
  int out() const { return out_.get(); }
  // Waits for the exit status (bounded); -1 on timeout, 128+N for signal N.
  int Wait(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      // Keep draining so the child never blocks on a full pipe.
      pollfd pfd{out_.get(), POLLIN, 0};
      if (out_ && poll(&pfd, 1, 20) > 0) {
        char buf[4096];
        ssize_t n = read(out_.get(), buf, sizeof(buf));
        if (n > 0) output_.append(buf, n);
        if (n <= 0) out_.reset();
      } else if (!out_) {
        std::this_thread::yield();
      }
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (!out_) {
        // Nothing to drain: block in waitpid in small steps.
        pollfd none{-1, 0, 0};
        poll(&none, 0, 20);
      }
    }
    return -1;
  }
  const std::string& output() const { return output_; }

 private:
  [[noreturn]] static void Exec(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  pid_t pid_ = -1;
  bool reaped_ = false;
  UniqueFd in_;
  UniqueFd out_;
  std::string output_;
};

// Host pids whose command line contains `marker`.
std::vector<pid_t> ProcessesWith(const std::string& marker) {
  std::vector<pid_t> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFile(entry.path() / "cmdline");
    if (cmdline.find(marker) != std::string::npos) found.push_back(std::stoi(name));
  }
  return found;
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (condition()) return true;
    pollfd none{-1, 0, 0};
    poll(&none, 0, 50);
  }
  return condition();
}

std::string RandomBytes(size_t n) {
  std::string data(n, '\0');
  std::mt19937_64 rng(std::random_device{}());
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&data[i], &v, 8);
  }
  return data;
}

}  // namespace

TEST_CASE("exec: exit status, stdin EOF, not found, not executable, workdir", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node;
  REQUIRE(node.pod->started());

  SECTION("output and exit code") {
    ProcessResult r = node.Exec({"sh", "-c", "echo out; echo err >&2; exit 7"});
    INFO(r.Describe() << " err=" << r.err);
    CHECK(r.exit_code == 7);
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
  }
  SECTION("death by signal is 128+N") {
    ProcessResult r = node.Exec({"sh", "-c", "kill -9 $$"});
    INFO(r.Describe() << " err=" << r.err);
    CHECK(r.exit_code == 137);
  }
  SECTION("stdin EOF ends cat") {
    RunOptions options;
    options.stdin_data = "hello\nworld\n";
    options.timeout = milliseconds(20000);
    ProcessResult r = node.Exec({"cat"}, options);
    INFO(r.Describe() << " err=" << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "hello\nworld\n");
  }
  SECTION("true exits while stdin stays open") {
    RunOptions options;
    options.close_stdin = false;
    options.timeout = milliseconds(20000);
    ProcessResult r = node.Exec({"true"}, options);
    INFO(r.Describe() << " err=" << r.err);
    CHECK(!r.timed_out);
    CHECK(r.exit_code == 0);
  }
  SECTION("command not found is 127 with a reason") {
    ProcessResult r = node.Exec({"no-such-command-sc"});
    INFO(r.Describe() << " err=" << r.err);
    CHECK(r.exit_code == 127);
    CHECK(r.err.find("no-such-command-sc: command not found") != std::string::npos);
  }
  SECTION("not executable is 126 with a reason") {
    ProcessResult r = node.Exec({"/bin/not-executable"});
    INFO(r.Describe() << " err=" << r.err);
    CHECK(r.exit_code == 126);
    CHECK(r.err.find("Permission denied") != std::string::npos);
  }
  SECTION("workdir is used, a missing one is an error") {
    ProcessResult r = node.Exec({"--workdir", "/work", "pwd"});
    INFO(r.Describe() << " err=" << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "/work\n");
    ProcessResult missing = node.Exec({"--workdir", "/no/such/dir", "pwd"});
    INFO(missing.Describe() << " err=" << missing.err);
    CHECK(missing.exit_code == 122);
    CHECK(missing.err.find("/no/such/dir") != std::string::npos);
    CHECK(missing.out.empty());
  }
  SECTION("an inherited working directory the rootfs lacks falls back to /") {
    // sc-exec without --workdir sends its own cwd (a consumer image's
    // WORKDIR): used where the rootfs has it, "/" where it does not.
    auto in_cwd = [&](const std::string& cwd) {
      std::string cmd = "cd '" + cwd + "' && exec";
      for (const std::string& a : node.ScExec({"pwd"})) cmd += " '" + a + "'";
      return node.pod->Exec({"/bin/sh", "-c", cmd});
    };
    ProcessResult kept = in_cwd("/tmp");
    INFO(kept.Describe() << " err=" << kept.err);
    CHECK(kept.exit_code == 0);
    CHECK(kept.out == "/tmp\n");
    ProcessResult fallback = in_cwd(node.dir.path());  // the pod has it, the rootfs not
    INFO(fallback.Describe() << " err=" << fallback.err);
    CHECK(fallback.exit_code == 0);
    CHECK(fallback.out == "/\n");
  }
  SECTION("environment passed, SC_SOCKET not") {
    RunOptions options;
    options.env =
        Env({"PATH=/bin", "SC_TEST_VAR=forty two", "SC_SOCKET=" + node.daemon.socket_path()});
    ProcessResult r = node.Exec({"env"}, options);
    INFO(r.Describe() << " err=" << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("SC_TEST_VAR=forty two\n") != std::string::npos);
    CHECK(r.out.find("SC_SOCKET") == std::string::npos);
  }
  SECTION("symlink dispatch on argv[0]") {
    std::string link = node.dir / "sc-bin";
    fs::create_directories(link);
    fs::create_symlink(ScExecBinary(), link + "/uname");
    RunOptions options;
    options.env = Env({"PATH=/bin", "SC_SOCKET=" + node.daemon.socket_path()});
    ProcessResult r = node.pod->Exec({link + "/uname", "-n"}, options);
    INFO(r.Describe() << " err=" << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "sc-test-pod\n");
  }
  // Every session is audited with argv[0], pid and exit.
  std::string audit = node.daemon.AuditLog();
  CHECK(audit.find("\"method\":\"Exec\"") != std::string::npos);
  CHECK(audit.find("\"argv0\"") != std::string::npos);
}

TEST_CASE("exec: 64 MiB round trip, byte exact, stdout and stderr", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node;
  REQUIRE(node.pod->started());
  std::string data = RandomBytes(64 << 20);
  RunOptions options;
  options.stdin_data = data;
  options.timeout = milliseconds(120000);
  ProcessResult out = node.Exec({"cat"}, options);
  INFO(out.Describe() << " err=" << out.err.substr(0, 200));
  CHECK(out.exit_code == 0);
  CHECK(out.out.size() == data.size());
  CHECK((out.out == data));
  ProcessResult err = node.Exec({"sh", "-c", "cat >&2"}, options);
  INFO(err.Describe());
  CHECK(err.exit_code == 0);
  CHECK(err.err.size() == data.size());
  CHECK((err.err == data));
  CHECK(err.out.empty());
}

TEST_CASE("exec: the process runs as the pod would, with nothing of the daemon's", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node;
  REQUIRE(node.pod->started());
  const std::string init = std::to_string(node.pod->init_pid());
  const std::string daemon = std::to_string(node.daemon.pid());

  SECTION("namespaces are the pod's, not the daemon's") {
    ProcessResult r = node.Exec(
        {"sh", "-c", "for n in mnt uts ipc net pid cgroup; do readlink /proc/self/ns/$n; done"});
    INFO(r.Describe() << " err=" << r.err);
    REQUIRE(r.exit_code == 0);
    std::istringstream lines(r.out);
    for (const char* ns : {"mnt", "uts", "ipc", "net", "pid", "cgroup"}) {
      std::string line;
      std::getline(lines, line);
      INFO(ns);
      CHECK(line == Readlink("/proc/" + init + "/ns/" + ns));
      // The test pod shares the host's cgroup namespace, so only the others
      // can differ from the daemon's.
      if (std::string(ns) != "cgroup") CHECK(line != Readlink("/proc/" + daemon + "/ns/" + ns));
    }
  }
  SECTION("cgroup is the pod's container cgroup") {
    ProcessResult r = node.Exec({"cat", "/proc/self/cgroup"});
    ProcessResult direct = node.pod->Exec({"/bin/cat", "/proc/self/cgroup"});
    INFO(r.Describe() << " err=" << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == direct.out);
    CHECK(r.out.find(node.pod->container_id()) != std::string::npos);
  }
  SECTION("no capabilities, no_new_privs, seccomp filter, only fds 0-2") {
    ProcessResult r = node.Exec({"cat", "/proc/self/status"});
    INFO(r.Describe() << " err=" << r.err);
    REQUIRE(r.exit_code == 0);
    for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
      INFO(cap);
      CHECK(StatusField(r.out, cap) == "0000000000000000");
    }
    CHECK(StatusField(r.out, "NoNewPrivs") == "1");
    CHECK(StatusField(r.out, "Seccomp") == "2");
    // ls opens one directory fd of its own (the highest).
    ProcessResult fds = node.Exec({"ls", "/proc/self/fd"});
    INFO(fds.Describe() << " err=" << fds.err);
    CHECK(fds.out == "0\n1\n2\n3\n");
  }
  SECTION("mount and a new user namespace fail with EPERM") {
    ProcessResult m = node.Exec({"mount", "-t", "tmpfs", "none", "/tmp"});
    INFO(m.Describe() << " err=" << m.err);
    CHECK(m.exit_code != 0);
    // busybox words EPERM as "permission denied (are you root?)".
    CHECK((m.err.find("Operation not permitted") != std::string::npos ||
           m.err.find("permission denied") != std::string::npos));
    // Creating a user namespace needs no capability; only the filter stops it.
    ProcessResult u = node.Exec({"unshare", "-U", "true"});
    INFO(u.Describe() << " err=" << u.err);
    CHECK(u.exit_code != 0);
    CHECK(u.err.find("Operation not permitted") != std::string::npos);
  }
  SECTION("the pod's hostname, uid 0 of the pod, the pod's pid namespace") {
    ProcessResult r = node.Exec({"sh", "-c", "hostname; id -u; echo $$"});
    INFO(r.Describe() << " err=" << r.err);
    REQUIRE(r.exit_code == 0);
    std::istringstream lines(r.out);
    std::string host, uid, pid;
    std::getline(lines, host);
    std::getline(lines, uid);
    std::getline(lines, pid);
    CHECK(host == "sc-test-pod");
    CHECK(uid == "0");
    // Numbered in the pod's pid namespace: small, not the host's.
    CHECK(std::stoi(pid) < 1000);
  }
}

TEST_CASE("exec: a non-root caller runs as itself", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node({"--socket_mode=0666"});
  REQUIRE(node.pod->started());
  REQUIRE(chmod(node.dir.path().c_str(), 0755) == 0);  // mkdtemp's 0700 would stop uid 1000
  std::vector<std::string> argv = {"/usr/bin/setpriv", "--reuid=1000", "--regid=1000",
                                   "--clear-groups"};
  for (const std::string& a : node.ScExec({"--workdir", "/", "sh", "-c",
                                           "id -u; id -g; grep -E '^Cap(Eff|Prm|Bnd)' "
                                           "/proc/self/status"})) {
    argv.push_back(a);
  }
  ProcessResult r = node.pod->Exec(argv);
  INFO(r.Describe() << " out=" << r.out << " err=" << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.rfind("1000\n1000\n", 0) == 0);
  CHECK(r.out.find("CapEff:\t0000000000000000") != std::string::npos);
  CHECK(r.out.find("CapPrm:\t0000000000000000") != std::string::npos);
  CHECK(r.out.find("CapBnd:\t0000000000000000") != std::string::npos);
}

TEST_CASE("exec: a pod reaches only its own rootfs", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node;
  REQUIRE(node.pod->started());
  std::string other = node.dir / "other-rootfs";
  MakeBusyboxRootfs(other);
  std::ofstream(other + "/secret-of-b") << "b";
  std::ofstream(node.rootfs + "/mine-a") << "a";
  std::unique_ptr<SimulatedPod> pod_b = node.MakePod(other);
  REQUIRE(pod_b->started());

  ProcessResult a = node.Exec({"ls", "/"});
  INFO(a.Describe() << " err=" << a.err);
  CHECK(a.out.find("mine-a") != std::string::npos);
  CHECK(a.out.find("secret-of-b") == std::string::npos);
  ProcessResult b = pod_b->Exec(node.ScExec({"ls", "/"}));
  CHECK(b.out.find("secret-of-b") != std::string::npos);
  CHECK(b.out.find("mine-a") == std::string::npos);
}

TEST_CASE("exec: a terminal sees its size change", "[exec][tty]") {
  SC_REQUIRE_ROOT();
  ExecNode node;
  REQUIRE(node.pod->started());
  Child child(node.Prefixed({"sh", "-c",
                             "stty size; echo tty=$(tty) term=$TERM; "
                             "while read line; do stty size; [ \"$line\" = q ] && exit 5; done"}),
              true, winsize{24, 80, 0, 0});
  REQUIRE(child.pid() > 0);
  REQUIRE(child.WaitFor("24 80", milliseconds(15000)));
  CHECK(child.WaitFor("tty=/dev/pts/", milliseconds(5000)));
  winsize bigger{50, 132, 0, 0};
  REQUIRE(ioctl(child.in(), TIOCSWINSZ, &bigger) == 0);
  // The resize travels as a message; each newline asks for the size again,
  // until it shows (bounded).
  bool seen = false;
  for (int i = 0; i < 100 && !seen; ++i) {
    child.Write("\r");
    seen = child.WaitFor("50 132", milliseconds(100));
  }
  INFO(child.output());
  CHECK(seen);
  child.Write("q\r");
  CHECK(child.Wait(milliseconds(15000)) == 5);
}

// sc-exec's pid (node-wide) below a pod exec helper.
pid_t ScExecBelow(pid_t helper) {
  std::ifstream children("/proc/" + std::to_string(helper) + "/task/" + std::to_string(helper) +
                         "/children");
  pid_t sc_exec = 0;
  children >> sc_exec;
  return sc_exec;
}

TEST_CASE("exec: signals are forwarded, a killed client leaves nothing behind", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node({"--exec_kill_grace=1s"});
  REQUIRE(node.pod->started());

  SECTION("SIGTERM to sc-exec reaches the process") {
    Child child(node.Prefixed({"sh", "-c",
                               "trap 'echo got-term; exit 3' TERM; echo ready; "
                               "while true; do sleep 0.05; done"}));
    REQUIRE(child.WaitFor("ready", milliseconds(15000)));
    // The pod helper forwards it to sc-exec, which forwards it to the process.
    REQUIRE(kill(child.pid(), SIGTERM) == 0);
    int code = child.Wait(milliseconds(15000));
    INFO(child.output());
    CHECK(child.output().find("got-term") != std::string::npos);
    CHECK(code == 3);
  }
  // By reference the session's keeper stops the group; streaming, the daemon.
  const bool streaming = GENERATE(false, true);
  SECTION(std::string("SIGKILL to sc-exec: the process is gone within the grace") +
          (streaming ? " (--stream)" : "")) {
    std::string marker = "sc-marker-" + RandomHex(12);
    std::vector<std::string> args = {
        "sh", "-c", "trap '' HUP TERM; echo ready; while true; do sleep 1; done", marker};
    if (streaming) args.insert(args.begin(), "--stream");
    Child child(node.Prefixed(args));
    REQUIRE(child.WaitFor("ready", milliseconds(15000)));
    REQUIRE(ProcessesWith(marker).size() >= 1);
    pid_t sc_exec = ScExecBelow(child.pid());
    REQUIRE(sc_exec > 0);
    REQUIRE(kill(sc_exec, SIGKILL) == 0);
    // It ignores SIGHUP and SIGTERM: only the SIGKILL after the 1 s grace ends it.
    CHECK(WaitUntil([&] { return ProcessesWith(marker).empty(); }, milliseconds(10000)));
    if (streaming) {
      // The session's audit line is written once its processes are reaped, a
      // moment after they left /proc (seen under TCG in the VM test).
      CHECK(WaitUntil(
          [&] { return node.daemon.AuditLog().find("the client went away") != std::string::npos; },
          milliseconds(5000)));
      INFO(node.daemon.AuditLog());
    } else {
      // Nothing of the session is left: no keeper either.
      CHECK(WaitUntil([&] { return ProcessesWith("sc-mount-helper: keeper").empty(); },
                      milliseconds(5000)));
    }
  }
}

TEST_CASE("exec: signals sent as sessions start are forwarded, none lost", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node;
  REQUIRE(node.pod->started());
  // Sessions start at once, and each is sent every forwarded signal the
  // moment its workload is ready: by reference, mostly while sc-exec still
  // ends its call or execs itself as the waiter. A signal its signal thread
  // had taken but not forwarded used to die with the thread there.
  struct Named {
    int sig;
    const char* name;
  };
  const Named kSignals[] = {{SIGTERM, "TERM"}, {SIGINT, "INT"},   {SIGHUP, "HUP"},
                            {SIGQUIT, "QUIT"}, {SIGUSR1, "USR1"}, {SIGUSR2, "USR2"}};
  std::string script = "n=0; ";
  for (const Named& s : kSignals) {
    script += std::string("trap 'echo got-") + s.name + "; n=$((n+1))' " + s.name + "; ";
  }
  script += "echo ready; while [ $n -lt 6 ]; do sleep 0.05; done; exit 3";
  enum Mode { kPipes, kTerminal, kStreamed };
  // By reference with pipes most: the loss showed there.
  const Mode kModes[] = {kPipes, kPipes, kTerminal, kPipes, kPipes, kStreamed};
  struct Session {
    std::unique_ptr<Child> child;
    Mode mode;
    bool signalled = false;
  };
  std::vector<Session> sessions;
  for (int round = 0; round < 3; ++round) {
    for (Mode mode : kModes) {
      std::vector<std::string> args = {"sh", "-c", script};
      if (mode == kStreamed) args.insert(args.begin(), "--stream");
      sessions.push_back({std::make_unique<Child>(node.Prefixed(args), mode == kTerminal), mode});
    }
  }
  auto deadline = Clock::now() + std::chrono::seconds(60);
  size_t signalled = 0;
  while (signalled < sessions.size() && Clock::now() < deadline) {
    std::vector<pollfd> outputs;
    for (const Session& s : sessions) {
      if (!s.signalled) outputs.push_back({s.child->out(), POLLIN, 0});
    }
    poll(outputs.data(), outputs.size(), 100);
    for (Session& s : sessions) {
      if (s.signalled || !s.child->Saw("ready")) continue;
      pid_t sc_exec = ScExecBelow(s.child->pid());
      REQUIRE(sc_exec > 0);
      for (const Named& signal : kSignals) REQUIRE(kill(sc_exec, signal.sig) == 0);
      s.signalled = true;
      ++signalled;
    }
  }
  for (const Session& s : sessions) {
    if (!s.signalled) UNSCOPED_INFO("not ready (mode " << s.mode << "): " << s.child->output());
  }
  REQUIRE(signalled == sessions.size());
  // A lost signal leaves its workload waiting: one deadline for all, each
  // session's output read all along.
  std::vector<int> codes(sessions.size(), -1);
  deadline = Clock::now() + std::chrono::seconds(15);
  while (std::count(codes.begin(), codes.end(), -1) > 0 && Clock::now() < deadline) {
    for (size_t i = 0; i < sessions.size(); ++i) {
      if (codes[i] == -1) codes[i] = sessions[i].child->Wait(milliseconds(20));
    }
  }
  size_t forwarded = 0;
  for (size_t i = 0; i < sessions.size(); ++i) {
    const Session& s = sessions[i];
    int code = codes[i];
    bool all = true;
    for (const Named& signal : kSignals) {
      all = all && s.child->output().find(std::string("got-") + signal.name) != std::string::npos;
    }
    if (code == 3 && all) {
      ++forwarded;
    } else {
      UNSCOPED_INFO("mode " << s.mode << ": code " << code << ", output " << s.child->output());
    }
  }
  CHECK(forwarded == sessions.size());
}

TEST_CASE("exec: 50 concurrent sessions, then the daemon is back where it was", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node;
  REQUIRE(node.pod->started());
  // One session first so that lazily made things (the seccomp program,
  // gRPC's threads) exist before the baseline is taken.
  REQUIRE(node.Exec({"true"}).exit_code == 0);
  REQUIRE(WaitUntil([&] { return node.daemon.ChildCount() == 0; }, milliseconds(5000)));
  int fds_before = node.daemon.OpenFdCount();

  constexpr int kSessions = 50;
  std::vector<std::unique_ptr<Child>> children;
  for (int i = 0; i < kSessions; ++i) {
    children.push_back(std::make_unique<Child>(node.Prefixed(
        {"sh", "-c", "read x; echo session-$0-$x; exit $(($0 % 7))", std::to_string(i)})));
  }
  for (int i = 0; i < kSessions; ++i) {
    children[i]->Write("input" + std::to_string(i) + "\n");
    children[i]->CloseIn();
  }
  int correct = 0;
  for (int i = 0; i < kSessions; ++i) {
    int code = children[i]->Wait(milliseconds(60000));
    std::string want = "session-" + std::to_string(i) + "-input" + std::to_string(i) + "\n";
    if (code == i % 7 && children[i]->output() == want) {
      ++correct;
    } else {
      UNSCOPED_INFO("session " << i << ": code " << code << " output " << children[i]->output());
    }
  }
  CHECK(correct == kSessions);
  CHECK(WaitUntil([&] { return node.daemon.ChildCount() == 0; }, milliseconds(10000)));
  CHECK(WaitUntil([&] { return node.daemon.OpenFdCount() <= fds_before; }, milliseconds(10000)));
  INFO("fds before " << fds_before << " after " << node.daemon.OpenFdCount());
}

long VmRssKiB(pid_t pid) {
  std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  return std::stol(StatusField(status, "VmRSS"));
}

TEST_CASE("exec: a slow reader slows the process, the daemon's memory stays bounded", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node;
  REQUIRE(node.pod->started());
  long rss_before = VmRssKiB(node.daemon.pid());
  // 2048 x 64 KiB = 128 MiB, the count of chunks written kept in the rootfs.
  Child child(node.Prefixed({"sh", "-c",
                             "i=0; while [ $i -lt 2048 ]; do yes | head -c 65536; i=$((i+1)); "
                             "echo $i > /tmp/progress; done"}));
  std::string progress_file = node.rootfs + "/tmp/progress";
  auto progress = [&] {
    std::ifstream in(progress_file);
    long v = 0;
    in >> v;
    return v;
  };
  // Nobody reads sc-exec's stdout: the process must stall. Wait (bounded)
  // until its progress has not moved for a second.
  long last = -1;
  auto stable_since = Clock::now();
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    long now = progress();
    if (now != last) {
      last = now;
      stable_since = Clock::now();
    } else if (now > 0 && Clock::now() - stable_since > std::chrono::seconds(1)) {
      break;
    }
    pollfd none{-1, 0, 0};
    poll(&none, 0, 50);
  }
  INFO("chunks written while nobody read: " << last);
  WARN("flow control: " << last * 64 << " KiB written by the process while nobody read");
  CHECK(last > 0);
  // What is in flight: pipes, the daemon's chunk, gRPC's windows, sc-exec's
  // stdout pipe; far below the 128 MiB the process wants to write.
  CHECK(last * 64 < 32 * 1024);
  long rss_stalled = VmRssKiB(node.daemon.pid());
  INFO("daemon VmRSS before " << rss_before << " KiB, stalled " << rss_stalled << " KiB");
  CHECK(rss_stalled - rss_before < 32 * 1024);
  // Reading resumes it, and every byte arrives.
  CHECK(child.Wait(milliseconds(60000)) == 0);
  CHECK(child.output().size() == 128u << 20);
  CHECK(progress() == 2048);
}

// The limits bound what the daemon holds: streaming sessions, and starts in
// flight. A by-reference session is the pod's once it runs (its keeper and
// workload count in the pod's pids and memory limits).
TEST_CASE("exec: session limits answer RESOURCE_EXHAUSTED", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node({"--max_execs_per_pod=1"});
  REQUIRE(node.pod->started());
  // A running by-reference session holds no slot.
  Child kept(node.Prefixed({"sh", "-c", "echo ready; read x; exit 0"}));
  REQUIRE(kept.WaitFor("ready", milliseconds(15000)));
  Child first(node.Prefixed({"--stream", "sh", "-c", "echo ready; read x; exit 0"}));
  REQUIRE(first.WaitFor("ready", milliseconds(15000)));
  ProcessResult second = node.Exec({"--stream", "true"});
  INFO(second.Describe() << " err=" << second.err);
  CHECK(second.exit_code == 122);
  CHECK(second.err.find("RESOURCE_EXHAUSTED") != std::string::npos);
  first.CloseIn();
  CHECK(first.Wait(milliseconds(15000)) == 0);
  kept.CloseIn();
  CHECK(kept.Wait(milliseconds(15000)) == 0);
  // The slot is free again.
  CHECK(node.Exec({"true"}).exit_code == 0);
}

// Once its process runs, a by-reference sc-exec drops gRPC (it execs itself
// as a one-thread waiter): its connection is closed, so the daemon holds
// nothing of the session and --max_connections_per_pod does not bound how
// many sessions a pod runs.
TEST_CASE("exec: a running by-reference session holds nothing of the daemon's",
          "[exec][by_reference]") {
  SC_REQUIRE_ROOT();
  ExecNode node({"--max_connections_per_pod=4"});
  REQUIRE(node.pod->started());
  REQUIRE(node.Exec({"true"}).exit_code == 0);
  REQUIRE(WaitUntil([&] { return node.daemon.ChildCount() == 0; }, milliseconds(5000)));
  const int fds_before = node.daemon.OpenFdCount();
  std::vector<std::unique_ptr<Child>> sessions;
  for (int i = 0; i < 8; ++i) {
    sessions.push_back(std::make_unique<Child>(
        node.Prefixed({"sh", "-c", "echo ready; read x; exit " + std::to_string(i)})));
    INFO("session " << i << ": " << sessions.back()->output());
    REQUIRE(sessions.back()->WaitFor("ready", milliseconds(15000)));
  }
  // The daemon's fds: its listening socket is its only socket once no
  // connection is open (fds_before may still count the warm-up's, which is
  // released within a second of its close).
  std::string fd_list;
  auto sockets = [&] {
    int n = 0;
    fd_list.clear();
    std::error_code ec;
    for (const auto& entry :
         fs::directory_iterator("/proc/" + std::to_string(node.daemon.pid()) + "/fd", ec)) {
      std::string target = fs::read_symlink(entry.path(), ec).string();
      fd_list += entry.path().filename().string() + " -> " + target + "\n";
      n += target.rfind("socket:", 0) == 0 ? 1 : 0;
    }
    return n;
  };
  bool back = WaitUntil([&] { return sockets() == 1 && node.daemon.OpenFdCount() <= fds_before; },
                        milliseconds(5000));
  INFO("daemon fds before " << fds_before << ", now:\n" << fd_list);
  CHECK(back);
  // Each sc-exec (the pod helper's child) is down to one thread.
  for (auto& session : sessions) {
    std::ifstream children("/proc/" + std::to_string(session->pid()) + "/task/" +
                           std::to_string(session->pid()) + "/children");
    pid_t sc_exec = 0;
    children >> sc_exec;
    REQUIRE(sc_exec > 0);
    std::string status = ReadFile("/proc/" + std::to_string(sc_exec) + "/status");
    CHECK(status.find("Threads:\t1\n") != std::string::npos);
  }
  for (size_t i = 0; i < sessions.size(); ++i) {
    sessions[i]->CloseIn();
    CHECK(sessions[i]->Wait(milliseconds(15000)) == static_cast<int>(i));
  }
}

TEST_CASE("exec: sc-exec --entrypoint as PID 1 reaps orphaned zombies", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node(ExecNode::Prepared{});
  REQUIRE(node.pod->started());
  // sc-exec becomes PID 1 of a pid namespace nested in the pod; the workload
  // joins it, so its orphans are reparented to sc-exec. The rootfs' /proc is
  // the host's: an NSpid line with three levels (host, pod, nested) ending in
  // the orphan's pid is the orphan, alive or a zombie.
  std::string script =
      "(sleep 0.2 & echo $! > /tmp/orphan); p=$(cat /tmp/orphan); i=0; "
      "while grep -qE \"^NSpid:[[:space:]]+[0-9]+[[:space:]]+[0-9]+[[:space:]]+$p\\$\" "
      "/proc/[0-9]*/status 2>/dev/null; do "
      "i=$((i+1)); [ $i -gt 100 ] && { echo not-reaped; exit 1; }; sleep 0.1; done; "
      "echo reaped-$p";
  ProcessResult r = node.pod->Exec({"/usr/bin/unshare", "--pid", "--fork", ScExecBinary(),
                                    "--socket", node.daemon.socket_path(), "--entrypoint", "--wait",
                                    "10", "sh", "-c", script});
  INFO(r.Describe() << " out=" << r.out << " err=" << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("reaped-") != std::string::npos);
}

TEST_CASE("exec: sc-exec --ready and --entrypoint wait for the rootfs", "[exec]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  DaemonProcess daemon(dir / "mh.sock");
  PodOptions options;
  options.binds = {dir.path()};
  SimulatedPod pod(options);  // no rootfs mounted at /rootfs
  REQUIRE(pod.started());
  ProcessResult ready = pod.Exec({ScExecBinary(), "--socket", daemon.socket_path(), "--ready"});
  INFO(ready.Describe() << " err=" << ready.err);
  CHECK(ready.exit_code == 123);
  ProcessResult entry = pod.Exec(
      {ScExecBinary(), "--socket", daemon.socket_path(), "--entrypoint", "--wait", "1", "true"});
  INFO(entry.Describe() << " err=" << entry.err);
  CHECK(entry.exit_code == 123);
  CHECK(entry.err.find("waiting for the rootfs") != std::string::npos);
  // A stop request while waiting ends the wait (on a pty: stderr readable).
  std::vector<std::string> argv = pod.ExecPrefix();
  for (const std::string& a :
       {ScExecBinary(), std::string("--socket"), daemon.socket_path(), std::string("--entrypoint"),
        std::string("--wait"), std::string("60"), std::string("true")}) {
    argv.push_back(a);
  }
  Child stopped(argv, true);
  REQUIRE(stopped.WaitFor("waiting for the rootfs", milliseconds(15000)));
  REQUIRE(kill(stopped.pid(), SIGTERM) == 0);
  CHECK(stopped.Wait(milliseconds(15000)) == 128 + SIGTERM);
}

TEST_CASE("exec: an operator execs into a named instance in fresh namespaces", "[exec]") {
  SC_REQUIRE_ROOT();
  ExecNode node(ExecNode::Prepared{});
  REQUIRE(node.pod->started());
  ProcessResult r =
      Run(node.ScExec({"--instance", "ns/exec", "--workdir", "/", "sh", "-c",
                       "echo $$; for n in mnt uts ipc net pid; do readlink /proc/self/ns/$n; done; "
                       "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"}));
  INFO(r.Describe() << " out=" << r.out << " err=" << r.err);
  REQUIRE(r.exit_code == 0);
  std::istringstream lines(r.out);
  std::string line;
  std::getline(lines, line);
  // Its own pid namespace, where pid 1 is the daemon's reaper (pid_init.h)
  // and the workload pid 2, so that signals reach it.
  CHECK(line == "2");
  const std::string daemon = std::to_string(node.daemon.pid());
  for (const char* ns : {"mnt", "uts", "ipc", "net", "pid"}) {
    std::getline(lines, line);
    INFO(ns);
    CHECK(line != Readlink("/proc/" + daemon + "/ns/" + ns));
  }
  CHECK(r.out.find("CapEff:\t0000000000000000") != std::string::npos);
  CHECK(r.out.find("CapBnd:\t0000000000000000") != std::string::npos);
  CHECK(r.out.find("NoNewPrivs:\t1") != std::string::npos);
  CHECK(r.out.find("Seccomp:\t2") != std::string::npos);
  // A pod may not name an instance.
  ProcessResult pod = node.Exec({"--instance", "ns/exec", "true"});
  INFO(pod.Describe() << " err=" << pod.err);
  CHECK(pod.exit_code == 122);
  CHECK(pod.err.find("PERMISSION_DENIED") != std::string::npos);
  // And in the pod, the prepared instance is ready for --ready.
  ProcessResult ready = node.Exec({"--ready"});
  INFO(ready.Describe() << " err=" << ready.err);
  CHECK(ready.exit_code == 0);

  // What the command leaves behind in its pid namespace ends with it, and so
  // does the namespace's init: nothing of the exec is left on the node.
  const std::string marker = "left-behind-" + RandomHex(8);
  ProcessResult left = Run(node.ScExec({"--instance", "ns/exec", "--workdir", "/", "sh", "-c",
                                        "sh -c 'sleep 1000; : " + marker + "' & echo $!"}));
  INFO(left.Describe() << " err=" << left.err);
  CHECK(left.exit_code == 0);
  auto running = [&](const std::string& needle) {
    for (const auto& entry : fs::directory_iterator("/proc")) {
      std::string cmdline = ReadFile(entry.path().string() + "/cmdline");
      std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
      if (cmdline.find(needle) != std::string::npos) return true;
    }
    return false;
  };
  CHECK(PollUntil([&] { return !running(marker) && !running("sc-mount-helper: pid 1"); },
                  milliseconds(10000)));
}

// An operator's session lives in the daemon's pod, which a rollout ends:
// when the daemon dies, so does the session, and nothing of it is left.
TEST_CASE("exec: an operator's session ends with the daemon, leaving nothing", "[exec][restart]") {
  SC_REQUIRE_ROOT();
  ExecNode node(ExecNode::Prepared{});
  REQUIRE(node.pod->started());
  const std::string marker = "operator-session-" + RandomHex(8);
  Child session(node.ScExec({"--instance", "ns/exec", "--workdir", "/", "sh", "-c",
                             "trap '' HUP; echo ready; sh -c 'sleep 1000' " + marker +
                                 "-child & while true; do sleep 0.05; done",
                             marker}));
  REQUIRE(session.WaitFor("ready", milliseconds(15000)));
  REQUIRE(!ProcessesWith(marker).empty());
  node.daemon.Kill();
  // SIGTERM ends the shell at once, the child ignores nothing; within the
  // init's grace at the latest, everything of the session is gone.
  CHECK(PollUntil(
      [&] { return ProcessesWith(marker).empty() && ProcessesWith(kPidInitName).empty(); },
      milliseconds(15000)));
  INFO(session.output());
  session.Wait(milliseconds(15000));
}

// Figures for the closing note; hidden from the default run.
TEST_CASE("exec: benchmark", "[.bench]") {
  SC_REQUIRE_ROOT();
  ExecNode node;
  REQUIRE(node.pod->started());
  auto median_ms = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto time_ms = [](const std::function<void()>& f) {
    auto t0 = Clock::now();
    f();
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  // Both timed from inside the pod with the shell's own loop, so the pod
  // helper's cost is not counted.
  auto loop = [&](const std::string& cmd) {
    ProcessResult r =
        node.pod->Exec({"/bin/sh", "-c",
                        "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21; do "
                        "s=$(date +%s%N); " +
                            cmd + " || exit 9; e=$(date +%s%N); echo $(( (e-s)/1000 )); done"},
                       RunOptions{"", true, {}, milliseconds(120000)});
    REQUIRE(r.exit_code == 0);
    std::vector<double> us;
    std::istringstream in(r.out);
    double v;
    while (in >> v) us.push_back(v / 1000.0);
    return median_ms(us);
  };
  double sc = loop(ScExecBinary() + " --socket " + node.daemon.socket_path() + " true");
  double chroot = loop("chroot /rootfs /bin/true");
  WARN("sc-exec true median " << sc << " ms; chroot <rootfs> /bin/true median " << chroot << " ms");
  std::string gib = "head -c 1073741824 /dev/zero";
  double piped = time_ms([&] {
    REQUIRE(node.pod
                ->Exec({"/bin/sh", "-c", gib + " | cat > /dev/null"},
                       RunOptions{"", true, {}, milliseconds(300000)})
                .exit_code == 0);
  });
  double through = time_ms([&] {
    ProcessResult r = node.pod->Exec({"/bin/sh", "-c",
                                      gib + " | " + ScExecBinary() + " --socket " +
                                          node.daemon.socket_path() + " cat > /dev/null"},
                                     RunOptions{"", true, {}, milliseconds(300000)});
    INFO(r.Describe() << r.err);
    REQUIRE(r.exit_code == 0);
  });
  WARN("1 GiB through cat: plain pipe " << 1024.0 / (piped / 1000.0) << " MiB/s, through sc-exec "
                                        << 1024.0 / (through / 1000.0) << " MiB/s");
}

}  // namespace sc::test
