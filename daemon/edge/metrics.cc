#include "daemon/edge/metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/defaults.h"
#include "common/status_names.h"
#include "common/unique_fd.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/log_throttle.h"
#include "daemon/base/paths.h"
#include "daemon/identity/audit.h"
#include "daemon/identity/peer.h"
#include "daemon/rootfs/instances.h"
#include "daemon/rootfs/layer_record.h"
#include "daemon/rootfs/mountinfo.h"
#include "spdlog/spdlog.h"

#ifndef SC_VERSION
#define SC_VERSION "unknown"
#endif

namespace sc {
namespace {

using Clock = std::chrono::steady_clock;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

std::atomic<Metrics*> g_active{nullptr};

constexpr char kOther[] = "other";

// From a millisecond (an exec start) to the longest provider wait
// (--provider_wait_max, 5 min by default).
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  return kBuckets;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// "HOST:PORT" / ":PORT" / "[V6]:PORT" as civetweb's listening_ports wants it;
// only numeric addresses (civetweb resolves no names).
absl::StatusOr<std::string> ListeningPorts(const std::string& address) {
  size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_address must be HOST:PORT or :PORT, not \"", address, "\""));
  }
  std::string host = address.substr(0, colon);
  if (host.empty()) return absl::StrCat(port);
  unsigned char buf[16];
  bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']';
  bool ok = v6 ? inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) == 1
               : inet_pton(AF_INET, host.c_str(), buf) == 1;
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics_address: \"", host, "\" is not an IPv4 address or a bracketed IPv6 one"));
  }
  return absl::StrCat(host, ":", port);
}

ClientMetric GaugeSample(double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  return m;
}

MetricFamily Family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

struct CloseDir {
  void operator()(DIR* dir) const { closedir(dir); }
};
using Dir = std::unique_ptr<DIR, CloseDir>;

// The directory `name` in `dir_fd`, open for listing.
Dir OpenDir(int dir_fd, const char* name, bool follow) {
  UniqueFd fd(openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW)));
  DIR* dir = fd ? fdopendir(fd.get()) : nullptr;
  if (dir != nullptr) fd.release();  // the DIR owns it now
  return Dir(dir);
}

// Instances under `base` by state, as ListInstances derives them from the
// mount table; RELEASED are the instance directories with nothing mounted.
absl::StatusOr<std::map<std::string, int>> CountInstances(const std::string& base) {
  std::map<std::string, int> counts;
  for (InstanceStatus s :
       {InstanceStatus::kReady, InstanceStatus::kPartial, InstanceStatus::kReleased}) {
    counts[InstanceStatusName(s)] = 0;
  }
  Dir namespaces = OpenDir(AT_FDCWD, base.c_str(), true);
  if (!namespaces) {
    if (errno == ENOENT) return counts;  // nothing prepared yet
    return ErrnoStatus(errno, absl::StrCat("open instance base ", base));
  }
  const int base_fd = dirfd(namespaces.get());
  absl::StatusOr<std::string> real = FdTarget(base_fd);
  if (!real.ok()) return real.status();
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return table.status();
  std::set<std::pair<std::string, std::string>> mounted;
  for (auto& [ns, name] : InstancesInTable(*table, *real)) {
    InstanceLayout layout = LayoutFor(*real, ns, name);
    InstanceView view = DeriveInstance(*table, layout.rootfs);
    if (view.has_overlay && ShowsProcFdPaths(view.layers)) {
      ApplyLayerRecord(ReadLayerRecord(base_fd, layout), &view);
    }
    ++counts[InstanceStatusName(view.status)];
    mounted.emplace(std::move(ns), std::move(name));
  }
  while (dirent* ns = readdir(namespaces.get())) {
    if (ns->d_name[0] == '.') continue;
    Dir names = OpenDir(base_fd, ns->d_name, false);
    while (names) {
      dirent* name = readdir(names.get());
      if (name == nullptr) break;
      if (name->d_type != DT_DIR || !CheckInstanceNames(ns->d_name, name->d_name).ok()) continue;
      if (mounted.count({ns->d_name, name->d_name}) == 0) {
        ++counts[InstanceStatusName(InstanceStatus::kReleased)];
      }
    }
  }
  return counts;
}

