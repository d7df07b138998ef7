// A daemon killed and started again under running sessions (issue 14, point
// 3). By reference (the default) the daemon is out of the data path once a
// session has started: its SIGKILL and a new daemon on the same socket are
// invisible to an entrypoint writing numbered lines, to 256 MiB piped through
// cat and to a terminal session, and new sessions work as soon as the new
// daemon serves. With --stream the old behaviour stays: an entrypoint keeps
// its workload, but its output and exit status went with the stream.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "tests/integration/harness.h"
#include "tests/integration/stress.h"

namespace sc::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kKeeperName[] = "sc-mount-helper: keeper";
constexpr size_t kPipedBytes = size_t{256} << 20;

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

long long MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

// The byte at every offset of the piped stream is a function of the offset,
// so that the reader checks each byte without keeping what was sent, and a
// lost, repeated or reordered block shows at its first byte.
uint64_t PatternWord(uint64_t index) {
  uint64_t z = index + 0x9e3779b97f4a7c15ull;  // splitmix64
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void FillPattern(uint64_t offset, char* out, size_t n) {
  size_t i = 0;
  auto byte_at = [](uint64_t at) {
    return static_cast<char>((PatternWord(at / 8) >> (8 * (at % 8))) & 0xff);
  };
  for (; i < n && (offset + i) % 8 != 0; ++i) out[i] = byte_at(offset + i);
  for (; i + 8 <= n; i += 8) {
    uint64_t w = PatternWord((offset + i) / 8);
    std::memcpy(out + i, &w, 8);
  }
  for (; i < n; ++i) out[i] = byte_at(offset + i);
}

// Waits (bounded) for `fd` to be ready for `events`; false at the deadline
// or when `stop` is set.
bool PollFd(int fd, short events, Clock::time_point deadline, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int rc = poll(&p, 1, static_cast<int>(std::min<long long>(left, 100)));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
  return false;
}

// Joins a thread when it goes out of scope, also when a REQUIRE throws; the
// thread's loops look at `stop` at least every 100 ms.
class Joiner {
 public:
  Joiner(std::atomic<bool>* stop, std::thread thread) : stop_(stop), thread_(std::move(thread)) {}
  ~Joiner() {
    stop_->store(true);
    if (thread_.joinable()) thread_.join();
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool>* stop_;
  std::thread thread_;
};

// A process on a pty of the test's (a person's terminal), killed and reaped
// on destruction.
class Terminal {
 public:
  explicit Terminal(const std::vector<std::string>& argv) {
    int master = -1, slave = -1;
    winsize size{24, 80, 0, 0};
    if (openpty(&master, &slave, nullptr, nullptr, &size) != 0) return;
    master_.reset(master);
    std::vector<std::string> env_strings = ChildEnv({"TERM=dumb"});
    std::vector<char*> args, envp;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const std::string& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      setsid();
      ioctl(slave, TIOCSCTTY, 0);
      dup2(slave, 0);
      dup2(slave, 1);
      dup2(slave, 2);
      if (slave > 2) close(slave);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execve(args[0], args.data(), envp.data());
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
  pid_t pid() const { return pid_; }
  void Type(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = write(master_.get(), s.data() + off, s.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  // Reads the screen until `needle` is on it, bounded.
  bool WaitFor(const std::string& needle, milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (screen_.find(needle) == std::string::npos) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || !Read(static_cast<int>(left))) {
        return screen_.find(needle) != std::string::npos;
      }
    }
    return true;
  }
  // The exit status (128+N for signal N), reading the screen meanwhile; -1
  // on timeout.
  int Wait(milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        while (Read(0)) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (!Read(20)) {
        // EOF or EIO on the master: only the exit is left to wait for.
        pollfd none{-1, 0, 0};
        poll(&none, 0, 20);
      }
    }
    return -1;
  }
  const std::string& screen() const { return screen_; }

 private:
  // One read of what the master has within `timeout_ms`; false when nothing
  // came (timeout, EOF, EIO).
  bool Read(int timeout_ms) {
    pollfd p{master_.get(), POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    ssize_t n = read(master_.get(), buf, sizeof(buf));
    if (n <= 0) return false;
    screen_.append(buf, static_cast<size_t>(n));
    return true;
  }

  UniqueFd master_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  std::string screen_;
};

// The session keepers in the pod's container cgroup (where each keeper of
// the pod's sessions lives).
std::set<pid_t> Keepers(const SimulatedPod& pod) {
  std::set<pid_t> keepers;
  for (pid_t pid : PodProcesses(pod)) {
    if (ReadFile("/proc/" + std::to_string(pid) + "/cmdline").rfind(kKeeperName, 0) == 0) {
      keepers.insert(pid);
    }
  }
  return keepers;
}

// Which of `pids` still have a /proc entry (running or zombie).
std::set<pid_t> StillThere(const std::set<pid_t>& pids) {
  std::set<pid_t> there;
  for (pid_t pid : pids) {
    if (access(("/proc/" + std::to_string(pid)).c_str(), F_OK) == 0) there.insert(pid);
  }
  return there;
}

size_t CountLines(const std::string& out) {
  size_t n = 0;
  for (char c : out) n += c == '\n';
  return n;
}

// The entrypoint's output: "line-0" ... "line-(M-1)", then "end-M". Counts
// what is missing, repeated or out of order against that.
struct LineCheck {
  long end = -1;      // M from "end-M"; -1 without one
  long lines = 0;     // "line-" lines seen
  long in_order = 0;  // of them, those equal to their expected number
  long other = 0;     // anything else
};

LineCheck CheckLines(const std::string& out) {
  LineCheck check;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("line-", 0) == 0 && check.end < 0) {
      if (line == "line-" + std::to_string(check.lines)) ++check.in_order;
      ++check.lines;
    } else if (line.rfind("end-", 0) == 0 && check.end < 0) {
      check.end = std::atol(line.c_str() + 4);
    } else {
      ++check.other;
    }
  }
  return check;
}

}  // namespace

