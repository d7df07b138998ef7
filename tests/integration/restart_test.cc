// A daemon killed and started again under a running consumer pod: the
// entrypoint's workload lives on, new execs work.
#include <signal.h>

#include <catch2/catch.hpp>

#include "tests/integration/harness.h"

namespace sc::test {

TEST_CASE("sc-exec --entrypoint keeps its workload through a daemon restart", "[exec][restart]") {
  SC_REQUIRE_ROOT();
  TempDir node;
  MakeBusyboxTree(node / "layers/busybox");
  std::vector<std::string> args = {"--instance_base=" + node / "instances",
                                   "--layer_root=" + node / "layers"};
  auto daemon = std::make_unique<DaemonProcess>(node / "mh.sock", args);
  REQUIRE(daemon->started());
  ProcessResult prepared = Run({TestClientBinary(), daemon->socket_path(), "PrepareRootfs",
                                "instance { namespace: \"ns\" name: \"web\" } layers { paths: \"" +
                                    node / "layers/busybox" + "\" }"});
  REQUIRE(prepared.exit_code == 0);

  PodOptions options;
  options.rootfs_host_path = node / "instances/ns/web/rootfs";
  SimulatedPod pod(options);
  REQUIRE(pod.started());
  std::vector<std::string> entrypoint = pod.ExecPrefix();
  for (const std::string& a : {ScExecBinary(), std::string("--socket"), daemon->socket_path(),
                               std::string("--entrypoint"), std::string("sh"), std::string("-c"),
                               std::string("echo $$ > /tmp/workload.pid; exec sleep 1000")}) {
    entrypoint.push_back(a);
  }
  BackgroundProcess consumer(entrypoint);
  auto workload_pid = [&] {
    return pod.Exec(
        {ScExecBinary(), "--socket", daemon->socket_path(), "cat", "/tmp/workload.pid"});
  };
  REQUIRE(PollUntil([&] { return workload_pid().exit_code == 0; }, milliseconds(20000)));
  std::string pid_before = workload_pid().out;

  daemon->Kill();
  REQUIRE(PollUntil(
      [&] { return consumer.Output().find("lost the mount-helper") != std::string::npos; },
      milliseconds(20000)));
  daemon = std::make_unique<DaemonProcess>(node / "mh.sock", args);
  REQUIRE(daemon->started());

  // The entrypoint is still there, and so is its workload.
  CHECK(kill(consumer.pid(), 0) == 0);
  ProcessResult after = workload_pid();
  INFO(after.Describe());
  CHECK(after.exit_code == 0);
  CHECK(after.out == pid_before);
  ProcessResult alive = pod.Exec({"sh", "-c", "kill -0 " + pid_before});
  CHECK(alive.exit_code == 0);

  // Signals still reach it: SIGTERM ends sleep, then sc-exec says what it knows.
  consumer.Signal(SIGTERM);
  ProcessResult done = consumer.Wait(milliseconds(20000));
  INFO(done.Describe() << "\n" << done.out);
  CHECK(done.exit_code == 124);
  CHECK(done.out.find("ended; its exit status went with the stream") != std::string::npos);

  Run({TestClientBinary(), daemon->socket_path(), "ReleaseRootfs",
       "instance { namespace: \"ns\" name: \"web\" } delete_data: true"});
}

}  // namespace sc::test
