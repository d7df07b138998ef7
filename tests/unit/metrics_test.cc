#include "daemon/edge/metrics.h"

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/defaults.h"
#include "common/unique_fd.h"
#include "daemon/identity/audit.h"
#include "daemon/identity/peer.h"

namespace sc {
namespace {

bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::unique_ptr<Metrics> MakeMetrics() {
  MetricsOptions options;
  options.address = "127.0.0.1:0";
  options.instance_base = "/nonexistent/sc-metrics-test";
  absl::StatusOr<std::unique_ptr<Metrics>> metrics = Metrics::Create(options);
  REQUIRE(metrics.ok());
  return *std::move(metrics);
}

}  // namespace

TEST_CASE("per-pod series: the pods with the most sessions, the rest as other", "[metrics]") {
  std::map<std::string, int> pods = {{"a", 1}, {"b", 5}, {"c", 2}, {"d", 2}, {"e", 1}};
  using Series = std::vector<std::pair<std::string, int>>;
  CHECK(TopPods(pods, 2) == Series{{"b", 5}, {"c", 2}, {"other", 4}});
  CHECK(TopPods(pods, 3) == Series{{"b", 5}, {"c", 2}, {"d", 2}, {"other", 2}});
  CHECK(TopPods(pods, 5) == Series{{"b", 5}, {"c", 2}, {"d", 2}, {"a", 1}, {"e", 1}});
  CHECK(TopPods(pods, 0) == Series{{"other", 11}});
  CHECK(TopPods({}, 10).empty());
}

TEST_CASE("--metrics_address takes HOST:PORT and :PORT with numeric hosts", "[metrics]") {
  for (const char* good : {":9464", "127.0.0.1:9464", "0.0.0.0:0", "[::1]:9464"}) {
    MetricsOptions options;
    options.address = good;
    INFO(good);
    CHECK(Metrics::Create(options).ok());
  }
  for (const char* bad : {"9464", "localhost:9464", ":65536", ":port", "1.2.3:80", "[::1:80", ""}) {
    MetricsOptions options;
    options.address = bad;
    INFO(bad);
    CHECK(absl::IsInvalidArgument(Metrics::Create(options).status()));
  }
}

TEST_CASE("refusal reasons come from who was refused and the code, never from text", "[metrics]") {
  AuditRecord record;
  record.method = "Exec";
  record.status = AsDenial(absl::PermissionDeniedError("cannot identify the caller: pod 1234"));
  CHECK(std::string(RefusalReason(record)) == "unidentified");

  // This process, as the daemon would see it through a socket.
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  UniqueFd a(fds[0]), b(fds[1]);
  absl::StatusOr<std::shared_ptr<const Peer>> peer = Peer::FromSocket(a.get());
  REQUIRE(peer.ok());
  record.peer = peer->get();
  const bool unknown = (*peer)->kind() == PeerKind::kUnknown;
  record.status = absl::PermissionDeniedError("pod 1234 has not mounted it");
  CHECK(std::string(RefusalReason(record)) == (unknown ? "unknown_caller" : "not_permitted"));
  record.status = absl::ResourceExhaustedError("this pod runs 64 exec sessions");
  CHECK(std::string(RefusalReason(record)) == (unknown ? "daemon_short" : "limit"));
  record.status = absl::InvalidArgumentError("operators must name the instance");
  CHECK(std::string(RefusalReason(record)) == "invalid_request");
  record.status = absl::FailedPreconditionError("anything else");
  CHECK(std::string(RefusalReason(record)) == "other");
}

TEST_CASE("the exposition counts what the hooks report", "[metrics]") {
  std::unique_ptr<Metrics> metrics = MakeMetrics();
  metrics->SetSources({[] {
                         ExecSessionCounts c;
                         c.total = 4;
                         c.per_pod = {{"pod-a", 3}, {"pod-b", 1}};
                         return c;
                       },
                       [] { return uint64_t{2}; }});

  AuditRecord refused;
  refused.method = "PrepareRootfs";
  refused.status = AsDenial(absl::PermissionDeniedError("x"));  // no peer: unidentified
  metrics->OnAudit(refused);
  refused.method = "NoSuchMethod\"}";  // never a label of its own
  metrics->OnAudit(refused);
  AuditRecord allowed = refused;
  allowed.status = absl::PermissionDeniedError("x");  // not marked: an error
  metrics->OnAudit(allowed);                          // not a refusal
  // A refusal of another method.
  AuditRecord marked;
  marked.method = "ReleaseRootfs";
  marked.status = AsDenial(absl::PermissionDeniedError("x"));
  metrics->OnAudit(marked);

  metrics->OnCall(kServiceName, "PrepareRootfs", 0, std::chrono::milliseconds(20));
  metrics->OnCall(kServiceName, "PrepareRootfs", 7, std::chrono::milliseconds(1));
  metrics->OnCall(kServiceName, "ReleaseRootfs", 0, std::chrono::milliseconds(3));

  Metrics::SetActive(metrics.get());
  {
    ExecSessionMeter refused_session;  // nothing sent
  }
  {
    ExecSessionMeter streamed;
    v1::ExecResponse started;
    started.mutable_started()->set_pid(1);
    streamed.OnSent(started);
    streamed.OnOutput(false, 100);
    streamed.OnOutput(true, 10);
    streamed.OnStdin(7);
    v1::ExecResponse exit;
    exit.mutable_exit()->set_signal(9);
    streamed.OnSent(exit);
  }
  {
    ExecSessionMeter by_reference;
    v1::ExecResponse started;
    started.mutable_started()->set_by_reference(true);
    by_reference.OnSent(started);
  }
  {
    ExecSessionMeter dropped;
    v1::ExecResponse started;
    started.mutable_started()->set_pid(1);
    dropped.OnSent(started);
  }
  {
    ExecSessionMeter not_found;
    v1::ExecResponse exit;
    exit.mutable_exit()->set_exit_code(127);
    not_found.OnSent(exit);
  }
  Metrics::SetActive(nullptr);
  {
    ExecSessionMeter while_off;  // counts nowhere
  }

  std::string text = metrics->Exposition();
  INFO(text);
  CHECK(Has(text,
            "sc_mount_helper_refusals_total{method=\"PrepareRootfs\",reason=\"unidentified\"} 1"));
  CHECK(Has(text, "sc_mount_helper_refusals_total{method=\"other\",reason=\"unidentified\"} 1"));
  CHECK(Has(text,
            "sc_mount_helper_refusals_total{method=\"ReleaseRootfs\",reason=\"unidentified\"} 1"));
  CHECK(Has(text,
            "sc_mount_helper_grpc_calls_total{code=\"OK\",method=\"PrepareRootfs\",service="
            "\"stoppablecontainer.mounthelper.v1.MountHelper\"} 1"));
  CHECK(Has(text,
            "sc_mount_helper_grpc_calls_total{code=\"PERMISSION_DENIED\",method="
            "\"PrepareRootfs\",service=\"stoppablecontainer.mounthelper.v1.MountHelper\"} 1"));
  // Only successful calls are timed.
  CHECK(Has(text, "sc_mount_helper_prepare_duration_seconds_count 1"));
  CHECK(Has(text, "sc_mount_helper_prepare_duration_seconds_bucket{le=\"0.01\"} 0"));
  CHECK(Has(text, "sc_mount_helper_prepare_duration_seconds_bucket{le=\"0.025\"} 1"));
  CHECK(Has(text, "sc_mount_helper_release_duration_seconds_count 1"));
  CHECK(Has(text, "sc_mount_helper_exec_start_duration_seconds_count 3"));
  for (const char* cause : {"refused", "signalled", "handed_off", "dropped", "exited"}) {
    CHECK(Has(text,
              std::string("sc_mount_helper_exec_sessions_ended_total{cause=\"") + cause + "\"} 1"));
  }
  CHECK(Has(text, "sc_mount_helper_exec_stream_bytes_total{stream=\"stdout\"} 100"));
  CHECK(Has(text, "sc_mount_helper_exec_stream_bytes_total{stream=\"stderr\"} 10"));
  CHECK(Has(text, "sc_mount_helper_exec_stream_bytes_total{stream=\"stdin\"} 7"));
  CHECK(Has(text, "sc_mount_helper_exec_sessions 4"));
  CHECK(Has(text, "sc_mount_helper_exec_sessions_per_pod{pod_uid=\"pod-a\"} 3"));
  CHECK(Has(text, "sc_mount_helper_audit_write_failures_total 2"));
  // No instance base: every state is there, at 0.
  CHECK(Has(text, "sc_mount_helper_instances{state=\"ready\"} 0"));
  CHECK(Has(text, "sc_mount_helper_instances{state=\"released\"} 0"));
  CHECK(Has(text, "sc_mount_helper_build_info{grpc_version="));
  CHECK(Has(text, "sc_mount_helper_start_time_seconds "));
}

TEST_CASE("the endpoint binds a free port when asked for port 0, and its threads stop",
          "[metrics]") {
  std::unique_ptr<Metrics> metrics = MakeMetrics();
  CHECK(metrics->port() == -1);
  REQUIRE(metrics->Serve().ok());
  CHECK(metrics->port() > 0);
  metrics->Stop();
  CHECK(metrics->port() == -1);
  // A second endpoint on a port in use is refused with a message.
  std::unique_ptr<Metrics> first = MakeMetrics();
  REQUIRE(first->Serve().ok());
  MetricsOptions taken;
  taken.address = "127.0.0.1:" + std::to_string(first->port());
  absl::StatusOr<std::unique_ptr<Metrics>> second = Metrics::Create(taken);
  REQUIRE(second.ok());
  absl::Status refused = (*second)->Serve();
  INFO(refused.ToString());
  CHECK(absl::IsUnavailable(refused));
}

TEST_CASE("audit records that cannot be written are counted, and observed all the same",
          "[metrics][audit]") {
  // /dev/full takes the open and refuses every write with ENOSPC.
  absl::StatusOr<std::unique_ptr<AuditLog>> audit = AuditLog::Open("/dev/full");
  REQUIRE(audit.ok());
  int observed = 0;
  (*audit)->SetObserver([&observed](const AuditRecord&) { ++observed; });
  AuditRecord record;
  record.method = "WhoAmI";
  (*audit)->Write(record);
  (*audit)->Write(record);
  CHECK((*audit)->write_failures() == 2);
  CHECK(observed == 2);
}

}  // namespace sc
