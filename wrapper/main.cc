// sc-exec: the static client of the mount-helper. See --help.
#include <grpcpp/grpcpp.h>
#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "common/exit_codes.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mounthelper.grpc.pb.h"
#include "wrapper/cli.h"
#include "wrapper/connection.h"
#include "wrapper/provide.h"
#include "wrapper/signals.h"
#include "wrapper/stream.h"
#include "wrapper/trace.h"

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

// Whether the daemon answers, is SERVING and the rootfs is ready; `reason`
// says why not. Returns 0 when ready, else the exit code that fits.
int CheckReady(const sc::Options& options, std::string* reason) {
  sc::Connection connection = sc::ConnectToDaemon(options.socket_path);
  if (!connection.channel) {
    *reason = "cannot reach mount-helper at " + options.socket_path + ": " + connection.error;
    return sc::kExitUnreachable;
  }
  auto health = grpc::health::v1::Health::NewStub(connection.channel);
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status =
        health->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
    if (!status.ok()) {
      *reason = "mount-helper health check: " + status.error_message();
      return sc::kExitUnreachable;
    }
    if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      *reason = "mount-helper is not SERVING";
      return sc::kExitUnreachable;
    }
  }
  auto stub = v1::MountHelper::NewStub(connection.channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  v1::CheckRootfsRequest request;
  request.set_rootfs_path(options.rootfs_path);
  if (!options.instance_name.empty()) {
    request.mutable_instance()->set_namespace_(options.instance_ns);
    request.mutable_instance()->set_name(options.instance_name);
  }
  v1::CheckRootfsResponse response;
  grpc::Status status = stub->CheckRootfs(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    // A daemon without CheckRootfs (older than the rootfs issue) cannot say;
    // Exec itself then reports a missing rootfs.
    return 0;
  }
  if (!status.ok()) {
    *reason = "CheckRootfs: " + status.error_message();
    return sc::kExitRefused;
  }
  if (!response.ready()) {
    *reason = "rootfs not ready: " + response.reason();
    return sc::kExitNotReady;
  }
  return 0;
}

// --entrypoint: waits, bounded, for readiness, with a progress line.
int WaitUntilReady(const sc::Options& options) {
  auto started = std::chrono::steady_clock::now();
  auto deadline = started + std::chrono::seconds(options.wait_seconds);
  auto next_progress = started;
  std::string reason;
  while (true) {
    int rc = CheckReady(options, &reason);
    if (rc == 0) return 0;
    auto now = std::chrono::steady_clock::now();
    long waited = std::chrono::duration_cast<std::chrono::seconds>(now - started).count();
    if (now >= deadline) {
      std::fprintf(stderr, "sc-exec: not ready after %ld s: %s\n", waited, reason.c_str());
      return sc::kExitNotReady;
    }
    if (now >= next_progress) {
      std::fprintf(stderr, "sc-exec: waiting for the rootfs (%ld/%d s): %s\n", waited,
                   options.wait_seconds, reason.c_str());
      next_progress = now + std::chrono::seconds(5);
    }
    // Waiting, not sleeping: the signals are blocked (signals.h), so a stop
    // request during the wait is taken here, and as PID 1 orphans are reaped.
    sigset_t set;
    sigemptyset(&set);
    for (int sig : sc::kForwardedSignals) sigaddset(&set, sig);
    sigaddset(&set, SIGCHLD);
    timespec pause{0, 500 * 1000 * 1000};
    int sig = sigtimedwait(&set, nullptr, &pause);
    if (sig == SIGCHLD) {
      while (waitpid(-1, nullptr, WNOHANG) > 0) {
      }
    } else if (sig > 0 && sig != SIGUSR1 && sig != SIGUSR2) {
      std::fprintf(stderr, "sc-exec: stopped by signal %d while waiting\n", sig);
      return 128 + sig;
    }
  }
}

// Flushes stdio and exits without running destructors: detached threads
// (stdin, signals, gRPC's) may still be running.
[[noreturn]] void Exit(int code) {
  sc::TracePoint("exit");
  sc::TraceDump();
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);
}

}  // namespace

