#include "wrapper/provide.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "common/exit_codes.h"
#include "common/status_names.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mounthelper.grpc.pb.h"
#include "wrapper/connection.h"

namespace sc {
namespace {

namespace v1 = ::stoppablecontainer::mounthelper::v1;
using Clock = std::chrono::steady_clock;

constexpr auto kReleaseTimeout = std::chrono::seconds(60);

const char* CodeName(grpc::StatusCode code) { return StatusCodeName(static_cast<int>(code)); }

std::string InstanceText(const ProviderOptions& o) {
  return o.instance_namespace + "/" + o.instance_name;
}

v1::InstanceRef Ref(const ProviderOptions& o) {
  v1::InstanceRef ref;
  ref.set_namespace_(o.instance_namespace);
  ref.set_name(o.instance_name);
  return ref;
}

bool Serving(grpc::Channel* channel) {
  auto stub = grpc::health::v1::Health::NewStub(
      std::shared_ptr<grpc::Channel>(channel, [](grpc::Channel*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckResponse response;
  return stub->Check(&context, {}, &response).ok() &&
         response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

// Waits for a stop signal for at most `timeout`; returns it, or 0.
int WaitForSignal(const sigset_t& signals, std::chrono::milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000),
              static_cast<long>(timeout.count() % 1000) * 1000000L};
  int sig = sigtimedwait(&signals, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

}  // namespace

int RunProvider(const ProviderOptions& options) {
  // Blocked before gRPC starts its threads, so that only sigtimedwait/sigwait
  // below receive them — also as PID 1, which ignores unhandled signals.
  sigset_t stop;
  sigemptyset(&stop);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop, sig);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  v1::PrepareRootfsRequest prepare;
  *prepare.mutable_instance() = Ref(options);
  prepare.mutable_provider()->set_wait_ms(static_cast<uint32_t>(options.marker_wait_seconds) *
                                          1000u);
  v1::Instance instance;
  // Set once a PrepareRootfs went out: from then on the instance may be
  // mounted although no answer came back, and a stop signal must release it.
  bool prepare_sent = false;
  // The daemon may start after us (a DaemonSet rolling out), or be restarted
  // while it prepares (its answer is then lost, the mount is not): wait for it,
  // bounded, and ask again. PrepareRootfs of a READY instance by its provider
  // answers "already mounted".
  auto deadline = Clock::now() + std::chrono::seconds(options.daemon_wait_seconds);
  auto next_progress = Clock::now();
  int early_signal = 0;
  while (true) {
    Connection connection = ConnectToDaemon(options.socket_path);
    grpc::Status status(grpc::StatusCode::UNAVAILABLE,
                        connection.error.empty() ? "not serving yet" : connection.error);
    if (connection.channel && Serving(connection.channel.get())) {
      grpc::ClientContext context;
      // The daemon bounds its wait for the marker container; this only guards
      // against a daemon that never answers.
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
      prepare_sent = true;
      status =
          v1::MountHelper::NewStub(connection.channel)->PrepareRootfs(&context, prepare, &instance);
      if (status.ok()) break;
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
        std::fprintf(stderr, "sc-exec: preparing %s refused: %s: %s\n",
                     InstanceText(options).c_str(), CodeName(status.error_code()),
                     status.error_message().c_str());
        return kExitRefused;
      }
      std::fprintf(stderr,
                   "sc-exec: mount-helper went away while preparing %s (%s); asking again\n",
                   InstanceText(options).c_str(), status.error_message().c_str());
      deadline = Clock::now() + std::chrono::seconds(options.daemon_wait_seconds);
    }
    if (Clock::now() >= deadline) {
      std::fprintf(stderr, "sc-exec: cannot reach mount-helper at %s: %s\n",
                   options.socket_path.c_str(), status.error_message().c_str());
      return prepare_sent ? kExitRefused : kExitUnreachable;
    }
    if (Clock::now() >= next_progress) {
      std::fprintf(stderr, "sc-exec: waiting for mount-helper at %s (%s)\n",
                   options.socket_path.c_str(), status.error_message().c_str());
      next_progress = Clock::now() + std::chrono::seconds(5);
    }
    early_signal = WaitForSignal(stop, std::chrono::milliseconds(500));
    if (early_signal != 0) break;
  }
  if (early_signal != 0 && !prepare_sent) return 0;  // nothing prepared, nothing to give back
  if (early_signal == 0) {
    std::fprintf(stderr, "sc-exec: instance %s ready at %s (%s)\n", InstanceText(options).c_str(),
                 instance.rootfs().c_str(), instance.created() ? "mounted" : "already mounted");
  }

  int sig = early_signal;
  while (sig == 0 && sigwait(&stop, &sig) != 0) {
  }
  std::fprintf(stderr, "sc-exec: signal %d: releasing %s\n", sig, InstanceText(options).c_str());

  // A fresh connection: the daemon may have been restarted (upgraded, or
  // killed) since Prepare, and a channel made from a connected fd does not
  // reconnect. Retried, bounded, while the daemon is away.
  v1::ReleaseRootfsRequest release;
  *release.mutable_instance() = Ref(options);
  v1::ReleaseRootfsResponse released;
  grpc::Status status;
  const auto release_deadline = Clock::now() + kReleaseTimeout;
  while (true) {
    Connection fresh = ConnectToDaemon(options.socket_path);
    if (fresh.channel) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + kReleaseTimeout);
      status = v1::MountHelper::NewStub(fresh.channel)->ReleaseRootfs(&context, release, &released);
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    } else {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, fresh.error);
    }
    if (Clock::now() >= release_deadline) break;
    std::fprintf(stderr, "sc-exec: mount-helper unavailable (%s); retrying the release\n",
                 status.error_message().c_str());
    WaitForSignal(stop, std::chrono::milliseconds(500));
  }
  if (!status.ok()) {
    std::fprintf(stderr, "sc-exec: releasing %s failed: %s: %s\n", InstanceText(options).c_str(),
                 CodeName(status.error_code()), status.error_message().c_str());
    return kExitRefused;
  }
  std::fprintf(stderr, "sc-exec: released %s (%u unmounted, %u lazily detached; data kept)\n",
               InstanceText(options).c_str(), released.unmounted(), released.lazily_detached());
  return 0;
}

int ProviderReady(const ProviderOptions& options) {
  Connection connection = ConnectToDaemon(options.socket_path);
  if (!connection.channel) {
    std::fprintf(stderr, "sc-exec: cannot reach mount-helper at %s: %s\n",
                 options.socket_path.c_str(), connection.error.c_str());
    return kExitUnreachable;
  }
  auto stub = v1::MountHelper::NewStub(connection.channel);
  v1::GetInstanceRequest request;
  *request.mutable_instance() = Ref(options);
  v1::Instance instance;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Status status = stub->GetInstance(&context, request, &instance);
  if (!status.ok()) {
    std::fprintf(stderr, "sc-exec: %s: %s: %s\n", InstanceText(options).c_str(),
                 CodeName(status.error_code()), status.error_message().c_str());
    return status.error_code() == grpc::StatusCode::UNAVAILABLE ? kExitUnreachable : kExitNotReady;
  }
  if (instance.state() != v1::Instance::READY) {
    std::fprintf(stderr, "sc-exec: instance %s is %s\n", InstanceText(options).c_str(),
                 v1::Instance::State_Name(instance.state()).c_str());
    return kExitNotReady;
  }
  return 0;
}

}  // namespace sc
