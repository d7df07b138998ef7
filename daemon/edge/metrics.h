#ifndef DAEMON_EDGE_METRICS_H_
#define DAEMON_EDGE_METRICS_H_

// The daemon's Prometheus metrics (issue 17), served over HTTP on
// --metrics_address, never on the gRPC socket. Off unless that flag is set:
// then no Metrics exists, no interceptor is installed and every hook is a
// null check.
//
// Where each figure is taken, at the edges so that no handler carries it:
//   calls by method and code,     a gRPC server interceptor: every RPC's final
//   prepare/release latency       status passes it exactly once
//   refusals by reason            the audit log's observer: every refusal is
//                                 an audit record with decision "deny"
//   exec session ends, bytes,     ExecSessionMeter, inside ExecStream (the
//   exec start latency            wire of one Exec call): what the client was
//                                 sent, as it was sent
//   sessions held, instances by   read at scrape time from where they already
//   state, audit write failures   are (the exec limits, the mount table, the
//                                 audit log's count)

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/base/config.h"
#include "mounthelper.pb.h"

namespace grpc::experimental {
class ServerInterceptorFactoryInterface;
}

namespace sc {

struct AuditRecord;
namespace v1 = ::stoppablecontainer::mounthelper::v1;

// The exec sessions the daemon holds (what --max_execs counts), by pod UID.
struct ExecSessionCounts {
  int total = 0;
  std::map<std::string, int> per_pod;
};

// How an Exec call ended, as its client saw it.
enum class SessionEnd {
  kExited,     // an exit message with a code (126/127 included)
  kSignalled,  // an exit message with a signal
  kDropped,    // started, but the stream ended without an exit message
  kRefused,    // ended before any process started (refused or failed)
  kHandedOff,  // started by reference: the keeper in the pod has it now
};

// The stdio of a streaming session, in the order of its label values.
enum class ExecStdio { kStdin, kStdout, kStderr };

// The per-pod series: the `limit` pods with the most sessions (ties by UID),
// the others' sessions summed under "other" (absent when none is left out).
std::vector<std::pair<std::string, int>> TopPods(const std::map<std::string, int>& per_pod,
                                                 int limit);

// The refusal reason label of a record with decision "deny": a small fixed
// set, from who was refused and the code, never from free text.
const char* RefusalReason(const AuditRecord& record);

class Metrics {
 public:
  // Read at scrape time, from the scraping thread; each must be thread-safe.
  struct Sources {
    std::function<ExecSessionCounts()> exec_sessions;
    std::function<uint64_t()> audit_write_failures;
  };

  // Checks the options; serves nothing yet.
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(const MetricsOptions& options);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The Metrics ExecSessionMeter reports to, null while metrics are off.
  // ExecStream is made deep in the Exec handler, where no pointer is at hand.
  static Metrics* Active();
  static void SetActive(Metrics* metrics);

  void SetSources(Sources sources);

  // The interceptor that counts calls of the services named (full names);
  // a method outside them is counted as service and method "other".
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> CallInterceptorFactory(
      const std::vector<std::string>& services);

  // Starts the HTTP endpoint (/metrics) on the options' address; then port()
  // is the port bound. Stop() ends it (and its threads); the destructor too.
  absl::Status Serve();
  void Stop();
  int port() const;

  // The text exposition a scrape gets.
  std::string Exposition() const;

  // Hooks.
  void OnAudit(const AuditRecord& record);
  void OnCall(absl::string_view service, absl::string_view method, int code,
              std::chrono::steady_clock::duration took);
  void OnExecStarted(std::chrono::steady_clock::duration took);
  void OnExecEnded(SessionEnd end);
  void OnExecBytes(ExecStdio stream, size_t bytes);

  struct Impl;

 private:
  explicit Metrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What one Exec call's client was sent and sent, for the metrics: made with
// the call's wire (ExecStream), it reports the session's end when destroyed.
// Does nothing while metrics are off.
class ExecSessionMeter {
 public:
  ExecSessionMeter();
  ~ExecSessionMeter();
  ExecSessionMeter(const ExecSessionMeter&) = delete;
  ExecSessionMeter& operator=(const ExecSessionMeter&) = delete;

  void OnSent(const v1::ExecResponse& response);
  void OnOutput(bool is_stderr, size_t bytes);
  void OnStdin(size_t bytes);

 private:
  Metrics* const metrics_;
  const std::chrono::steady_clock::time_point start_;
  bool started_ = false;
  bool by_reference_ = false;
  bool exited_ = false;
  bool signalled_ = false;
};

}  // namespace sc

#endif  // DAEMON_EDGE_METRICS_H_