int main(int argc, char** argv) {
  // Output and stdin move in blocks of up to 1 MiB (stream.cc). With glibc's
  // default thresholds such blocks come from mmap or the heap is trimmed
  // after them, and every message paid page faults and the zeroing of fresh
  // pages (15% of sc-exec's CPU time while streaming). Keep them in the heap,
  // in one arena for all threads (a few threads, little contention) with at
  // most 2 MiB kept free at its top: 10 MB of RSS while streaming both ways
  // instead of 19.5 with an arena per thread and 4 MiB.
  mallopt(M_MMAP_THRESHOLD, 2 << 20);
  mallopt(M_TRIM_THRESHOLD, 2 << 20);
  mallopt(M_ARENA_MAX, 1);
  sc::TraceInit();
  sc::TracePoint("main");
  // First, before gRPC starts any thread: see signals.h.
  sc::BlockSignals();
  if (argc >= 2 && std::strcmp(argv[1], sc::kWaiterFlag) == 0) {
    Exit(sc::RunKeeperWaiter(argc, argv));
  }
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
  if (options.mode == sc::Mode::kProvide || options.mode == sc::Mode::kProvideReady) {
    sc::ProviderOptions provider;
    provider.socket_path = options.socket_path;
    provider.instance_namespace = options.provide_ns;
    provider.instance_name = options.provide_name;
    provider.daemon_wait_seconds = options.wait_seconds;
    Exit(options.mode == sc::Mode::kProvide ? sc::RunProvider(provider)
                                            : sc::ProviderReady(provider));
  }
  if (options.mode == sc::Mode::kReady) {
    std::string reason;
    int rc = CheckReady(options, &reason);
    if (rc != 0) std::fprintf(stderr, "sc-exec: %s\n", reason.c_str());
    Exit(rc);
  }
  if (options.mode == sc::Mode::kEntrypoint) {
    if (int rc = WaitUntilReady(options); rc != 0) Exit(rc);
  }

  sc::Connection connection = sc::ConnectToDaemon(options.socket_path);
  if (!connection.channel) Exit(Unreachable(options.socket_path, connection.error));
  sc::TracePoint("channel");

  if (options.mode == sc::Mode::kHealth) {
    int rc = CheckHealth(options.socket_path, connection.channel.get());
    if (rc == 0) std::puts("SERVING");
    Exit(rc);
  }

  auto stub = v1::MountHelper::NewStub(connection.channel);
  if (options.mode == sc::Mode::kWhoAmI) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    v1::PeerIdentity identity;
    grpc::Status status = stub->WhoAmI(&context, v1::WhoAmIRequest(), &identity);
    if (!status.ok()) Exit(Refused("WhoAmI", status));
    std::printf("kind=%s pid=%d uid=%u gid=%u pod_uid=%s container_id=%s qos=%s driver=%s\n",
                v1::PeerIdentity::Kind_Name(identity.kind()).c_str(), identity.pid(),
                identity.uid(), identity.gid(), identity.pod_uid().c_str(),
                identity.container_id().c_str(), identity.qos_class().c_str(),
                identity.cgroup_driver().c_str());
    Exit(0);
  }

  sc::SessionOptions session;
  session.argv = options.argv;
  session.env = sc::PassedEnvironment(environ);
  session.workdir = options.workdir;
  if (session.workdir.empty()) {
    char cwd[4096];
    session.workdir = getcwd(cwd, sizeof(cwd)) != nullptr && cwd[0] == '/' ? cwd : "/";
    // The container's WORKDIR may not exist in the instance's rootfs: the
    // daemon then starts the process in "/", as upstream's sc-exec did.
    session.workdir_inherited = true;
  }
  session.rootfs_path = options.rootfs_path;
  session.instance_ns = options.instance_ns;
  session.instance_name = options.instance_name;
  session.tty = options.tty >= 0 ? options.tty == 1 : isatty(0) == 1;
  session.outlive_daemon = options.mode == sc::Mode::kEntrypoint;
  // Operators' sessions live in the daemon's pod and end with it: they
  // stream. Everyone else hands over its stdio.
  if (options.stream || !options.instance_name.empty()) {
    Exit(sc::RunSession(connection.channel.get(), session));
  }
  Exit(sc::RunByReference(connection.channel.get(), session));
}
