// The /proc a workload sees: its own pid namespace's, never the node's, on a
// real prepared instance.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/integration/harness.h"

namespace sc::test {
namespace {

namespace fs = std::filesystem;

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("a workload's /proc shows its pod's processes only", "[exec][proc]") {
  SC_REQUIRE_ROOT();
  TempDir node;
  MakeBusyboxTree(node / "layers/busybox");
  DaemonProcess daemon(node / "mh.sock", {"--instance_base=" + node / "instances",
                                          "--layer_root=" + node / "layers"});
  REQUIRE(daemon.started());
  ProcessResult prepared = Run({TestClientBinary(), daemon.socket_path(), "PrepareRootfs",
                                "instance { namespace: \"ns\" name: \"proc\" } layers { paths: \"" +
                                    node / "layers/busybox" + "\" }"});
  INFO(prepared.Describe());
  REQUIRE(prepared.exit_code == 0);
  std::string rootfs = node / "instances/ns/proc/rootfs";

  PodOptions options;
  options.rootfs_host_path = rootfs;
  SimulatedPod pod(options);
  REQUIRE(pod.started());
  auto in_pod = [&](const std::string& script) {
    return pod.Exec({ScExecBinary(), "--socket", daemon.socket_path(), "sh", "-c", script});
  };

  ProcessResult r = in_pod("tr '\\0' ' ' </proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'");
  INFO(r.Describe() << "\n" << r.out);
  REQUIRE(r.exit_code == 0);
  // pid 1 is the pod's own (the simulated pause process), not the node's init.
  CHECK(r.out.find("__sc_pod_reaper") != std::string::npos);
  int processes = std::stoi(r.out.substr(r.out.find('\n') + 1));
  CHECK(processes < 10);
  // The daemon is not among them.
  r = in_pod("grep -l 'sc-mount-helpe[r]' /proc/[0-9]*/cmdline || echo none");
  CHECK(r.out == "none\n");
  // Kernel knobs stay read-only for a uid-0 workload.
  r = in_pod("echo 1 > /proc/sys/kernel/sysrq");
  CHECK(r.exit_code != 0);

  // Mounted once per pod, not once per exec.
  std::string mountinfo = pod.Exec({"cat", "/proc/self/mountinfo"}).out;
  size_t before = Count(mountinfo, " /rootfs/proc ");
  REQUIRE(in_pod("true").exit_code == 0);
  mountinfo = pod.Exec({"cat", "/proc/self/mountinfo"}).out;
  CHECK(Count(mountinfo, " /rootfs/proc ") == before);

  // Nothing of it propagated back: the node's view of the rootfs's /proc is
  // still the one PrepareRootfs mounted, with no process in it.
  CHECK(fs::exists(rootfs + "/proc/meminfo"));
  CHECK_FALSE(fs::exists(rootfs + "/proc/self"));
  CHECK(ProcessEntries(rootfs + "/proc") == 0);

  ProcessResult released = Run({TestClientBinary(), daemon.socket_path(), "ReleaseRootfs",
                                "instance { namespace: \"ns\" name: \"proc\" } delete_data: true"});
  CHECK(released.exit_code == 0);
}

}  // namespace sc::test
