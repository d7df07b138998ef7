// Metrics end to end (issue 17): a daemon with --metrics_address serves a few
// prepares, releases, execs from a simulated pod through the static sc-exec
// and refusals; a real HTTP scrape (curl) must show each in its series, and
// Prometheus' own promtool must accept the exposition.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/integration/harness.h"

namespace sc::test {
namespace {

constexpr char kCurl[] = "/usr/bin/curl";
constexpr char kPromtool[] = "/usr/bin/promtool";
constexpr char kMountHelper[] = "stoppablecontainer.mounthelper.v1.MountHelper";

// The value of one series (name and labels exactly as exposed, labels sorted
// by name), or -1 when the scrape lacks it.
double Sample(const std::string& scrape, const std::string& series) {
  std::istringstream lines(scrape);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::strtod(line.c_str() + series.size() + 1, nullptr);
    }
  }
  return -1;
}

std::string Calls(const std::string& method, const std::string& code) {
  return "sc_mount_helper_grpc_calls_total{code=\"" + code + "\",method=\"" + method +
         "\",service=\"" + kMountHelper + "\"}";
}

std::string Ended(const std::string& cause) {
  return "sc_mount_helper_exec_sessions_ended_total{cause=\"" + cause + "\"}";
}

}  // namespace

TEST_CASE("metrics: a scrape shows prepares, execs and refusals in their series", "[metrics]") {
  SC_REQUIRE_ROOT();
  if (access(kCurl, X_OK) != 0 || access(kPromtool, X_OK) != 0) {
    SkipOrFailUnderCi("curl and promtool are needed (scripts/install-deps.sh installs them)",
                      "no curl or promtool: apt-get install curl prometheus");
    return;
  }
  TempDir dir;
  std::string layer = dir / "layers/busybox";
  MakeBusyboxTree(layer);
  DaemonProcess daemon(dir / "mh.sock",
                       {"--instance_base=" + (dir / "instances"),
                        "--layer_root=" + (dir / "layers"), "--metrics_address=127.0.0.1:0"});
  REQUIRE(daemon.started());
  std::smatch port;
  std::string log = daemon.Log();
  INFO(log);
  REQUIRE(std::regex_search(log, port, std::regex(R"(metrics on 127\.0\.0\.1:0 \(port (\d+)\))")));
  const std::string url = "http://127.0.0.1:" + port[1].str() + "/metrics";
  auto scrape = [&] {
    ProcessResult r = Run({kCurl, "-sS", "--fail", "--max-time", "10", url});
    INFO(r.Describe() << r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
  };

  // Prepares: two instances as an operator, one of them again (answered as
  // prepared); one released.
  auto call = [&](const std::string& method, const std::string& request) {
    return Run({TestClientBinary(), daemon.socket_path(), method, request});
  };
  const std::string layers = " layers{paths:\"" + layer + "\"}";
  for (const char* name : {"a", "b", "a"}) {
    ProcessResult r = call(
        "PrepareRootfs", "instance{namespace:\"ns\" name:\"" + std::string(name) + "\"}" + layers);
    INFO(r.Describe() << r.err);
    REQUIRE(r.exit_code == 0);
  }
  REQUIRE(call("ReleaseRootfs", "instance{namespace:\"ns\" name:\"b\"}").exit_code == 0);

  // A consumer pod of ns/a.
  PodOptions options;
  options.rootfs_host_path = dir / "instances/ns/a/rootfs";
  options.binds = {dir.path()};
  SimulatedPod pod(options);
  REQUIRE(pod.started());
  auto sc_exec = [&](std::vector<std::string> args, const RunOptions& run = {}) {
    args.insert(args.begin(), {ScExecBinary(), "--socket", daemon.socket_path()});
    return pod.Exec(args, run);
  };

  // Execs: by reference (the default), streamed with stdio, killed by a signal.
  ProcessResult by_reference = sc_exec({"true"});
  INFO(by_reference.Describe() << by_reference.err);
  CHECK(by_reference.exit_code == 0);
  RunOptions hello;
  hello.stdin_data = "hello\n";
  ProcessResult streamed = sc_exec({"--stream", "sh", "-c", "cat; echo err >&2; exit 3"}, hello);
  INFO(streamed.Describe() << streamed.err);
  CHECK(streamed.exit_code == 3);
  CHECK(streamed.out == "hello\n");
  ProcessResult killed = sc_exec({"--stream", "sh", "-c", "kill -9 $$"});
  INFO(killed.Describe() << killed.err);
  CHECK(killed.exit_code == 128 + 9);

  // Refusals: the pod prepares an instance it has not mounted; an operator
  // execs without naming an instance.
  ProcessResult not_its_own = pod.Exec({TestClientBinary(), daemon.socket_path(), "PrepareRootfs",
                                        "instance{namespace:\"ns\" name:\"b\"} provider{}"});
  INFO(not_its_own.err);
  CHECK(Has(not_its_own.err, "PERMISSION_DENIED"));
  ProcessResult no_instance = call("Exec", "argv:\"true\"");
  INFO(no_instance.err);
  CHECK(Has(no_instance.err, "INVALID_ARGUMENT"));

  // A session held open shows per pod; killing its sc-exec drops it.
  std::vector<std::string> held = pod.ExecPrefix();
  for (const std::string& a :
       {ScExecBinary(), std::string("--socket"), daemon.socket_path(), std::string("--stream"),
        std::string("sh"), std::string("-c"), std::string("echo ready; exec sleep 60")}) {
    held.push_back(a);
  }
  BackgroundProcess holder(held);
  const std::string per_pod =
      "sc_mount_helper_exec_sessions_per_pod{pod_uid=\"" + pod.uid() + "\"}";
  std::string during;
  CHECK(PollUntil(
      [&] {
        during = scrape();
        return Has(holder.Output(), "ready") && Sample(during, per_pod) == 1;
      },
      milliseconds(15000)));
  INFO(during);
  CHECK(Sample(during, "sc_mount_helper_exec_sessions") == 1);
  // sc-exec is the pod helper's child.
  pid_t sc_exec_pid = 0;
  std::ifstream("/proc/" + std::to_string(holder.pid()) + "/task/" + std::to_string(holder.pid()) +
                "/children") >>
      sc_exec_pid;
  REQUIRE(sc_exec_pid > 0);
  REQUIRE(kill(sc_exec_pid, SIGKILL) == 0);
  std::string text;
  CHECK(PollUntil(
      [&] {
        text = scrape();
        return Sample(text, Ended("dropped")) == 1;
      },
      milliseconds(15000)));
  INFO(text);
  // The README's sample is this scrape: SC_METRICS_SCRAPE=FILE keeps it.
  if (const char* keep = std::getenv("SC_METRICS_SCRAPE")) std::ofstream(keep) << text;

  // Calls by method and code.
  CHECK(Sample(text, Calls("PrepareRootfs", "OK")) == 3);
  CHECK(Sample(text, Calls("PrepareRootfs", "PERMISSION_DENIED")) == 1);
  CHECK(Sample(text, Calls("ReleaseRootfs", "OK")) == 1);
  CHECK(Sample(text, Calls("Exec", "OK")) == 3);
  CHECK(Sample(text, Calls("Exec", "INVALID_ARGUMENT")) == 1);
  CHECK(Sample(text, Calls("Exec", "CANCELLED")) == 1);
  // Refusals by reason.
  CHECK(Sample(text,
               "sc_mount_helper_refusals_total{method=\"PrepareRootfs\",reason="
               "\"not_permitted\"}") == 1);
  CHECK(Sample(text,
               "sc_mount_helper_refusals_total{method=\"Exec\",reason="
               "\"invalid_request\"}") == 1);
  // Sessions: how each ended, what is held now, the bytes streamed.
  CHECK(Sample(text, Ended("handed_off")) == 1);
  CHECK(Sample(text, Ended("exited")) == 1);
  CHECK(Sample(text, Ended("signalled")) == 1);
  CHECK(Sample(text, Ended("refused")) == 1);
  CHECK(Sample(text, "sc_mount_helper_exec_sessions") == 0);
  CHECK(Sample(text, per_pod) == -1);  // gone with its last session
  CHECK(Sample(text, "sc_mount_helper_exec_stream_bytes_total{stream=\"stdin\"}") == 6);
  CHECK(Sample(text, "sc_mount_helper_exec_stream_bytes_total{stream=\"stdout\"}") ==
        6 + std::string("ready\n").size());
  CHECK(Sample(text, "sc_mount_helper_exec_stream_bytes_total{stream=\"stderr\"}") == 4);
  // Latencies: successful prepares and releases, every started exec.
  CHECK(Sample(text, "sc_mount_helper_prepare_duration_seconds_count") == 3);
  CHECK(Sample(text, "sc_mount_helper_release_duration_seconds_count") == 1);
  CHECK(Sample(text, "sc_mount_helper_exec_start_duration_seconds_count") == 4);
  // Instances by state, from the mount table.
  CHECK(Sample(text, "sc_mount_helper_instances{state=\"ready\"}") == 1);
  CHECK(Sample(text, "sc_mount_helper_instances{state=\"released\"}") == 1);
  CHECK(Sample(text, "sc_mount_helper_instances{state=\"partial\"}") == 0);
  CHECK(Sample(text, "sc_mount_helper_audit_write_failures_total") == 0);
  CHECK(Sample(text, "sc_mount_helper_start_time_seconds") > 0);

  // Prometheus' own parser and linter.
  RunOptions exposition;
  exposition.stdin_data = text;
  ProcessResult promtool = Run({kPromtool, "check", "metrics"}, exposition);
  INFO(promtool.Describe() << "\n" << promtool.out << promtool.err);
  CHECK(promtool.exit_code == 0);

  // Never on the gRPC socket: neither HTTP/1.1 nor HTTP/2 gets the exposition.
  for (const char* http : {"--http1.1", "--http2-prior-knowledge"}) {
    ProcessResult r = Run({kCurl, "-sS", "--max-time", "5", http, "--unix-socket",
                           daemon.socket_path(), "http://localhost/metrics"});
    INFO(http << ": " << r.Describe() << r.out << r.err);
    CHECK(!Has(r.out, "sc_mount_helper_"));
  }

  // The endpoint's threads end with the daemon (under ASan: no leak, no
  // use after free in the shutdown).
  CHECK(daemon.Terminate() == 0);
  CHECK(Run({kCurl, "-sS", "--max-time", "5", url}).exit_code != 0);
}

}  // namespace sc::test
