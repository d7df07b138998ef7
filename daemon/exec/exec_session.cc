#include "daemon/exec/exec_session.h"

#include <signal.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace sc {
namespace {

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

absl::Status CheckPath(const std::string& path, const char* what) {
  if (path.empty()) return absl::OkStatus();
  if (path.size() > kMaxPathBytes || HasNul(path)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is too long or contains a NUL byte"));
  }
  if (path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be absolute: ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateExecStart(const v1::ExecStart& start) {
  if (start.argv_size() == 0 || start.argv(0).empty()) {
    return absl::InvalidArgumentError("argv is empty: give the command to run");
  }
  if (static_cast<size_t>(start.argv_size()) + start.env_size() > kMaxArgs) {
    return absl::InvalidArgumentError(
        absl::StrCat("too many arguments and environment entries (at most ", kMaxArgs, ")"));
  }
  size_t total = 0;
  for (const std::string& a : start.argv()) {
    if (HasNul(a)) return absl::InvalidArgumentError("an argument contains a NUL byte");
    total += a.size() + 1;
  }
  for (const std::string& e : start.env()) {
    if (HasNul(e)) return absl::InvalidArgumentError("an environment entry contains a NUL byte");
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("environment entry is not KEY=VALUE: ", e.substr(0, 64)));
    }
    total += e.size() + 1;
  }
  if (total > kMaxArgBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("arguments and environment exceed ", kMaxArgBytes, " bytes"));
  }
  if (start.argv(0).size() > kMaxPathBytes) {
    return absl::InvalidArgumentError("the command name is too long");
  }
  if (absl::Status s = CheckPath(start.working_dir(), "working_dir"); !s.ok()) return s;
  if (absl::Status s = CheckPath(start.rootfs_path(), "rootfs_path"); !s.ok()) return s;
  if (start.has_window_size()) {
    const v1::WindowSize& w = start.window_size();
    if (w.rows() > 0xffff || w.cols() > 0xffff || w.x_pixels() > 0xffff || w.y_pixels() > 0xffff) {
      return absl::InvalidArgumentError("window size out of range (at most 65535)");
    }
  }
  if (start.has_user() && start.user().groups_size() > 64) {
    return absl::InvalidArgumentError("at most 64 supplementary groups");
  }
  if (start.has_by_reference()) {
    // Every field, stderr_fd with a tty too (it is unused then, and 0 is
    // what an unset one reads as): a number no fd table holds is a mistake
    // of the client's, whatever the mode.
    const v1::StdioByReference& ref = start.by_reference();
    const std::pair<const char*, int32_t> fields[] = {
        {"stdin_fd", ref.stdin_fd()},     {"stdout_fd", ref.stdout_fd()},
        {"stderr_fd", ref.stderr_fd()},   {"status_fd", ref.status_fd()},
        {"control_fd", ref.control_fd()},
    };
    for (const auto& [field, number] : fields) {
      if (number < 0 || number >= kMaxCallerFd) {
        return absl::InvalidArgumentError(absl::StrCat("by_reference.", field, ": ", number,
                                                       " is not an fd number (0 to ",
                                                       kMaxCallerFd - 1, ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ExecInput::Action> ExecInput::OnMessage(v1::ExecRequest* request) {
  Action action;
  switch (request->kind_case()) {
    case v1::ExecRequest::kStart:
      return absl::InvalidArgumentError("start sent twice: it must be the first message only");
    case v1::ExecRequest::kStdin: {
      absl::StatusOr<Action> checked = OnStdin(request->stdin().size());
      if (checked.ok()) checked->data = std::move(*request->mutable_stdin());
      return checked;
    }
    case v1::ExecRequest::kStdinEof:
      if (stdin_closed_) return action;  // repeated EOF: harmless
      stdin_closed_ = true;
      action.kind = Kind::kStdinEof;
      return action;
    case v1::ExecRequest::kResize: {
      if (!tty_) return absl::InvalidArgumentError("resize without a terminal (start.tty unset)");
      const v1::WindowSize& w = request->resize();
      if (w.rows() > 0xffff || w.cols() > 0xffff || w.x_pixels() > 0xffff ||
          w.y_pixels() > 0xffff) {
        return absl::InvalidArgumentError("window size out of range (at most 65535)");
      }
      action.kind = Kind::kResize;
      action.size.ws_row = static_cast<unsigned short>(w.rows());
      action.size.ws_col = static_cast<unsigned short>(w.cols());
      action.size.ws_xpixel = static_cast<unsigned short>(w.x_pixels());
      action.size.ws_ypixel = static_cast<unsigned short>(w.y_pixels());
      return action;
    }
    case v1::ExecRequest::kSignal: {
      int sig = request->signal().signal();
      if (sig < 1 || sig > 64) {
        return absl::InvalidArgumentError(absl::StrCat("signal ", sig, " is not in 1..64"));
      }
      action.kind = Kind::kSignal;
      action.signal = sig;
      return action;
    }
    case v1::ExecRequest::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("empty or unknown ExecRequest");
}

absl::StatusOr<ExecInput::Action> ExecInput::OnStdin(size_t size) {
  if (stdin_closed_) return absl::InvalidArgumentError("stdin data after stdin_eof");
  if (size > kMaxStdinChunk) {
    return absl::InvalidArgumentError(
        absl::StrCat("stdin message larger than ", kMaxStdinChunk, " bytes"));
  }
  Action action;
  action.kind = Kind::kStdin;
  return action;
}

ExecInput::Action ExecInput::OnHalfClose() {
  Action action;
  if (!stdin_closed_) {
    stdin_closed_ = true;
    action.kind = Kind::kStdinEof;
  }
  return action;
}

void ExecOutput::OnExit(int code, int status) {
  exited_ = true;
  killed_ = code == CLD_KILLED || code == CLD_DUMPED;
  core_ = code == CLD_DUMPED;
  code_ = status;
}

v1::ExecExit ExecOutput::ExitMessage(const std::string& message) const {
  v1::ExecExit exit;
  if (killed_) {
    exit.set_signal(code_);
    exit.set_core_dumped(core_);
  } else {
    exit.set_exit_code(code_ & 0xff);
  }
  exit.set_message(message);
  return exit;
}

std::string ExecOutput::Describe() const {
  if (!exited_) return "running";
  if (killed_) return absl::StrCat("killed by signal ", code_, core_ ? " (core dumped)" : "");
  return absl::StrCat("exited ", code_);
}

}  // namespace sc
