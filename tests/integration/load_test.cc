// Load against the real daemon: N concurrent exec sessions from simulated
// pods, each streaming data both ways through `cat` for a fixed time and
// checked byte for byte; the latency of `sc-exec true` meanwhile; then
// sequential `sc-exec true` calls. Afterwards the daemon holds no more fds,
// children, zombies or mounts than before.
//
// CI form (defaults): 32 sessions for 5 s, 300 sequential calls. Long form
// (scripts/soak.sh) through the environment:
//   SC_LOAD_MAX_SESSIONS  largest N; N steps through 16, 64, 128, 256, ...
//                         up to it (default 32: one step of 32)
//   SC_LOAD_SECONDS       how long each step streams (default 5)
//   SC_LOAD_SEQUENTIAL    sequential `sc-exec true` calls (default 300)
//   SC_LOAD_RATE_KIB      per session and direction, KiB/s (default 256)
// Figures go to stdout as "LOAD_STEP ..." lines and one "LOAD ..." line.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "tests/integration/stress.h"

namespace sc::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kSessionsPerPod = 32;
constexpr size_t kChunk = 64 * 1024;
// Unanswered bytes a session may have in flight: cat echoes, so what is
// written comes back; this bounds the memory in pipes and gRPC windows.
constexpr uint64_t kWindow = 256 * 1024;

// One streaming session: sc-exec cat in a pod, fed from a deterministic
// stream and checked against the same stream.
struct Session {
  Session(const std::vector<std::string>& argv, uint64_t seed)
      : process(argv), tx(seed), rx(seed) {}
  PipedProcess process;
  ByteStream tx, rx;
  std::string pending;
  size_t pending_off = 0;
  uint64_t sent = 0;
  uint64_t received = 0;
  bool input_closed = false;
  std::string error;  // first error, empty while it holds
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

// `count` (or, with count 0, as many as fit in `seconds`) sequential
// `sc-exec true` from inside the pod, timed by bash itself (EPOCHREALTIME:
// no fork for the clock). Returns the latencies in ms; failures counted.
std::vector<double> ExecTrueLoop(InstanceNode& node, SimulatedPod& pod, int count, int seconds,
                                 int* failures, std::string* failure_text) {
  std::string sc = ScExecBinary() + " --socket " + node.socket() + " true";
  std::string loop =
      count > 0 ? "for ((i=0; i<" + std::to_string(count) + "; i++)); do "
                : "end=$((SECONDS+" + std::to_string(seconds) + ")); while ((SECONDS<end)); do ";
  std::string script = loop + "s=$EPOCHREALTIME; " + sc +
                       " || echo \"fail $? at $i\"; e=$EPOCHREALTIME; echo \"t $s $e\"; done";
  RunOptions options;
  options.timeout = milliseconds(count > 0 ? 1000L * count + 60000 : 1000L * seconds + 120000);
  ProcessResult r = pod.Exec({"/bin/bash", "-c", script}, options);
  INFO(r.Describe());
  CHECK(r.exit_code == 0);
  std::vector<double> ms;
  std::istringstream in(r.out);
  std::string word;
  while (in >> word) {
    if (word == "t") {
      std::string s, e;
      in >> s >> e;
      ms.push_back((std::stod(e) - std::stod(s)) * 1000.0);
    } else if (word == "fail") {
      ++*failures;
      std::string rest;
      std::getline(in, rest);
      if (failure_text->size() < 2000) *failure_text += "fail" + rest + "\n";
    }
  }
  if (!r.err.empty() && failure_text->size() < 2000) *failure_text += r.err.substr(0, 1000);
  return ms;
}

struct StepResult {
  int sessions = 0;
  int errors = 0;
  double ramp_s = 0;  // until every session streamed
  std::string first_errors;
  double mib_each_way = 0;
  long rss_kib_max = 0;
  int fds_max = 0;
  int threads_max = 0;
  double p50_ms = 0, p99_ms = 0;
  size_t probes = 0;
  int probe_failures = 0;
};

int ThreadCount(pid_t pid) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return 0;
}