TEST_CASE("restart: SIGKILL of the daemon is invisible to running by-reference sessions",
          "[exec][restart]") {
  SC_REQUIRE_ROOT();
  InstanceNode node;
  REQUIRE_OK(node.Prepare("web"));
  std::unique_ptr<SimulatedPod> pod = node.ConsumerPod("web");
  const std::set<pid_t> baseline = PodProcesses(*pod);
  // In every session's argv, so that whatever is left of one shows.
  const std::string marker = "sc-restart-" + RandomHex(12);
  const std::string stop_file = "/tmp/stop-" + marker;
  auto in_pod = [&](const std::vector<std::string>& args) {
    return Concat(pod->ExecPrefix(), node.ScExec(args));
  };

  // (a) An entrypoint writing a numbered line every 2 ms until told to stop
  // (a file in the rootfs; the bound of 100000 lines only caps a test gone
  // wrong), then exiting 7.
  PipedProcess lines(
      in_pod({"--entrypoint", "sh", "-c",
              "i=0; while [ $i -lt 100000 ] && [ ! -e " + stop_file +
                  " ]; do echo line-$i; i=$((i+1)); usleep 2000; done; echo end-$i; exit 7",
              marker}));
  // (b) 256 MiB through cat: the first half before the restart, the second
  // after it, checked byte by byte as it comes back.
  PipedProcess cat(in_pod({"sh", "-c", "cat; exit $?", marker}));
  // (c) A shell on a terminal.
  Terminal tty(in_pod({"--tty", "sh", "-i", "-s", marker}));
  REQUIRE(tty.started());

  const auto deadline = Clock::now() + std::chrono::seconds(240);
  std::atomic<bool> stop_io{false};
  std::atomic<bool> half_read{false};
  std::atomic<bool> restarted{false};
  std::atomic<size_t> bytes_written{0};
  std::atomic<size_t> bytes_read{0};
  std::atomic<long long> mismatch_at{-1};
  std::atomic<bool> writer_ok{false};
  std::atomic<bool> reader_eof{false};
  const int cat_in = cat.stdin_fd();
  const int cat_out = cat.stdout_fd();
  // The writer sends as fast as cat takes it; the reader stops at half the
  // bytes until the new daemon serves, so that at the kill cat is blocked
  // writing, with bytes in flight in both pipes.
  Joiner writer(&stop_io, std::thread([&] {
    std::vector<char> chunk(1 << 20);
    size_t off = 0;
    while (off < kPipedBytes) {
      size_t n = std::min(chunk.size(), kPipedBytes - off);
      FillPattern(off, chunk.data(), n);
      size_t done = 0;
      while (done < n) {
        if (!PollFd(cat_in, POLLOUT, deadline, stop_io)) return;
        ssize_t w = write(cat_in, chunk.data() + done, n - done);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (w <= 0) return;
        done += static_cast<size_t>(w);
        bytes_written.store(off + done);
      }
      off += n;
    }
    writer_ok.store(true);
  }));
  Joiner reader(&stop_io, std::thread([&] {
    std::vector<char> got(1 << 20), want(1 << 20);
    size_t off = 0;
    while (PollFd(cat_out, POLLIN, deadline, stop_io)) {
      ssize_t r = read(cat_out, got.data(),
                       restarted.load() ? got.size() : std::min(got.size(), kPipedBytes / 2 - off));
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) {
        reader_eof.store(true);
        return;
      }
      size_t n = static_cast<size_t>(r);
      if (mismatch_at.load() < 0) {
        FillPattern(off, want.data(), n);
        if (std::memcmp(got.data(), want.data(), n) != 0) {
          size_t i = 0;
          while (got[i] == want[i]) ++i;
          mismatch_at.store(static_cast<long long>(off + i));
        }
      }
      off += n;
      bytes_read.store(off);
      if (off == kPipedBytes / 2 && !restarted.load()) {
        half_read.store(true);
        while (!restarted.load()) {
          if (stop_io.load() || Clock::now() >= deadline) return;
          pollfd none{-1, 0, 0};
          poll(&none, 0, 10);
        }
      }
    }
  }));

  // All three run: lines flow, half the bytes are in cat, the shell answers.
  const bool lines_flow = lines.WaitForOutput("line-50\n", milliseconds(60000));
  INFO("entrypoint stderr: " << lines.err());
  REQUIRE(lines_flow);
  REQUIRE(PollUntil([&] { return half_read.load(); }, milliseconds(120000)));
  // cat is blocked: what the writer sent fills both pipes.
  REQUIRE(PollUntil([&] { return bytes_written.load() > kPipedBytes / 2 + 65536; },
                    milliseconds(30000)));
  tty.Type("echo before-$((6*7))\r");
  const bool tty_before = tty.WaitFor("before-42", milliseconds(30000));
  INFO("terminal: " << tty.screen());
  REQUIRE(tty_before);
  // One keeper per session, in the pod.
  std::set<pid_t> keepers;
  REQUIRE(PollUntil(
      [&] {
        keepers = Keepers(*pod);
        return keepers.size() == 3;
      },
      milliseconds(10000)));

  lines.DrainStdout();
  const size_t lines_at_kill = CountLines(lines.out());
  const size_t bytes_at_kill = bytes_read.load();
  const size_t in_flight_at_kill = bytes_written.load() - bytes_at_kill;
  const pid_t old_daemon = node.daemon().pid();
  node.Kill();
  REQUIRE(kill(old_daemon, 0) != 0);
  auto restart_began = Clock::now();
  node.Start();
  const long long restart_ms = MsSince(restart_began);

  // New sessions work at once: no retry.
  auto serving = Clock::now();
  ProcessResult first = pod->Exec(node.ScExec({"true"}));
  ProcessResult second = pod->Exec(node.ScExec({"echo", "x"}));
  const long long new_sessions_ms = MsSince(serving);
  INFO("true: " << first.Describe() << " " << first.err);
  INFO("echo: " << second.Describe() << " " << second.err);
  CHECK(first.exit_code == 0);
  CHECK(second.exit_code == 0);
  CHECK(second.out == "x\n");
  // The sessions did not notice: their keepers are the same.
  CHECK(StillThere(keepers) == keepers);
  restarted.store(true);

  // The terminal answers after the restart.
  tty.Type("echo after-$((7*8))\r");
  const bool tty_after = tty.WaitFor("after-56", milliseconds(30000));
  CHECK(tty_after);
  // Lines keep coming for a good while after the restart (1000 lines, at
  // least 2 s of the loop), then the entrypoint is told to stop.
  lines.DrainStdout();
  const size_t lines_at_serving = CountLines(lines.out());
  CHECK(lines.WaitForOutput("line-" + std::to_string(lines_at_serving + 1000) + "\n",
                            milliseconds(120000)));
  { std::ofstream(node.Rootfs("web") + stop_file) << "stop\n"; }

  // Each session ends with its own status.
  tty.Type("exit 5\r");
  const int tty_code = tty.Wait(milliseconds(30000));
  const int lines_code = lines.Wait(milliseconds(60000));
  // Both threads end by themselves (all sent, EOF) or at the deadline.
  writer.Join();
  cat.CloseStdin();
  reader.Join();
  CHECK(writer_ok.load());
  CHECK(reader_eof.load());
  const int cat_code = cat.Wait(milliseconds(30000));

  LineCheck check = CheckLines(lines.out());
  std::cout << "RESTART lines=" << check.lines << " in_order=" << check.in_order
            << " end=" << check.end << " other=" << check.other
            << " lines_at_kill=" << lines_at_kill
            << " lines_after_restart=" << (check.lines - static_cast<long>(lines_at_serving))
            << " bytes=" << bytes_read.load() << "/" << kPipedBytes
            << " bytes_at_kill=" << bytes_at_kill << " in_flight_at_kill=" << in_flight_at_kill
            << " mismatch_at=" << mismatch_at.load() << " tty_ok=" << (tty_before && tty_after)
            << " status=" << lines_code << "," << cat_code << "," << tty_code
            << " restart_ms=" << restart_ms << " new_sessions_ms=" << new_sessions_ms << "\n";
  INFO("entrypoint stderr: " << lines.err() << "\ncat stderr: " << cat.err()
                             << "\nterminal: " << tty.screen());
  CHECK(lines_code == 7);
  CHECK(cat_code == 0);
  CHECK(tty_code == 5);
  CHECK(check.end == check.lines);
  CHECK(check.in_order == check.lines);
  CHECK(check.other == 0);
  CHECK(check.lines > static_cast<long>(lines_at_serving) + 1000);
  CHECK(lines_at_kill > 50);
  CHECK(bytes_read.load() == kPipedBytes);
  CHECK(mismatch_at.load() == -1);
  CHECK(bytes_at_kill < kPipedBytes);

  // Nothing is left: no process of the sessions, no keeper, no zombie; the
  // pod holds what it held before.
  CHECK(PollUntil([&] { return ProcessesWith(marker).empty(); }, milliseconds(10000)));
  CHECK(PollUntil([&] { return StillThere(keepers).empty(); }, milliseconds(10000)));
  CHECK(PollUntil([&] { return PodProcesses(*pod) == baseline; }, milliseconds(10000)));
  INFO("pod now: " << DescribeProcesses(PodProcesses(*pod)));
  CHECK(Keepers(*pod).empty());
  CHECK(Zombies(PodProcesses(*pod)) == 0);
  CHECK(PodProcesses(*pod) == baseline);
  REQUIRE_OK(node.Release("web", true));
}