// What a scrape reads from where it already is, at the time of the scrape.
class ScrapeTimeMetrics final : public prometheus::Collectable {
 public:
  ScrapeTimeMetrics(std::string instance_base, int pod_series)
      : instance_base_(std::move(instance_base)), pod_series_(pod_series) {}

  void SetSources(Metrics::Sources sources) {
    std::lock_guard<std::mutex> lock(mu_);
    sources_ = std::move(sources);
  }

  std::vector<MetricFamily> Collect() const override {
    Metrics::Sources sources;
    {
      std::lock_guard<std::mutex> lock(mu_);
      sources = sources_;
    }
    std::vector<MetricFamily> out;
    if (sources.exec_sessions) {
      ExecSessionCounts counts = sources.exec_sessions();
      MetricFamily total = Family("sc_mount_helper_exec_sessions",
                                  "Exec calls the daemon holds: streaming sessions and starts in "
                                  "flight (what --max_execs counts).",
                                  MetricType::Gauge);
      total.metric.push_back(GaugeSample(counts.total));
      out.push_back(std::move(total));
      MetricFamily per_pod =
          Family("sc_mount_helper_exec_sessions_per_pod",
                 "Exec calls the daemon holds per pod UID (what --max_execs_per_pod counts): the "
                 "--metrics_pod_series pods with the most, the rest summed as pod_uid=\"other\".",
                 MetricType::Gauge);
      for (const auto& [pod, n] : TopPods(counts.per_pod, pod_series_)) {
        per_pod.metric.push_back(GaugeSample(n, {{"pod_uid", pod}}));
      }
      out.push_back(std::move(per_pod));
    }
    if (sources.audit_write_failures) {
      MetricFamily failures =
          Family("sc_mount_helper_audit_write_failures_total",
                 "Audit records that could not be written or flushed.", MetricType::Counter);
      ClientMetric m;
      m.counter.value = static_cast<double>(sources.audit_write_failures());
      failures.metric.push_back(m);
      out.push_back(std::move(failures));
    }
    absl::StatusOr<std::map<std::string, int>> instances = CountInstances(instance_base_);
    if (instances.ok()) {
      MetricFamily by_state = Family(
          "sc_mount_helper_instances",
          "Instances on this node by state, derived from the mount table as ListInstances does.",
          MetricType::Gauge);
      for (const auto& [state, n] : *instances) {
        by_state.metric.push_back(GaugeSample(n, {{"state", state}}));
      }
      out.push_back(std::move(by_state));
    } else {
      uint64_t held_back = 0;
      if (instances_log_.Allow(&held_back)) {
        spdlog::warn("metrics: instances by state left out of a scrape: {} ({} more not logged)",
                     instances.status().ToString(), held_back);
      }
    }
    return out;
  }

 private:
  const std::string instance_base_;
  const int pod_series_;
  mutable std::mutex mu_;
  Metrics::Sources sources_;
  mutable LogThrottle instances_log_{absl::Minutes(1)};
};

struct MethodLabels {
  std::string service;
  std::string method;
};

class CallInterceptor final : public grpc::experimental::Interceptor {
 public:
  CallInterceptor(Metrics* metrics, const MethodLabels* labels)
      : metrics_(metrics), labels_(labels), start_(Clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->OnCall(labels_->service, labels_->method, methods->GetSendStatus().error_code(),
                       Clock::now() - start_);
    }
    methods->Proceed();
  }

 private:
  Metrics* const metrics_;
  const MethodLabels* const labels_;
  const Clock::time_point start_;
};

class CallInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  CallInterceptorFactory(Metrics* metrics, const std::vector<std::string>& services)
      : metrics_(metrics) {
    const google::protobuf::DescriptorPool* pool =
        google::protobuf::DescriptorPool::generated_pool();
    for (const std::string& name : services) {
      const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(name);
      if (service == nullptr) continue;
      for (int i = 0; i < service->method_count(); ++i) {
        const std::string& method = service->method(i)->name();
        known_[absl::StrCat("/", name, "/", method)] = {name, method};
      }
    }
  }

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // A client may name any method: only the registered ones are labels.
    auto it = info->method() == nullptr ? known_.end() : known_.find(info->method());
    return new CallInterceptor(metrics_, it == known_.end() ? &other_ : &it->second);
  }

 private:
  Metrics* const metrics_;
  std::map<std::string, MethodLabels, std::less<>> known_;
  const MethodLabels other_{kOther, kOther};
};

// The MountHelper methods, for the refusals' method label.
const std::set<std::string>& MountHelperMethods() {
  static const std::set<std::string> kMethods = [] {
    std::set<std::string> names;
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(kServiceName);
    for (int i = 0; service != nullptr && i < service->method_count(); ++i) {
      names.insert(service->method(i)->name());
    }
    return names;
  }();
  return kMethods;
}

constexpr std::array<std::pair<SessionEnd, const char*>, 5> kSessionEnds = {{
    {SessionEnd::kExited, "exited"},
    {SessionEnd::kSignalled, "signalled"},
    {SessionEnd::kDropped, "dropped"},
    {SessionEnd::kRefused, "refused"},
    {SessionEnd::kHandedOff, "handed_off"},
}};
constexpr std::array<const char*, 3> kStreams = {"stdin", "stdout", "stderr"};

}  // namespace

struct Metrics::Impl {
  explicit Impl(const MetricsOptions& options)
      : options(options),
        registry(std::make_shared<prometheus::Registry>()),
        scrape_time(std::make_shared<ScrapeTimeMetrics>(options.instance_base, options.pod_series)),
        calls(prometheus::BuildCounter()
                  .Name("sc_mount_helper_grpc_calls_total")
                  .Help("gRPC calls by service, method and the status code they ended with.")
                  .Register(*registry)),
        refusals(prometheus::BuildCounter()
                     .Name("sc_mount_helper_refusals_total")
                     .Help("Calls refused (audit decision \"deny\") by method and reason.")
                     .Register(*registry)),
        session_ends(prometheus::BuildCounter()
                         .Name("sc_mount_helper_exec_sessions_ended_total")
                         .Help("Exec calls ended, by how: exited, signalled, dropped (the "
                               "stream ended before the exit), refused (no process started), "
                               "handed_off (by reference: the pod's keeper has it).")
                         .Register(*registry)),
        stream_bytes(prometheus::BuildCounter()
                         .Name("sc_mount_helper_exec_stream_bytes_total")
                         .Help("Bytes of stdin, stdout and stderr streamed through the daemon "
                               "(by-reference sessions stream nothing through it).")
                         .Register(*registry)),
        prepare(prometheus::BuildHistogram()
                    .Name("sc_mount_helper_prepare_duration_seconds")
                    .Help("Time of successful PrepareRootfs calls, provider waits included.")
                    .Register(*registry)
                    .Add({}, LatencyBuckets())),
        release(prometheus::BuildHistogram()
                    .Name("sc_mount_helper_release_duration_seconds")
                    .Help("Time of successful ReleaseRootfs calls.")
                    .Register(*registry)
                    .Add({}, LatencyBuckets())),
        exec_start(prometheus::BuildHistogram()
                       .Name("sc_mount_helper_exec_start_duration_seconds")
                       .Help("Time from an Exec call's arrival to its ExecStarted message.")
                       .Register(*registry)
                       .Add({}, LatencyBuckets())) {
    for (const auto& [end, name] : kSessionEnds) {
      ends_by_cause[static_cast<size_t>(end)] = &session_ends.Add({{"cause", name}});
    }
    for (size_t i = 0; i < kStreams.size(); ++i) {
      bytes_by_stream[i] = &stream_bytes.Add({{"stream", kStreams[i]}});
    }
    prometheus::BuildGauge()
        .Name("sc_mount_helper_start_time_seconds")
        .Help("When the daemon started, in seconds since the epoch.")
        .Register(*registry)
        .Add({})
        .Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
    prometheus::BuildGauge()
        .Name("sc_mount_helper_build_info")
        .Help("1, labelled with the daemon's version and the gRPC library's.")
        .Register(*registry)
        .Add({{"version", SC_VERSION}, {"grpc_version", grpc::Version()}})
        .Set(1);
  }

