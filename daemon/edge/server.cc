#include "daemon/edge/server.h"

#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>
#include <grpcpp/support/server_interceptor.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include <cerrno>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/defaults.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/log_throttle.h"
#include "daemon/edge/health.h"
#include "daemon/edge/listener.h"
#include "daemon/edge/metrics.h"
#include "daemon/edge/service.h"
#include "daemon/exec/seccomp_filter.h"
#include "daemon/identity/audit.h"
#include "daemon/identity/peer.h"
#include "daemon/rootfs/instance_mounts.h"
#include "daemon/rootfs/mounts.h"
#include "spdlog/spdlog.h"

namespace sc {
namespace {

// Connection fds live in [kFirstConnectionFd, kFirstConnectionFd + span): see
// PeerRegistry for why they must not be recycled quickly.
constexpr int kFirstConnectionFd = 1024;
constexpr int kWantedConnectionSpan = 65536;

// Raises RLIMIT_NOFILE so that the connection fd range fits, and returns the
// span that fits.
int PrepareFdLimit() {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  rlim_t want = kFirstConnectionFd + kWantedConnectionSpan + 1024;
  if (lim.rlim_max < want) {
    rlimit raised{want, want};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  getrlimit(RLIMIT_NOFILE, &lim);
  long span = static_cast<long>(lim.rlim_cur) - kFirstConnectionFd - 64;
  if (span > kWantedConnectionSpan) span = kWantedConnectionSpan;
  if (span < 256) {
    spdlog::warn("RLIMIT_NOFILE is only {}: connection fds will be recycled quickly", lim.rlim_cur);
    span = 256;
  }
  return static_cast<int>(span);
}

// Callers' cgroup paths in /proc/<pid>/cgroup are shown relative to the
// reader's cgroup namespace: inside a container's own namespace a pod's path
// reads "/../../kubepods-..." and names no pod. With hostPID, pid 1 is the
// node's init, so its cgroup namespace is the host's. setns(CLONE_NEWCGROUP)
// needs a single-threaded caller: this runs before any thread exists.
void JoinHostCgroupNamespace() {
  struct stat mine {
  }, host{};
  if (stat("/proc/self/ns/cgroup", &mine) != 0 || stat("/proc/1/ns/cgroup", &host) != 0) return;
  if (mine.st_ino == host.st_ino && mine.st_dev == host.st_dev) return;
  UniqueFd ns(open("/proc/1/ns/cgroup", O_RDONLY | O_CLOEXEC));
  if (!ns || setns(ns.get(), CLONE_NEWCGROUP) != 0) {
    spdlog::warn("{}; pods' cgroups may not be recognised",
                 ErrnoMessage(errno, "cannot join the host's cgroup namespace"));
    return;
  }
  spdlog::info("joined the host's cgroup namespace to read callers' cgroups");
}

// One line naming the way each kernel-dependent step goes on this node, so
// that an operator reading the log of an older kernel knows what it runs.
void LogKernelPaths() {
  utsname uts{};
  uname(&uts);
  std::string why_no_peer_identity;
  PeerPinning pinning = PeerPinningInUse(&why_no_peer_identity);
  spdlog::info("kernel {}: overlay {}, peer identity {}", uts.release,
               OverlayLayerPassingName(OverlayLayerPassingInUse()), PeerPinningName(pinning));
  if (pinning == PeerPinning::kNone) {
    spdlog::warn("every caller will be refused as unknown: no SO_PEERPIDFD (Linux 6.5) and {}",
                 why_no_peer_identity);
  }
}

// A connection the listener accepted: identified, counted against its pod's
// (or uid's) limit, and handed to gRPC; dropped, with a line in the log at
// most a second, when any of that fails.
void AdmitConnection(UniqueFd conn, PeerRegistry* peers, grpc::Server* server,
                     int max_connections_per_pod, LogThrottle* log) {
  absl::StatusOr<UniqueFd> renumbered = peers->Renumber(std::move(conn));
  if (!renumbered.ok()) {
    uint64_t held_back = 0;
    if (log->Allow(&held_back)) {
      spdlog::error("dropping a connection: {} ({} more not logged)",
                    renumbered.status().ToString(), held_back);
    }
    return;
  }
  absl::StatusOr<std::shared_ptr<const Peer>> peer = Peer::FromSocket(renumbered->get());
  if (!peer.ok()) {
    uint64_t held_back = 0;
    if (log->Allow(&held_back)) {
      spdlog::error("dropping a connection: {} ({} more not logged)", peer.status().ToString(),
                    held_back);
    }
    return;
  }
  // One pod (or uid) must not take the daemon's fds from everyone else.
  std::string key = PeerRegistry::LimitKey(**peer);
  if (peers->CountFor(key) >= static_cast<size_t>(max_connections_per_pod)) {
    uint64_t held_back = 0;
    if (log->Allow(&held_back)) {
      spdlog::warn(
          "closed a connection from {}: {} has {} open, its maximum "
          "(--max_connections_per_pod; {} more such closes not logged)",
          (*peer)->Describe(), key, max_connections_per_pod, held_back);
    }
    return;
  }
  spdlog::debug("connection fd {} from {}", renumbered->get(), (*peer)->Describe());
  peers->Add(renumbered->get(), *std::move(peer));
  // gRPC owns the fd from here on and closes it with the connection.
  grpc::AddInsecureChannelFromFd(server, renumbered->release());
}

// "READY\n" on --ready_fd, which is closed then.
void AnnounceReady(int ready_fd) {
  UniqueFd ready(ready_fd);
  static constexpr char kReady[] = "READY\n";
  if (write(ready.get(), kReady, sizeof(kReady) - 1) != sizeof(kReady) - 1) {
    spdlog::warn("{}", ErrnoMessage(errno, "write to --ready_fd"));
  }
}

// What the metrics count: refusals from the audit log, calls through an
// interceptor, sessions and audit failures read at scrape time.
void WireMetrics(Metrics* metrics, AuditLog* audit, MountHelperService* service,
                 grpc::ServerBuilder* builder) {
  audit->SetObserver([metrics](const AuditRecord& record) { metrics->OnAudit(record); });
  metrics->SetSources(
      {[service] { return service->ExecSessions(); }, [audit] { return audit->write_failures(); }});
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> counting;
  counting.push_back(metrics->CallInterceptorFactory(
      {kServiceName, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}));
  builder->experimental().SetInterceptorCreators(std::move(counting));
  Metrics::SetActive(metrics);
}

// Health NOT_SERVING, no new connections, calls given `grace` (those still
// running then are cancelled), the metrics endpoint stopped, the socket
// removed.
void ShutDown(HealthService* health, UnixListener* listener, grpc::Server* server, Metrics* metrics,
              absl::Duration grace) {
  auto started = std::chrono::steady_clock::now();
  health->Shutdown();
  listener->Stop();
  // Calls still running at the deadline are cancelled.
  server->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
  server->Wait();
  // Its scrapes read the service, which goes before it.
  if (metrics) metrics->Stop();
  listener->RemoveSocket();
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  spdlog::info("stopped in {} ms", took.count());
}

}  // namespace

int RunDaemon(const DaemonConfig& config) {
  JoinHostCgroupNamespace();
  // Every thread inherits this mask, so the signals reach only sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // A client that disconnects mid-write must not kill the daemon.
  signal(SIGPIPE, SIG_IGN);

  // Made first and so destroyed last: the audit log and the gRPC server
  // report to it until they are gone.
  std::unique_ptr<Metrics> metrics;
  if (!config.metrics.address.empty()) {
    absl::StatusOr<std::unique_ptr<Metrics>> created = Metrics::Create(config.metrics);
    if (!created.ok()) {
      spdlog::critical("{}", created.status().ToString());
      return 1;
    }
    metrics = *std::move(created);
  }
  absl::StatusOr<std::unique_ptr<AuditLog>> audit = AuditLog::Open(config.audit_log_path);
  if (!audit.ok()) {
    spdlog::critical("{}", audit.status().ToString());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Create(config.socket);
  if (!listener.ok()) {
    spdlog::critical("cannot listen: {}", listener.status().ToString());
    return 1;
  }

  ConvertOlderInstances(config.instance_base.empty() ? kDefaultInstanceBase : config.instance_base);

  PeerRegistry peers(kFirstConnectionFd, PrepareFdLimit());
  MountHelperService service(config, &peers, audit->get());
  HealthService health({kServiceName});

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  builder.RegisterService(&health);
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  builder.SetMaxSendMessageSize(config.max_message_bytes);
  if (metrics) WireMetrics(metrics.get(), audit->get(), &service, &builder);
  // No GRPC_ARG_MAX_CONNECTION_IDLE_MS: idle connections are bounded per
  // pod (--max_connections_per_pod) and silent ones by the handshake
  // timeout; a GOAWAY after idling would only make long-lived clients
  // (an entrypoint's sc-exec, a provider) reconnect.
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    spdlog::critical("cannot start the gRPC server");
    return 1;
  }

  grpc::Server* raw_server = server.get();
  LogThrottle connection_limit_log;
  (*listener)->Start(
      [&peers, raw_server, &config, &connection_limit_log](UniqueFd conn) {
        AdmitConnection(std::move(conn), &peers, raw_server, config.max_connections_per_pod,
                        &connection_limit_log);
      },
      [&peers] { peers.Sweep(); });

  LogKernelPaths();
  // Built once, here rather than on the first exec (13-23 ms).
  if (absl::StatusOr<const SeccompProgram*> filter = DefaultSeccompProgram(); !filter.ok()) {
    spdlog::critical("cannot build the workloads' seccomp filter: {}", filter.status().ToString());
    return 1;
  }
  if (metrics) {
    if (absl::Status serving = metrics->Serve(); !serving.ok()) {
      spdlog::critical("{}", serving.ToString());
      return 1;
    }
    spdlog::info("metrics on {} (port {}), at /metrics", config.metrics.address, metrics->port());
  }
  health.SetServing(true);
  spdlog::info("sc-mount-helper serving on {} (pid {})", config.socket.path, getpid());
  if (config.ready_fd >= 0) AnnounceReady(config.ready_fd);

  int signo = 0;
  while (sigwait(&stop_signals, &signo) != 0) {
  }
  spdlog::info("received signal {}: shutting down (grace {})", signo,
               absl::FormatDuration(config.shutdown_grace));
  ShutDown(&health, listener->get(), server.get(), metrics.get(), config.shutdown_grace);
  return 0;
}

}  // namespace sc
