// sc-exec --provide: the provider container of a provider pod, against the
// real daemon, from a simulated pod whose ROOTFS_MARKER=true process has its
// root on an overlay of the image.
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/integration/harness.h"

namespace sc::test {
namespace {

namespace fs = std::filesystem;

bool Mounted(const std::string& path) { return !MountsUnder(path).empty(); }

// A provider pod: its pid 1 carries ROOTFS_MARKER=true and has its root on an
// overlay of `image`; `binds` are the host paths it mounts (the instance dir).
PodOptions ProviderPod(const std::string& image, std::vector<std::string> binds) {
  PodOptions options;
  options.init_env = {"ROOTFS_MARKER=true", "PATH=/bin"};
  options.root_lower = image;
  options.binds = std::move(binds);
  return options;
}

// `sc-exec --provide team-a/web` run inside the pod, for BackgroundProcess.
std::vector<std::string> ProvideCommand(const SimulatedPod& pod, const std::string& socket) {
  std::vector<std::string> argv = pod.ExecPrefix();
  for (const std::string& arg : {ScExecBinary(), std::string("--socket"), socket,
                                 std::string("--provide"), std::string("team-a/web")}) {
    argv.push_back(arg);
  }
  return argv;
}

}  // namespace

TEST_CASE("sc-exec --provide prepares on start and releases on SIGTERM", "[provide]") {
  SC_REQUIRE_ROOT();
  TempDir node;
  std::string image = node / "layers/image";
  MakeBusyboxTree(image);
  std::ofstream(image + "/image-marker") << "from-the-image\n";
  std::string instance = node / "instances/team-a/web";
  fs::create_directories(instance);  // the hostPath the provider pod mounts
  DaemonProcess daemon(node / "mh.sock", {"--instance_base=" + node / "instances",
                                          "--layer_root=" + node / "layers", "--provider_wait=5s"});
  REQUIRE(daemon.started());

  SimulatedPod pod(ProviderPod(image, {instance}));
  REQUIRE(pod.started());

  std::vector<std::string> provide = ProvideCommand(pod, daemon.socket_path());
  std::vector<std::string> ready = provide;
  ready.push_back("--ready");

  // Not prepared yet: the probe says so.
  ProcessResult probe = Run(ready);
  CHECK(probe.exit_code == 123);

  BackgroundProcess provider(provide);
  REQUIRE(PollUntil([&] { return Run(ready).exit_code == 0; }, milliseconds(20000)));
  INFO(provider.Output());
  std::string rootfs = instance + "/rootfs";
  CHECK(Mounted(rootfs));
  std::ifstream marker(rootfs + "/image-marker");
  std::string line;
  std::getline(marker, line);
  CHECK(line == "from-the-image");
  std::ofstream(rootfs + "/written-by-instance") << "kept\n";

  provider.Signal(SIGTERM);
  ProcessResult done = provider.Wait(milliseconds(30000));
  INFO(done.Describe() << "\n" << done.out);
  CHECK(done.exit_code == 0);
  CHECK(done.out.find("released team-a/web") != std::string::npos);
  CHECK_FALSE(Mounted(rootfs));
  // Release keeps the instance's data.
  CHECK(fs::exists(instance + "/upper/written-by-instance"));
  CHECK(Run(ready).exit_code == 123);
  CHECK(daemon.AuditLog().find("\"pod_uid\":\"" + pod.uid() + "\"") != std::string::npos);
}

TEST_CASE("sc-exec --provide releases through a daemon restarted since it prepared", "[provide]") {
  SC_REQUIRE_ROOT();
  TempDir node;
  std::string image = node / "layers/image";
  MakeBusyboxTree(image);
  std::string instance = node / "instances/team-a/web";
  fs::create_directories(instance);
  std::vector<std::string> args = {"--instance_base=" + node / "instances",
                                   "--layer_root=" + node / "layers", "--provider_wait=5s"};
  auto daemon = std::make_unique<DaemonProcess>(node / "mh.sock", args);
  REQUIRE(daemon->started());
  SimulatedPod pod(ProviderPod(image, {instance}));
  REQUIRE(pod.started());
  BackgroundProcess provider(ProvideCommand(pod, daemon->socket_path()));
  REQUIRE(PollUntil([&] { return Mounted(instance + "/rootfs"); }, milliseconds(20000)));

  // The daemon dies and comes back (an upgrade, a crash): the provider's old
  // connection is gone, the instance stays mounted and is re-adopted.
  daemon->Kill();
  daemon = std::make_unique<DaemonProcess>(node / "mh.sock", args);
  REQUIRE(daemon->started());
  provider.Signal(SIGTERM);
  ProcessResult done = provider.Wait(milliseconds(30000));
  INFO(done.Describe() << "\n" << done.out);
  CHECK(done.exit_code == 0);
  CHECK_FALSE(Mounted(instance + "/rootfs"));
}

TEST_CASE("sc-exec --provide for an instance the pod has not mounted is refused", "[provide]") {
  SC_REQUIRE_ROOT();
  TempDir node;
  std::string image = node / "layers/image";
  MakeBusyboxTree(image);
  fs::create_directories(node / "instances/team-a/web");
  DaemonProcess daemon(node / "mh.sock", {"--instance_base=" + node / "instances",
                                          "--layer_root=" + node / "layers", "--provider_wait=2s"});
  REQUIRE(daemon.started());
  SimulatedPod pod(ProviderPod(image, {}));  // no bind of the instance directory
  REQUIRE(pod.started());
  ProcessResult r =
      pod.Exec({ScExecBinary(), "--socket", daemon.socket_path(), "--provide", "team-a/web"});
  INFO(r.Describe());
  CHECK(r.exit_code == 122);
  CHECK(r.err.find("PERMISSION_DENIED") != std::string::npos);
  CHECK_FALSE(Mounted(node / "instances/team-a/web/rootfs"));
}

}  // namespace sc::test