// Runs `n` sessions for `seconds`, with a probe pod timing `sc-exec true`.
StepResult RunStep(InstanceNode& node, std::vector<std::unique_ptr<SimulatedPod>>& pods,
                   SimulatedPod& probe_pod, int n, int seconds, uint64_t rate_bytes) {
  StepResult step;
  step.sessions = n;
  pid_t daemon = node.daemon().pid();
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < n; ++i) {
    const SimulatedPod& pod = *pods[static_cast<size_t>(i / kSessionsPerPod)];
    std::vector<std::string> argv = pod.ExecPrefix();
    for (const std::string& a : node.ScExec({"cat"})) argv.push_back(a);
    sessions.push_back(std::make_unique<Session>(argv, 1000003ull * n + i));
  }

  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      step.rss_kib_max = std::max(step.rss_kib_max, RssKiB(daemon));
      step.fds_max = std::max(step.fds_max, node.daemon().OpenFdCount());
      step.threads_max = std::max(step.threads_max, ThreadCount(daemon));
      PollUntil([&] { return !sampling; }, milliseconds(200));
    }
  });
  // The probe starts once every session streams (steady load, not the
  // start-up burst) and runs until the input stops.
  std::vector<double> latencies;
  std::string probe_text;
  std::thread probe;
  auto start_probe = [&](int probe_seconds) {
    probe = std::thread([&, probe_seconds] {
      latencies =
          ExecTrueLoop(node, probe_pod, 0, probe_seconds, &step.probe_failures, &probe_text);
    });
  };

  const auto start = Clock::now();
  const auto stop_input = start + std::chrono::seconds(seconds);
  const auto deadline = stop_input + std::chrono::seconds(120);
  std::vector<char> buf(kChunk), want(kChunk);
  std::vector<pollfd> fds;
  std::vector<std::pair<Session*, int>> owners;  // 0 stdin, 1 stdout, 2 stderr
  while (Clock::now() < deadline) {
    auto now = Clock::now();
    double elapsed = std::chrono::duration<double>(now - start).count();
    bool feeding = now < stop_input;
    if (!probe.joinable()) {
      bool all_streaming = true;
      for (auto& x : sessions) all_streaming = all_streaming && x->received > 0;
      if (all_streaming || !feeding) {
        step.ramp_s = elapsed;
        start_probe(std::max(1, static_cast<int>(seconds - elapsed)));
      }
    }
    fds.clear();
    owners.clear();
    bool running = false;
    for (auto& s : sessions) {
      Session& x = *s;
      if (!feeding && !x.input_closed) {
        x.process.CloseStdin();
        x.input_closed = true;
      }
      if (!x.input_closed && x.pending_off == x.pending.size()) {
        // Next chunk, within the rate and the window.
        uint64_t allowed = static_cast<uint64_t>(elapsed * static_cast<double>(rate_bytes));
        uint64_t room = kWindow - std::min(kWindow, x.sent - x.received);
        uint64_t take = std::min<uint64_t>({kChunk, allowed > x.sent ? allowed - x.sent : 0, room});
        if (take > 0 && x.error.empty()) {
          x.pending.resize(take);
          x.tx.Fill(x.pending.data(), take);
          x.pending_off = 0;
        }
      }
      if (!x.input_closed && x.pending_off < x.pending.size()) {
        fds.push_back({x.process.stdin_fd(), POLLOUT, 0});
        owners.emplace_back(&x, 0);
      }
      if (x.process.stdout_fd() >= 0) {
        fds.push_back({x.process.stdout_fd(), POLLIN, 0});
        owners.emplace_back(&x, 1);
      }
      if (x.process.stderr_fd() >= 0) {
        fds.push_back({x.process.stderr_fd(), POLLIN, 0});
        owners.emplace_back(&x, 2);
      }
      if (x.process.stdout_fd() >= 0 || x.process.stderr_fd() >= 0 || !x.process.TryReap()) {
        running = true;
      }
    }
    if (!running) break;
    if (fds.empty()) {
      PollUntil([] { return false; }, milliseconds(10));
      continue;
    }
    int ready = poll(fds.data(), fds.size(), 10);
    if (ready <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Session& x = *owners[i].first;
      if (owners[i].second == 0) {
        ssize_t w = write(x.process.stdin_fd(), x.pending.data() + x.pending_off,
                          x.pending.size() - x.pending_off);
        if (w > 0) {
          x.pending_off += static_cast<size_t>(w);
          x.sent += static_cast<uint64_t>(w);
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
          if (x.error.empty()) x.error = "stdin: " + std::string(strerror(errno));
          x.process.CloseStdin();
          x.input_closed = true;
        }
      } else if (owners[i].second == 1) {
        ssize_t r = read(x.process.stdout_fd(), buf.data(), buf.size());
        if (r > 0) {
          x.rx.Fill(want.data(), static_cast<size_t>(r));
          if (x.error.empty() && std::memcmp(buf.data(), want.data(), static_cast<size_t>(r))) {
            x.error = "output differs from the input at byte " + std::to_string(x.received);
          }
          x.received += static_cast<uint64_t>(r);
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          x.process.CloseStdout();
        }
      } else {
        x.process.DrainStderr();
      }
    }
  }
  for (auto& s : sessions) {
    Session& x = *s;
    int code = x.process.TryReap() ? x.process.status() : -1;
    if (x.error.empty() && code != 0) {
      x.error = code < 0 ? "did not end in time" : "exit " + std::to_string(code);
    }
    if (x.error.empty() && x.received != x.sent) {
      x.error = "sent " + std::to_string(x.sent) + " bytes, got back " + std::to_string(x.received);
    }
    if (x.error.empty() && x.sent == 0) x.error = "nothing streamed";
    if (!x.error.empty()) {
      ++step.errors;
      if (step.first_errors.size() < 2000) {
        step.first_errors += x.error + " (stderr: " + x.process.err().substr(0, 300) + ")\n";
      }
    }
    step.mib_each_way += static_cast<double>(x.sent) / (1 << 20);
  }
  if (probe.joinable()) probe.join();
  sampling = false;
  sampler.join();
  step.probes = latencies.size();
  step.p50_ms = Percentile(latencies, 50);
  step.p99_ms = Percentile(latencies, 99);
  if (step.probe_failures > 0) step.first_errors += "probe: " + probe_text;
  return step;
}

