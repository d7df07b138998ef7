// Red-team tests (issue 18, finding 5): a tty session's terminal is reachable
// by that session only. Before, every tty session of an instance (a pod's or
// an operator's) took its pty from the instance's one devpts at
// <rootfs>/dev/pts, as root:5 0620: another consumer pod of the same
// instance, as a capless uid 0, listed /dev/pts, read what the victim typed
// (the line never reached the victim's shell) and wrote onto its screen.
// Now each tty session has a devpts of its own, mounted over <rootfs>/dev/pts
// in a mount namespace of the session's own, its slave owned by the
// workload's uid.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "tests/integration/harness.h"

namespace sc::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uid_t kUser = 1000;

// The argv prefix that runs what follows as `uid` (its gid the same, no
// supplementary groups, no capabilities); nothing for uid 0, which stays
// the pod's root (whose sc-exec session is capless anyway).
std::vector<std::string> As(uid_t uid) {
  if (uid == 0) return {};
  return {"/usr/bin/setpriv", "--reuid=" + std::to_string(uid), "--regid=" + std::to_string(uid),
          "--clear-groups"};
}

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A process on a pty of the test's (as a person's terminal is), killed and
// reaped on destruction.
class Terminal {
 public:
  explicit Terminal(const std::vector<std::string>& argv) {
    int master = -1, slave = -1;
    winsize size{24, 80, 0, 0};
    if (openpty(&master, &slave, nullptr, nullptr, &size) != 0) return;
    master_.reset(master);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      setsid();
      ioctl(slave, TIOCSCTTY, 0);
      dup2(slave, 0);
      dup2(slave, 1);
      dup2(slave, 2);
      execv(args[0], args.data());
      _exit(127);
    }
    close(slave);
  }
  ~Terminal() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool started() const { return pid_ > 0; }
  void Type(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = write(master_.get(), s.data() + off, s.size() - off);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  // Reads the screen until `needle` has appeared on it, or the timeout.
  bool WaitFor(const std::string& needle, milliseconds timeout = milliseconds(15000)) {
    auto deadline = Clock::now() + timeout;
    while (!Has(screen_, needle)) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{master_.get(), POLLIN, 0};
      if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = read(master_.get(), buf, sizeof(buf));
      if (n <= 0) return Has(screen_, needle);
      screen_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  // Ends the session's input (Ctrl-D) and waits (bounded) for sc-exec's exit
  // status; -1 on timeout.
  int Finish(milliseconds timeout = milliseconds(15000)) {
    Type("\x04");
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      pollfd pfd{master_.get(), POLLIN, 0};
      if (poll(&pfd, 1, 20) > 0) {
        char buf[4096];
        ssize_t n = read(master_.get(), buf, sizeof(buf));
        if (n > 0) screen_.append(buf, static_cast<size_t>(n));
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
    return -1;
  }
  const std::string& screen() const { return screen_; }

 private:
  UniqueFd master_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  std::string screen_;
};

// What a victim's session prints about its terminal; then it echoes every
// line it reads as got=<line>, runs a line run:<command>, until EOF.
constexpr char kVictim[] =
    "t=$(tty); echo \"tty=$t\"; stat -c 'owner=%u:%g mode=%a dev=%d' \"$t\"; "
    "echo \"pts=$(ls /dev/pts | tr '\\n' ' ')\"; echo ready; "
    "while read -r l; do case \"$l\" in run:*) eval \"${l#run:}\";; *) echo \"got=$l\";; esac; "
    "done; echo bye";

// A node with one prepared instance and two consumer pods of it: V (the
// victim's) and A (the attacker's).
struct TtyNode {
  TempDir dir;
  std::string run = dir / "run";
  std::string layers = dir / "layers";
  std::string image = layers + "/image";
  std::string instances = dir / "instances";
  std::string rootfs = instances + "/ns/tty/rootfs";
  std::unique_ptr<DaemonProcess> daemon;
  std::unique_ptr<SimulatedPod> pod_v;
  std::unique_ptr<SimulatedPod> pod_a;

  TtyNode() {
    // uid 1000 must reach the socket and the image.
    REQUIRE(chmod(dir.path().c_str(), 0755) == 0);
    fs::create_directories(run);
    fs::create_directories(instances);
    MakeBusyboxTree(image);
    // Roots for --rootfs that are no mount point: one with dev/pts, one
    // without dev.
    MakeBusyboxTree(image + "/inner");
    fs::create_directories(image + "/inner/dev/pts");
    fs::create_directories(image + "/bare/bin");
    fs::copy_file("/bin/busybox", image + "/bare/bin/busybox");
    fs::create_symlink("busybox", image + "/bare/bin/sh");
    daemon = std::make_unique<DaemonProcess>(
        run + "/mh.sock",
        std::vector<std::string>{"--instance_base=" + instances, "--layer_root=" + layers,
                                 "--socket_mode=0666", "--exec_kill_grace=1s"});
    REQUIRE(daemon->started());
    ProcessResult r =
        Run({TestClientBinary(), daemon->socket_path(), "PrepareRootfs",
             "instance{namespace:\"ns\" name:\"tty\"} layers{paths:\"" + image + "\"}"});
    INFO(r.Describe() << r.err);
    REQUIRE(r.exit_code == 0);
    pod_v = MakePod();
    pod_a = MakePod();
  }

  std::unique_ptr<SimulatedPod> MakePod() {
    PodOptions options;
    options.rootfs_host_path = rootfs;
    options.binds = {run};
    auto pod = std::make_unique<SimulatedPod>(options);
    REQUIRE(pod->started());
    return pod;
  }

  std::vector<std::string> ScExec(const std::vector<std::string>& args) const {
    return Concat({ScExecBinary(), "--socket", daemon->socket_path()}, args);
  }
  // The argv of sc-exec in `pod` as `uid`.
  std::vector<std::string> InPod(SimulatedPod& pod, uid_t uid,
                                 const std::vector<std::string>& args) const {
    return Concat(Concat(pod.ExecPrefix(), As(uid)), ScExec(args));
  }
  // A tty session of `pod` as `uid` running kVictim, ready.
  std::unique_ptr<Terminal> Victim(SimulatedPod& pod, uid_t uid) {
    auto t = std::make_unique<Terminal>(InPod(pod, uid, {"--tty", "sh", "-c", kVictim}));
    REQUIRE(t->started());
    INFO(t->screen());
    REQUIRE(t->WaitFor("ready\r\n"));
    return t;
  }
  // A session without a terminal, in pod A as `uid`, running `script`.
  ProcessResult Attack(uid_t uid, const std::string& script) {
    return Run(InPod(*pod_a, uid, {"--no-tty", "sh", "-c", script}));
  }
};

// The attacks of the finding from a session of pod A without a terminal:
// list /dev/pts, write onto every slave there, hold one open while the
// victim types. Checks the victim's screen and input afterwards.
void AttackFromOtherPod(TtyNode& node, Terminal& victim, uid_t attacker) {
  INFO("attacker uid " << attacker);
  const std::string injected = "INJECTED-" + RandomHex(8);
  ProcessResult listed =
      node.Attack(attacker,
                  "echo \"pts=$(ls /dev/pts | tr '\\n' ' ')\"; for f in /dev/pts/*; do "
                  "[ \"$f\" = /dev/pts/ptmx ] && continue; echo " +
                      injected +
                      " > \"$f\" && echo \"wrote $f\"; done; "
                      "echo " +
                      injected + " > /dev/pts/0 && echo 'wrote /dev/pts/0'; true");
  INFO(listed.Describe() << " out=" << listed.out << " err=" << listed.err);
  CHECK(listed.exit_code == 0);
  // Nothing of any session's terminal is there to see, let alone to open.
  CHECK(Has(listed.out, "pts=ptmx \n"));
  CHECK_FALSE(Has(listed.out, "wrote"));

  // A reader on the victim's /dev/pts/0 while the victim types.
  BackgroundProcess reader(
      Concat(Concat(node.pod_a->ExecPrefix(), As(attacker)),
             node.ScExec({"--no-tty", "sh", "-c",
                          "{ echo opened; cat; } </dev/pts/0 || echo open-failed"})));
  REQUIRE(PollUntil(
      [&] { return Has(reader.Output(), "opened") || Has(reader.Output(), "open-failed"); },
      milliseconds(15000)));
  INFO("reader: " << reader.Output());
  CHECK_FALSE(Has(reader.Output(), "opened"));
  std::vector<std::string> lines;
  for (int i = 0; i < 5; ++i) {
    lines.push_back("typed-" + RandomHex(8));
    victim.Type(lines.back() + "\r");
    // Every line reaches the victim's shell.
    INFO(victim.screen());
    CHECK(victim.WaitFor("got=" + lines.back() + "\r\n", milliseconds(5000)));
  }
  for (const std::string& line : lines) CHECK_FALSE(Has(reader.Output(), line));
  // The screen shows nothing of the attacker's (the writes above came
  // before the last line's echo on the same terminal).
  CHECK_FALSE(Has(victim.screen(), injected));
}

TEST_CASE("redteam: another pod of the instance cannot see, read or write a pod's terminal",
          "[redteam][tty]") {
  SC_REQUIRE_ROOT();
  TtyNode node;
  std::unique_ptr<Terminal> victim = node.Victim(*node.pod_v, 0);
  INFO(victim->screen());
  CHECK(victim->WaitFor("tty=/dev/pts/0\r\n", milliseconds(0)));
  // Its devpts holds its own terminal only.
  CHECK(victim->WaitFor("pts=0 ptmx \r\n", milliseconds(0)));

  SECTION("from sessions as uid 0 and uid 1000 without a terminal") {
    AttackFromOtherPod(node, *victim, 0);
    AttackFromOtherPod(node, *victim, kUser);
  }
  SECTION("from a tty session of the attacker's own") {
    const std::string injected = "INJECTED-" + RandomHex(8);
    Terminal attacker(node.InPod(
        *node.pod_a, 0,
        {"--tty", "sh", "-c",
         "echo \"tty=$(tty) pts=$(ls /dev/pts | tr '\\n' ' ')\"; for f in /dev/pts/[0-9]*; do "
         "echo " +
             injected + " > \"$f\"; done; echo attacked"}));
    REQUIRE(attacker.started());
    INFO(attacker.screen());
    CHECK(attacker.WaitFor("attacked\r\n"));
    // Its terminal is /dev/pts/0 too, of its own devpts, where the victim's
    // is not: what it writes there lands on its own screen.
    CHECK(Has(attacker.screen(), "tty=/dev/pts/0 pts=0 ptmx \r\n"));
    CHECK(Has(attacker.screen(), injected + "\r\n"));
    CHECK(attacker.Finish() == 0);
    const std::string line = "typed-" + RandomHex(8);
    victim->Type(line + "\r");
    CHECK(victim->WaitFor("got=" + line + "\r\n", milliseconds(5000)));
    CHECK_FALSE(Has(victim->screen(), injected));
  }
  SECTION("from pod A's own containers, through the rootfs hostPath") {
    ProcessResult listed = node.pod_a->Exec({"/bin/ls", "/rootfs/dev/pts"});
    INFO(listed.Describe() << " out=" << listed.out << " err=" << listed.err);
    CHECK(listed.exit_code == 0);
    CHECK(listed.out == "ptmx\n");
    // And on the node, the instance's devpts has no session's terminal.
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(node.rootfs + "/dev/pts")) {
      names.push_back(entry.path().filename());
    }
    CHECK(names == std::vector<std::string>{"ptmx"});
  }
  CHECK(victim->Finish() == 0);
  CHECK(Has(victim->screen(), "bye"));
}

TEST_CASE("redteam: a terminal is /dev/pts/N of the session's own devpts, owned by its uid",
          "[redteam][tty]") {
  SC_REQUIRE_ROOT();
  TtyNode node;
  // Two sessions of the same pod as uid 1000 at once.
  std::unique_ptr<Terminal> first = node.Victim(*node.pod_v, kUser);
  std::unique_ptr<Terminal> second = node.Victim(*node.pod_v, kUser);
  for (Terminal* t : {first.get(), second.get()}) {
    INFO(t->screen());
    CHECK(t->WaitFor("tty=/dev/pts/0\r\n", milliseconds(0)));
    CHECK(t->WaitFor("owner=1000:5 mode=620 dev=", milliseconds(0)));
    CHECK(t->WaitFor("pts=0 ptmx \r\n", milliseconds(0)));
  }
  // Each its own devpts (device number).
  auto dev = [](const std::string& screen) {
    size_t at = screen.find(" dev=");
    return at == std::string::npos ? std::string("?")
                                   : screen.substr(at + 5, screen.find('\r', at) - at - 5);
  };
  INFO(first->screen() << "\n" << second->screen());
  CHECK(dev(first->screen()) != dev(second->screen()));

  // A pty the workload allocates itself, through /dev/ptmx (the node's
  // device node, which finds its "pts" sibling) or /dev/pts/ptmx, comes from
  // the session's devpts as well.
  first->Type(
      "run:exec 3<>/dev/ptmx 4<>/dev/pts/ptmx; echo \"mine=$(ls /dev/pts | tr '\\n' ' ')\"\r");
  CHECK(first->WaitFor("mine=0 1 2 ptmx \r\n"));
  // Neither the other session of the pod nor another pod sees them.
  second->Type("run:echo \"theirs=$(ls /dev/pts | tr '\\n' ' ')\"\r");
  CHECK(second->WaitFor("theirs=0 ptmx \r\n"));
  ProcessResult listed = node.Attack(0, "ls /dev/pts | tr '\\n' ' '");
  INFO(listed.Describe() << " out=" << listed.out << " err=" << listed.err);
  CHECK(listed.out == "ptmx ");
  // Nor a session of the same pod as another uid (a capless uid 0), through
  // the sessions' /proc/<pid>/root and /proc/<pid>/fd (the kernel's ptrace
  // check: another uid's processes).
  ProcessResult procs = Run(node.InPod(
      *node.pod_v, 0,
      {"--no-tty", "sh", "-c",
       "for p in /proc/[0-9]*; do echo \"$p root=$(ls $p/root/dev/pts 2>&1 | tr '\\n' ' ') "
       "fd0=$(readlink $p/fd/0 2>&1)\"; done"}));
  INFO(procs.Describe() << " out=" << procs.out << " err=" << procs.err);
  CHECK(procs.exit_code == 0);
  CHECK(Has(procs.out, "root=ptmx "));  // its own, the pod's view
  CHECK(Has(procs.out, "Permission denied"));
  CHECK_FALSE(Has(procs.out, "root=0 "));
  CHECK_FALSE(Has(procs.out, "fd0=/dev/pts/"));
  for (Terminal* t : {first.get(), second.get()}) {
    const std::string line = "typed-" + RandomHex(8);
    t->Type(line + "\r");
    CHECK(t->WaitFor("got=" + line + "\r\n", milliseconds(5000)));
    CHECK(t->Finish() == 0);
  }
}

TEST_CASE("redteam: an operator's terminal is out of every pod's reach", "[redteam][tty]") {
  SC_REQUIRE_ROOT();
  TtyNode node;
  Terminal op(
      node.ScExec({"--instance", "ns/tty", "--workdir", "/", "--tty", "sh", "-c", kVictim}));
  REQUIRE(op.started());
  INFO(op.screen());
  REQUIRE(op.WaitFor("ready\r\n"));
  CHECK(Has(op.screen(), "tty=/dev/pts/0\r\n"));
  CHECK(Has(op.screen(), "owner=0:5 mode=620 "));
  CHECK(Has(op.screen(), "pts=0 ptmx \r\n"));
  AttackFromOtherPod(node, op, 0);
  // Nor does the node's view of the instance show it.
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(node.rootfs + "/dev/pts")) {
    names.push_back(entry.path().filename());
  }
  CHECK(names == std::vector<std::string>{"ptmx"});
  CHECK(op.Finish() == 0);
}

