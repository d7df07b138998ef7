// sc-exec: the static client of the mount-helper. See --help.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "common/exit_codes.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mounthelper.grpc.pb.h"
#include "wrapper/cli.h"
#include "wrapper/connection.h"

namespace {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

constexpr auto kCallTimeout = std::chrono::seconds(10);

int Refused(const char* what, const grpc::Status& status) {
  std::fprintf(stderr, "sc-exec: %s refused: %s: %s\n", what,
               status.error_code() == grpc::StatusCode::UNIMPLEMENTED ? "UNIMPLEMENTED" : "error",
               status.error_message().c_str());
  return sc::kExitRefused;
}

int Unreachable(const std::string& path, const std::string& reason) {
  std::fprintf(stderr, "sc-exec: cannot reach mount-helper at %s: %s\n", path.c_str(),
               reason.c_str());
  return sc::kExitUnreachable;
}

int CheckHealth(const std::string& path, grpc::Channel* channel) {
  auto stub = grpc::health::v1::Health::NewStub(
      std::shared_ptr<grpc::Channel>(channel, [](grpc::Channel*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      return Unreachable(path, status.error_message());
    }
    return Refused("health check", status);
  }
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    std::fprintf(stderr, "sc-exec: mount-helper at %s is not serving\n", path.c_str());
    return sc::kExitUnreachable;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  sc::Options options;
  if (std::string error = sc::ParseCommandLine(argc, argv, &options); !error.empty()) {
    std::fprintf(stderr, "sc-exec: %s\nTry 'sc-exec --help'.\n", error.c_str());
    return sc::kExitUsage;
  }
  if (options.mode == sc::Mode::kHelp) {
    std::fputs(sc::HelpText().c_str(), stdout);
    return 0;
  }
  if (options.mode == sc::Mode::kVersion) {
    std::puts("sc-exec " SC_VERSION);
    return 0;
  }

  sc::Connection connection = sc::ConnectToDaemon(options.socket_path);
  if (!connection.channel) return Unreachable(options.socket_path, connection.error);

  if (int rc = CheckHealth(options.socket_path, connection.channel.get()); rc != 0) return rc;
  if (options.mode == sc::Mode::kHealth) {
    std::puts("SERVING");
    return 0;
  }

  auto stub = v1::MountHelper::NewStub(connection.channel);
  if (options.mode == sc::Mode::kWhoAmI) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    v1::PeerIdentity identity;
    grpc::Status status = stub->WhoAmI(&context, v1::WhoAmIRequest(), &identity);
    if (!status.ok()) return Refused("WhoAmI", status);
    std::printf("kind=%s pid=%d uid=%u gid=%u pod_uid=%s container_id=%s qos=%s driver=%s\n",
                v1::PeerIdentity::Kind_Name(identity.kind()).c_str(), identity.pid(),
                identity.uid(), identity.gid(), identity.pod_uid().c_str(),
                identity.container_id().c_str(), identity.qos_class().c_str(),
                identity.cgroup_driver().c_str());
    return 0;
  }

  // Running a command needs the Exec RPC; until the daemon implements it, the
  // refusal is reported like any other.
  grpc::ClientContext context;
  auto stream = stub->Exec(&context);
  v1::ExecRequest start;
  for (const std::string& arg : options.argv) start.mutable_start()->add_argv(arg);
  stream->Write(start);
  stream->WritesDone();
  v1::ExecResponse response;
  while (stream->Read(&response)) {
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) return Refused("Exec", status);
  return sc::kExitStreamBroken;
}
