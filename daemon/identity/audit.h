#ifndef DAEMON_IDENTITY_AUDIT_H_
#define DAEMON_IDENTITY_AUDIT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/base/log_throttle.h"

namespace spdlog {
class logger;
}

namespace sc {

class Peer;

// What an audit record says of a call besides who made it and the outcome,
// e.g. {"instance", "ns/name"}, in the order it was learnt.
using AuditDetails = std::vector<std::pair<std::string, std::string>>;

// Marks `status` as a refusal of what the caller asked (the record's decision
// "deny"), as opposed to a failure of an allowed call ("error"). The mark is a
// payload: the caller gets the code and message only.
absl::Status AsDenial(absl::Status status);
bool IsDenial(const absl::Status& status);

// Escapes a string for a JSON string literal (quotes included). Request bytes
// are hostile: control characters and invalid UTF-8 are escaped, never copied.
std::string JsonQuote(absl::string_view value);

// One audit record: who called what, what was decided and why. Written as one
// JSON line, separate from the human log.
struct AuditRecord {
  std::string method;  // "PrepareRootfs", "Exec", ...
  const Peer* peer = nullptr;
  std::string grpc_peer;  // gRPC's connection name, when the peer is unknown
  // OK: allowed and done (decision "allow"); marked AsDenial: refused
  // ("deny"); otherwise allowed and failed ("error").
  absl::Status status;
  AuditDetails details;  // values are quoted on output
};

// The record's decision as logged, from its status: "allow", "deny", "error".
std::string DecisionOf(const AuditRecord& record);

class AuditLog {
 public:
  // `path` empty: stderr. Otherwise appended to the file (created 0600).
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);
  ~AuditLog();

  void Write(const AuditRecord& record);
  // The JSON line Write would log, without the timestamp (for tests).
  static std::string Format(const AuditRecord& record);

  // Called with every record Write is given (the metrics count refusals
  // here). Set before the server starts; never changed while it serves.
  void SetObserver(std::function<void(const AuditRecord&)> observer) {
    observer_ = std::move(observer);
  }
  // Records that could not be written or flushed (a full disk, a closed
  // stderr) since the start; each is also logged, at most once a second.
  uint64_t write_failures() const { return write_failures_.load(std::memory_order_relaxed); }

 private:
  explicit AuditLog(std::shared_ptr<spdlog::logger> logger);
  std::shared_ptr<spdlog::logger> logger_;
  std::function<void(const AuditRecord&)> observer_;
  std::atomic<uint64_t> write_failures_{0};
  LogThrottle write_failure_log_;
};

}  // namespace sc

#endif  // DAEMON_IDENTITY_AUDIT_H_