// What the node holds while idle: compared before and after the load.
struct Footprint {
  int fds = 0;
  int children = 0;
  size_t host_mounts = 0;  // below the node's directory (the table is shared)
  std::vector<size_t> pod_mounts;
  std::vector<std::set<pid_t>> pod_processes;
};

Footprint Measure(InstanceNode& node, const std::vector<SimulatedPod*>& pods) {
  Footprint f;
  f.fds = node.daemon().OpenFdCount();
  f.children = node.daemon().ChildCount();
  f.host_mounts = MountsUnder(node.dir.path()).size();
  for (SimulatedPod* pod : pods) {
    f.pod_mounts.push_back(MountCount(pod->init_pid(), node.dir.path()));
    f.pod_processes.push_back(PodProcesses(*pod));
  }
  return f;
}

}  // namespace

TEST_CASE("load: concurrent streaming sessions and sequential execs leave nothing behind",
          "[load]") {
  SC_REQUIRE_ROOT();
  const int max_sessions = static_cast<int>(EnvNumber("SC_LOAD_MAX_SESSIONS", 32));
  const int seconds = static_cast<int>(EnvNumber("SC_LOAD_SECONDS", 5));
  const int sequential = static_cast<int>(EnvNumber("SC_LOAD_SEQUENTIAL", 300));
  const uint64_t rate = static_cast<uint64_t>(EnvNumber("SC_LOAD_RATE_KIB", 256)) * 1024;
  std::vector<int> steps;
  if (max_sessions <= 32) {
    steps = {max_sessions};
  } else {
    for (int n : {16, 64, 128, 256, 512, 1024, 2048, 4096}) {
      if (n < max_sessions) steps.push_back(n);
    }
    steps.push_back(max_sessions);
  }
  REQUIRE(max_sessions > 0);

  // Room above the default session limits for the largest step and a probe.
  InstanceNode node({"--max_execs=" + std::to_string(std::max(1024, max_sessions + 64)),
                     "--max_execs_per_pod=" + std::to_string(kSessionsPerPod + 8)});
  REQUIRE(node.Prepare("load").ok());
  std::vector<std::unique_ptr<SimulatedPod>> pods;
  for (int i = 0; i < (max_sessions + kSessionsPerPod - 1) / kSessionsPerPod; ++i) {
    pods.push_back(node.ConsumerPod("load"));
  }
  std::unique_ptr<SimulatedPod> probe_pod = node.ConsumerPod("load");
  std::vector<SimulatedPod*> all_pods = {probe_pod.get()};
  for (auto& p : pods) all_pods.push_back(p.get());
  // One exec per pod first: what is made once per pod (its /proc in the
  // rootfs) and lazily in the daemon exists before the baseline.
  for (SimulatedPod* pod : all_pods) {
    ProcessResult warm = pod->Exec(node.ScExec({"true"}));
    INFO(warm.Describe());
    REQUIRE(warm.exit_code == 0);
  }
  REQUIRE(PollUntil([&] { return node.daemon().ChildCount() == 0; }, milliseconds(10000)));
  const Footprint before = Measure(node, all_pods);
  const long rss_before = RssKiB(node.daemon().pid());

  int held = 0;
  StepResult at_held;
  for (int n : steps) {
    StepResult step = RunStep(node, pods, *probe_pod, n, seconds, rate);
    std::cout << std::fixed << std::setprecision(2) << "LOAD_STEP sessions=" << n
              << " errors=" << step.errors << " ramp_s=" << step.ramp_s
              << " mib_each_way=" << step.mib_each_way << " rss_kib=" << step.rss_kib_max
              << " fds=" << step.fds_max << " threads=" << step.threads_max
              << " probes=" << step.probes << " probe_failures=" << step.probe_failures
              << " p50_ms=" << step.p50_ms << " p99_ms=" << step.p99_ms << std::endl;
    INFO(n << " sessions: " << step.errors << " failed:\n" << step.first_errors);
    CHECK(step.errors == 0);
    CHECK(step.probe_failures == 0);
    CHECK(step.probes > 0);
    if (step.errors > 0 || step.probe_failures > 0) break;
    held = n;
    at_held = step;
    // Between steps the daemon is back to idle.
    CHECK(PollUntil([&] { return node.daemon().ChildCount() == 0; }, milliseconds(30000)));
  }

  // Sequential calls, from one pod.
  int seq_failures = 0;
  std::string seq_text;
  std::vector<double> seq = ExecTrueLoop(node, *probe_pod, sequential, 0, &seq_failures, &seq_text);
  INFO(seq_text);
  CHECK(seq_failures == 0);
  CHECK(seq.size() == static_cast<size_t>(sequential));

  // Nothing left behind: fds, children (zombies included), mounts on the
  // node and in every pod, processes in every pod.
  CHECK(PollUntil([&] { return node.daemon().ChildCount() == 0; }, milliseconds(30000)));
  CHECK(PollUntil([&] { return node.daemon().OpenFdCount() <= before.fds; }, milliseconds(30000)));
  CHECK(PollUntil([&] { return Measure(node, all_pods).pod_processes == before.pod_processes; },
                  milliseconds(30000)));
  const Footprint after = Measure(node, all_pods);
  int zombies = 0;
  for (const auto& procs : after.pod_processes) zombies += Zombies(procs);
  CHECK(after.host_mounts == before.host_mounts);
  CHECK(after.pod_mounts == before.pod_mounts);
  CHECK(zombies == 0);
  int leaked_mounts = static_cast<int>(after.host_mounts) - static_cast<int>(before.host_mounts);
  for (size_t i = 0; i < after.pod_mounts.size(); ++i) {
    leaked_mounts += static_cast<int>(after.pod_mounts[i]) - static_cast<int>(before.pod_mounts[i]);
  }
  const long rss_after = RssKiB(node.daemon().pid());
  std::cout << std::fixed << std::setprecision(2) << "LOAD max_sessions=" << held
            << " seconds=" << seconds << " rate_kib=" << rate / 1024
            << " rss_kib_before=" << rss_before << " rss_kib_during=" << at_held.rss_kib_max
            << " rss_kib_after=" << rss_after << " fds_before=" << before.fds
            << " fds_during=" << at_held.fds_max << " fds_after=" << after.fds
            << " p50_ms=" << at_held.p50_ms << " p99_ms=" << at_held.p99_ms
            << " sequential=" << seq.size() << " seq_failures=" << seq_failures
            << " seq_p50_ms=" << Percentile(seq, 50) << " seq_p99_ms=" << Percentile(seq, 99)
            << " leaked_fds=" << std::max(0, after.fds - before.fds)
            << " children=" << after.children << " zombies=" << zombies
            << " leaked_mounts=" << leaked_mounts << std::endl;
  REQUIRE(node.Release("load").ok());
}

}  // namespace sc::test