TEST_CASE("restart: sc-exec --stream --entrypoint keeps its workload, its status is lost",
          "[exec][restart]") {
  SC_REQUIRE_ROOT();
  InstanceNode node;
  REQUIRE_OK(node.Prepare("web"));
  std::unique_ptr<SimulatedPod> pod = node.ConsumerPod("web");
  // Streaming: the session's output and exit status go through the daemon.
  BackgroundProcess consumer(
      Concat(pod->ExecPrefix(), node.ScExec({"--stream", "--entrypoint", "sh", "-c",
                                             "echo $$ > /tmp/workload.pid; exec sleep 1000"})));
  auto workload_pid = [&] { return pod->Exec(node.ScExec({"cat", "/tmp/workload.pid"})); };
  REQUIRE(PollUntil([&] { return workload_pid().exit_code == 0; }, milliseconds(20000)));
  std::string pid_before = workload_pid().out;

  node.Kill();
  REQUIRE(PollUntil(
      [&] { return consumer.Output().find("lost the mount-helper") != std::string::npos; },
      milliseconds(20000)));
  node.Start();

  // The entrypoint is still there, and so is its workload.
  CHECK(kill(consumer.pid(), 0) == 0);
  ProcessResult after = workload_pid();
  INFO(after.Describe());
  CHECK(after.exit_code == 0);
  CHECK(after.out == pid_before);
  ProcessResult alive = pod->Exec({"sh", "-c", "kill -0 " + pid_before});
  CHECK(alive.exit_code == 0);

  // Signals still reach it: SIGTERM ends sleep, then sc-exec says what it knows.
  consumer.Signal(SIGTERM);
  ProcessResult done = consumer.Wait(milliseconds(20000));
  INFO(done.Describe() << "\n" << done.out);
  CHECK(done.exit_code == 124);
  CHECK(done.out.find("ended; its exit status went with the stream") != std::string::npos);
  std::cout << "RESTART stream entrypoint_status=" << done.exit_code << "\n";
  REQUIRE_OK(node.Release("web", true));
}

}  // namespace sc::test