TEST_CASE("redteam: a terminal in a pod's rootfs that is no mount point", "[redteam][tty]") {
  SC_REQUIRE_ROOT();
  TtyNode node;
  SECTION("with a dev/pts directory: the session's devpts is mounted there") {
    Terminal t(node.InPod(*node.pod_v, kUser,
                          {"--rootfs", "/rootfs/inner", "--tty", "sh", "-c", kVictim}));
    REQUIRE(t.started());
    INFO(t.screen());
    REQUIRE(t.WaitFor("ready\r\n"));
    CHECK(Has(t.screen(), "tty=/dev/pts/0\r\n"));
    CHECK(Has(t.screen(), "owner=1000:5 mode=620 "));
    CHECK(Has(t.screen(), "pts=0 ptmx \r\n"));
    ProcessResult listed = node.Attack(0, "ls /dev/pts /inner/dev/pts | tr '\\n' ' '");
    INFO(listed.Describe() << " out=" << listed.out << " err=" << listed.err);
    CHECK(listed.out == "/dev/pts: ptmx  /inner/dev/pts: ");
    CHECK(t.Finish() == 0);
  }
  SECTION("without dev: the terminal works, it has no name") {
    Terminal t(node.InPod(*node.pod_v, 0,
                          {"--rootfs", "/rootfs/bare", "--tty", "sh", "-c",
                           "tty; echo rc=$?; read l; echo \"got=$l\""}));
    REQUIRE(t.started());
    INFO(t.screen());
    REQUIRE(t.WaitFor("rc=1\r\n"));
    t.Type("typed\r");
    CHECK(t.WaitFor("got=typed\r\n"));
  }
}

}  // namespace
}  // namespace sc::test