  const MetricsOptions options;
  std::shared_ptr<prometheus::Registry> registry;
  std::shared_ptr<ScrapeTimeMetrics> scrape_time;
  prometheus::Family<prometheus::Counter>& calls;
  prometheus::Family<prometheus::Counter>& refusals;
  prometheus::Family<prometheus::Counter>& session_ends;
  prometheus::Family<prometheus::Counter>& stream_bytes;
  prometheus::Histogram& prepare;
  prometheus::Histogram& release;
  prometheus::Histogram& exec_start;
  std::array<prometheus::Counter*, kSessionEnds.size()> ends_by_cause{};
  std::array<prometheus::Counter*, kStreams.size()> bytes_by_stream{};
  std::unique_ptr<prometheus::Exposer> exposer;
};

std::vector<std::pair<std::string, int>> TopPods(const std::map<std::string, int>& per_pod,
                                                 int limit) {
  std::vector<std::pair<std::string, int>> pods(per_pod.begin(), per_pod.end());
  // Most sessions first; the map's order (by UID) breaks ties.
  std::stable_sort(pods.begin(), pods.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  size_t keep = static_cast<size_t>(std::max(0, limit));
  if (pods.size() <= keep) return pods;
  int rest = 0;
  for (size_t i = keep; i < pods.size(); ++i) rest += pods[i].second;
  pods.resize(keep);
  pods.emplace_back(kOther, rest);
  return pods;
}

const char* RefusalReason(const AuditRecord& record) {
  if (record.peer == nullptr) return "unidentified";
  const bool unknown = record.peer->kind() == PeerKind::kUnknown;
  switch (record.status.code()) {
    case absl::StatusCode::kResourceExhausted:
      // An unknown caller refused for want of the daemon's fds or memory.
      return unknown ? "daemon_short" : "limit";
    case absl::StatusCode::kPermissionDenied:
      return unknown ? "unknown_caller" : "not_permitted";
    case absl::StatusCode::kInvalidArgument:
      return "invalid_request";
    default:
      return kOther;
  }
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(const MetricsOptions& options) {
  if (absl::StatusOr<std::string> ports = ListeningPorts(options.address); !ports.ok()) {
    return ports.status();
  }
  if (options.pod_series < 0) {
    return absl::InvalidArgumentError("--metrics_pod_series must not be negative");
  }
  return std::unique_ptr<Metrics>(new Metrics(std::make_unique<Impl>(options)));
}

Metrics::Metrics(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Metrics::~Metrics() {
  Metrics* self = this;
  g_active.compare_exchange_strong(self, nullptr);
  Stop();
}

Metrics* Metrics::Active() { return g_active.load(std::memory_order_acquire); }
void Metrics::SetActive(Metrics* metrics) { g_active.store(metrics, std::memory_order_release); }

void Metrics::SetSources(Sources sources) { impl_->scrape_time->SetSources(std::move(sources)); }

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
Metrics::CallInterceptorFactory(const std::vector<std::string>& services) {
  return std::make_unique<sc::CallInterceptorFactory>(this, services);
}

absl::Status Metrics::Serve() {
  absl::StatusOr<std::string> ports = ListeningPorts(impl_->options.address);
  if (!ports.ok()) return ports.status();
  try {
    // Two threads: a scrape goes on while a slow client holds the other, for
    // at most request_timeout_ms.
    impl_->exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", *ports, "num_threads", "2", "request_timeout_ms", "10000"});
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", impl_->options.address, ": ", e.what()));
  }
  impl_->exposer->RegisterCollectable(impl_->registry);
  impl_->exposer->RegisterCollectable(impl_->scrape_time);
  return absl::OkStatus();
}

void Metrics::Stop() { impl_->exposer.reset(); }

int Metrics::port() const {
  if (!impl_->exposer) return -1;
  std::vector<int> ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? -1 : ports[0];
}

std::string Metrics::Exposition() const {
  std::vector<MetricFamily> families = impl_->registry->Collect();
  std::vector<MetricFamily> more = impl_->scrape_time->Collect();
  families.insert(families.end(), std::make_move_iterator(more.begin()),
                  std::make_move_iterator(more.end()));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

void Metrics::OnAudit(const AuditRecord& record) {
  if (DecisionOf(record) != "deny") return;
  const std::string& method =
      MountHelperMethods().count(record.method) ? record.method : std::string(kOther);
  impl_->refusals.Add({{"method", method}, {"reason", RefusalReason(record)}}).Increment();
}

void Metrics::OnCall(absl::string_view service, absl::string_view method, int code,
                     Clock::duration took) {
  impl_->calls
      .Add({{"service", std::string(service)},
            {"method", std::string(method)},
            {"code", StatusCodeName(code)}})
      .Increment();
  if (code != 0 || service != kServiceName) return;
  if (method == "PrepareRootfs") impl_->prepare.Observe(Seconds(took));
  if (method == "ReleaseRootfs") impl_->release.Observe(Seconds(took));
}

void Metrics::OnExecStarted(Clock::duration took) { impl_->exec_start.Observe(Seconds(took)); }

void Metrics::OnExecEnded(SessionEnd end) {
  impl_->ends_by_cause[static_cast<size_t>(end)]->Increment();
}

void Metrics::OnExecBytes(ExecStdio stream, size_t bytes) {
  impl_->bytes_by_stream[static_cast<size_t>(stream)]->Increment(static_cast<double>(bytes));
}

ExecSessionMeter::ExecSessionMeter() : metrics_(Metrics::Active()), start_(Clock::now()) {}

ExecSessionMeter::~ExecSessionMeter() {
  if (metrics_ == nullptr) return;
  SessionEnd end = exited_         ? (signalled_ ? SessionEnd::kSignalled : SessionEnd::kExited)
                   : !started_     ? SessionEnd::kRefused
                   : by_reference_ ? SessionEnd::kHandedOff
                                   : SessionEnd::kDropped;
  metrics_->OnExecEnded(end);
}

void ExecSessionMeter::OnSent(const v1::ExecResponse& response) {
  if (metrics_ == nullptr) return;
  if (response.has_started() && !started_) {
    started_ = true;
    by_reference_ = response.started().by_reference();
    metrics_->OnExecStarted(Clock::now() - start_);
  } else if (response.has_exit()) {
    exited_ = true;
    signalled_ = response.exit().status_case() == v1::ExecExit::kSignal;
  }
}

void ExecSessionMeter::OnOutput(bool is_stderr, size_t bytes) {
  if (metrics_ != nullptr) {
    metrics_->OnExecBytes(is_stderr ? ExecStdio::kStderr : ExecStdio::kStdout, bytes);
  }
}

void ExecSessionMeter::OnStdin(size_t bytes) {
  if (metrics_ != nullptr) metrics_->OnExecBytes(ExecStdio::kStdin, bytes);
}

}  // namespace sc
