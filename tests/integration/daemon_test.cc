// The daemon as a process: socket life cycle, health, reflection (through a
// client that is not ours), shutdown, and sc-exec's static build.
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/unique_fd.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/integration/harness.h"

namespace sc::test {
namespace {

namespace fs = std::filesystem;
using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

std::unique_ptr<Health::Stub> HealthStub(const std::string& socket) {
  return Health::NewStub(grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
}

std::string NodeChecks() { return std::string(SC_SOURCE_DIR) + "/tests/node/grpc_checks.mjs"; }

}  // namespace

TEST_CASE("health is SERVING over the real socket", "[daemon]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  DaemonProcess daemon(dir / "mh.sock");
  REQUIRE(daemon.started());

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  HealthCheckResponse response;
  grpc::Status status = HealthStub(daemon.socket_path())->Check(&context, {}, &response);
  REQUIRE(status.ok());
  CHECK(response.status() == HealthCheckResponse::SERVING);

  HealthCheckRequest unknown;
  unknown.set_service("no.such.Service");
  grpc::ClientContext context2;
  status = HealthStub(daemon.socket_path())->Check(&context2, unknown, &response);
  CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);

  ProcessResult health = RunScExec(daemon.socket_path(), {"--health"});
  CHECK(health.exit_code == 0);
  CHECK(health.out == "SERVING\n");
}

TEST_CASE("a client that is not ours sees reflection, health and UNIMPLEMENTED", "[daemon]") {
  SC_REQUIRE_ROOT();
  if (access("/usr/bin/node", X_OK) != 0 ||
      !fs::exists(std::string(SC_SOURCE_DIR) + "/tests/node/node_modules/@grpc/grpc-js")) {
    SkipOrFailUnderCi("node and tests/node/node_modules are needed",
                      "node or tests/node/node_modules missing (scripts/install-deps.sh installs "
                      "them)");
    return;
  }
  TempDir dir;
  DaemonProcess daemon(dir / "mh.sock");
  REQUIRE(daemon.started());
  ProcessResult node = Run({"node", NodeChecks(), daemon.socket_path()});
  INFO(node.out);
  INFO(node.err);
  REQUIRE(node.exit_code == 0);
  // The script prints one line per check; these are the ones the issue asks for.
  CHECK(node.out.find("ok reflection lists stoppablecontainer.mounthelper.v1.MountHelper") !=
        std::string::npos);
  CHECK(node.out.find("ok reflection lists grpc.health.v1.Health") != std::string::npos);
  CHECK(node.out.find("ok reflection lists grpc.reflection.v1alpha.ServerReflection") !=
        std::string::npos);
  CHECK(node.out.find("ok health SERVING") != std::string::npos);
  CHECK(node.out.find("ok unknown method UNIMPLEMENTED") != std::string::npos);
}

TEST_CASE("a second daemon on the same socket refuses to start", "[daemon]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  DaemonProcess first(dir / "mh.sock");
  REQUIRE(first.started());
  DaemonProcess second(dir / "mh.sock");
  CHECK_FALSE(second.started());
  CHECK(second.Log().find("another sc-mount-helper (pid " + std::to_string(first.pid()) +
                          ") is serving") != std::string::npos);
  // The first one is unharmed.
  CHECK(RunScExec(first.socket_path(), {"--health"}).exit_code == 0);
}

TEST_CASE("SIGTERM stops the daemon and removes its socket", "[daemon]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  DaemonProcess daemon(dir / "mh.sock", {"--shutdown_grace=30s"});
  REQUIRE(daemon.started());
  REQUIRE(fs::exists(daemon.socket_path()));

  // A Watch stream in flight must not hold shutdown for the whole grace.
  // What remains is gRPC's graceful GOAWAY: it waits for the client to
  // answer a ping, and a C++ client whose stream has ended reads its socket
  // only every 5 s (its backup poller). Hence the bound of 10 s, not 30.
  auto stub = HealthStub(daemon.socket_path());
  grpc::ClientContext watch_context;
  auto watch = stub->Watch(&watch_context, HealthCheckRequest());
  HealthCheckResponse update;
  REQUIRE(watch->Read(&update));
  CHECK(update.status() == HealthCheckResponse::SERVING);

  // The watcher reads until the stream ends, as a real one does.
  bool saw_not_serving = false;
  std::thread reader([&] {
    HealthCheckResponse next;
    while (watch->Read(&next)) {
      saw_not_serving = saw_not_serving || next.status() == HealthCheckResponse::NOT_SERVING;
    }
  });
  auto started = std::chrono::steady_clock::now();
  int exit_code = daemon.Terminate();
  auto took = std::chrono::steady_clock::now() - started;
  reader.join();  // the stream ends with the daemon at the latest
  INFO("daemon log:\n" << daemon.Log());
  CHECK(exit_code == 0);
  CHECK(took < std::chrono::seconds(10));
  CHECK_FALSE(fs::exists(daemon.socket_path()));
  // The watcher was told, then the stream ended.
  CHECK(saw_not_serving);
}

TEST_CASE("a stale socket left by a crash is replaced; other files are not", "[daemon]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  std::string path = dir / "mh.sock";
  {
    // What a SIGKILLed daemon leaves: a bound socket nobody listens on.
    DaemonProcess crashed(path);
    REQUIRE(crashed.started());
    crashed.Kill();
  }
  REQUIRE(fs::is_socket(path));
  {
    DaemonProcess daemon(path);
    REQUIRE(daemon.started());
    CHECK(daemon.Log().find("removed stale socket") != std::string::npos);
    CHECK(RunScExec(path, {"--health"}).exit_code == 0);
  }
  std::string regular = dir / "not-a-socket";
  std::ofstream(regular) << "precious";
  DaemonProcess refused(regular);
  CHECK_FALSE(refused.started());
  CHECK(refused.Log().find("is not a socket") != std::string::npos);
  std::ifstream in(regular);
  std::string kept;
  in >> kept;
  CHECK(kept == "precious");
}

TEST_CASE("socket mode and group come from flags", "[daemon]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  {
    DaemonProcess daemon(dir / "default.sock");
    REQUIRE(daemon.started());
    struct stat st {};
    REQUIRE(stat(daemon.socket_path().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0660);
    CHECK(st.st_uid == 0);
    CHECK(st.st_gid == 0);
  }
  DaemonProcess daemon(dir / "custom.sock", {"--socket_mode=0600", "--socket_group=65534"});
  REQUIRE(daemon.started());
  struct stat st {};
  REQUIRE(stat(daemon.socket_path().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(st.st_gid == 65534);
}

TEST_CASE("the socket directory is created when missing", "[daemon]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  DaemonProcess daemon(dir / "run/stoppablecontainer/mh.sock");
  REQUIRE(daemon.started());
  CHECK(fs::is_socket(daemon.socket_path()));
}

TEST_CASE("sc-exec says clearly when the daemon is not there", "[sc-exec]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  ProcessResult r = RunScExec(dir / "absent.sock", {"--health"});
  CHECK(r.exit_code == 121);
  CHECK(r.err.find("sc-exec: cannot reach mount-helper at " + (dir / "absent.sock") +
                   ": No such file or directory") != std::string::npos);

  ProcessResult usage = Run({ScExecBinary()});
  CHECK(usage.exit_code == 120);
  ProcessResult help = Run({ScExecBinary(), "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("121") != std::string::npos);
}

TEST_CASE("sc-exec runs from an otherwise empty root (a scratch image)", "[sc-exec]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  fs::copy_file(ScExecBinary(), dir / "sc-exec");
  // Nothing but the binary: no libc, no loader, no /etc.
  ProcessResult help = Run({"chroot", dir.path(), "/sc-exec", "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("Usage: sc-exec") != std::string::npos);
  ProcessResult unreachable = Run({"chroot", dir.path(), "/sc-exec", "--health"});
  CHECK(unreachable.exit_code == 121);

  // And it reaches a real daemon from there, through a socket bound in.
  TempDir run;
  DaemonProcess daemon(run / "mh.sock");
  REQUIRE(daemon.started());
  fs::create_directory(dir / "run");
  REQUIRE(Run({"mount", "--bind", run.path(), dir / "run"}).exit_code == 0);
  ProcessResult health =
      Run({"chroot", dir.path(), "/sc-exec", "--socket", "/run/mh.sock", "--health"});
  CHECK(health.exit_code == 0);
  UnmountUnder(dir.path());
}

TEST_CASE("every call is audited as one JSON line", "[daemon][audit]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  DaemonProcess daemon(dir / "mh.sock");
  REQUIRE(daemon.started());
  REQUIRE(RunScExec(daemon.socket_path(), {"--whoami"}).exit_code == 0);
  std::string audit = daemon.AuditLog();
  CHECK(audit.find("\"method\":\"WhoAmI\"") != std::string::npos);
  CHECK(audit.find("\"peer_kind\":\"operator\"") != std::string::npos);
  CHECK(audit.find("\"decision\":\"allow\"") != std::string::npos);
  // The human log does not carry audit records.
  CHECK(daemon.Log().find("\"audit\":true") == std::string::npos);
  for (size_t start = 0, end; (end = audit.find('\n', start)) != std::string::npos;
       start = end + 1) {
    std::string line = audit.substr(start, end - start);
    CHECK(line.front() == '{');
    CHECK(line.back() == '}');
  }
}

}  // namespace sc::test
