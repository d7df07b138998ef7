#include "daemon/identity/audit.h"

#include <fcntl.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "daemon/identity/peer.h"

namespace sc {
namespace {

constexpr absl::string_view kDenialPayload = "type.stoppablecontainer/audit.denial";

// Length of a valid UTF-8 sequence starting at s[i], or 0 if invalid.
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
  if (c >= 0xf5 || len == 0 || i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  return len;
}

}  // namespace

absl::Status AsDenial(absl::Status status) {
  if (!status.ok()) status.SetPayload(kDenialPayload, absl::Cord());
  return status;
}

bool IsDenial(const absl::Status& status) { return status.GetPayload(kDenialPayload).has_value(); }

std::string JsonQuote(absl::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(value.size() + 2);
  out += '"';
  for (size_t i = 0; i < value.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(value[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\t':
        out += "\\t";
        continue;
      default:
        break;
    }
    if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (size_t len = Utf8SequenceLength(value, i); len > 0) {
      out.append(value.data() + i, len);
      i += len - 1;
    } else {
      out += "\\ufffd";  // invalid UTF-8 byte
    }
  }
  out += '"';
  return out;
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (path.empty()) {
      logger = std::make_shared<spdlog::logger>("audit",
                                                std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else {
      mode_t old = umask(077);
      // spdlog opens with fopen("ab"), without O_CLOEXEC: set it at once
      // (start-up is single-threaded, nothing forks in between), so that no
      // launched process inherits the audit log.
      spdlog::file_event_handlers handlers;
      handlers.after_open = [](const spdlog::filename_t&, std::FILE* file) {
        int fd = fileno(file);
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
          throw spdlog::spdlog_ex("cannot set close-on-exec on the audit log", errno);
        }
      };
      auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false, handlers);
      umask(old);
      logger = std::make_shared<spdlog::logger>("audit", sink);
    }
  } catch (const spdlog::spdlog_ex& e) {
    return absl::UnavailableError(absl::StrCat("cannot open audit log ", path, ": ", e.what()));
  }
  // One JSON object per line; the timestamp is the record's first field.
  logger->set_formatter(std::make_unique<spdlog::pattern_formatter>(
      "{\"ts\":\"%Y-%m-%dT%H:%M:%S.%fZ\",%v}", spdlog::pattern_time_type::utc));
  logger->set_level(spdlog::level::info);
  // Audit records must survive a crash right after a privileged action.
  logger->flush_on(spdlog::level::info);
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(logger)));
}

AuditLog::AuditLog(std::shared_ptr<spdlog::logger> logger) : logger_(std::move(logger)) {
  // spdlog swallows a failed write and calls this instead: count it, and say
  // so in the human log (spdlog's own handler prints to stderr, which may be
  // the very stream that failed).
  logger_->set_error_handler([this](const std::string& message) {
    write_failures_.fetch_add(1, std::memory_order_relaxed);
    uint64_t held_back = 0;
    if (write_failure_log_.Allow(&held_back)) {
      spdlog::error("audit log: a record was not written: {} ({} more not logged)", message,
                    held_back);
    }
  });
}
AuditLog::~AuditLog() = default;

std::string AuditLog::Format(const AuditRecord& r) {
  std::string out = absl::StrCat("\"audit\":true,\"method\":", JsonQuote(r.method));
  if (r.peer != nullptr) {
    absl::StrAppend(&out, ",\"peer_pid\":", r.peer->pid(), ",\"peer_uid\":", r.peer->uid(),
                    ",\"peer_gid\":", r.peer->gid(),
                    ",\"peer_kind\":", JsonQuote(PeerKindName(r.peer->kind())));
    if (r.peer->pod()) {
      absl::StrAppend(&out, ",\"pod_uid\":", JsonQuote(r.peer->pod()->pod_uid),
                      ",\"container_id\":", JsonQuote(r.peer->pod()->container_id));
    } else if (r.peer->is_operator()) {
      absl::StrAppend(&out, ",\"pod_uid\":\"operator\"");
    }
  } else {
    absl::StrAppend(&out, ",\"peer\":", JsonQuote(r.grpc_peer));
  }
  absl::StrAppend(&out, ",\"decision\":", JsonQuote(DecisionOf(r)),
                  ",\"code\":", JsonQuote(absl::StatusCodeToString(r.status.code())));
  if (!r.status.ok()) absl::StrAppend(&out, ",\"error\":", JsonQuote(r.status.message()));
  for (const auto& [key, value] : r.details) {
    absl::StrAppend(&out, ",", JsonQuote(key), ":", JsonQuote(value));
  }
  return out;
}

std::string DecisionOf(const AuditRecord& record) {
  if (IsDenial(record.status)) return "deny";
  return record.status.ok() ? "allow" : "error";
}

void AuditLog::Write(const AuditRecord& record) {
  logger_->info("{}", Format(record));
  if (observer_) observer_(record);
}

}  // namespace sc
