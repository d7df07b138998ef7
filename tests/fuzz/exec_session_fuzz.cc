// The client's messages of an Exec stream are hostile bytes: the session's
// state machine must never turn them into an action the protocol forbids.
// Input: one byte of flags (bit 0: tty), then records of a 2-byte length and
// that many bytes of a serialized ExecRequest (start.by_reference included:
// corpus/exec_session/by-reference-*).
#include <signal.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "daemon/exec/exec_session.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  bool tty = data[0] & 1;
  sc::ExecInput input(tty);
  bool eof = false;
  size_t pos = 1;
  while (pos + 2 <= size) {
    size_t len = static_cast<size_t>(data[pos]) | static_cast<size_t>(data[pos + 1]) << 8;
    pos += 2;
    if (len > size - pos) len = size - pos;
    sc::v1::ExecRequest request;
    if (!request.ParseFromArray(data + pos, static_cast<int>(len))) {
      pos += len;
      continue;
    }
    pos += len;
    if (request.has_start()) {
      if (sc::ValidateExecStart(request.start()).ok()) {
        const auto& start = request.start();
        if (start.argv_size() == 0 || start.argv(0).empty()) __builtin_trap();
        for (const std::string& a : start.argv()) {
          if (a.find('\0') != std::string::npos) __builtin_trap();
        }
        for (const std::string& e : start.env()) {
          if (e.find('=') == std::string::npos || e.find('\0') != std::string::npos) {
            __builtin_trap();
          }
        }
        // A by-reference start that passes names only fd numbers a
        // table can hold: pidfd_getfd never sees a negative or huge one.
        if (start.has_by_reference()) {
          const auto& ref = start.by_reference();
          for (int fd : {ref.stdin_fd(), ref.stdout_fd(), ref.stderr_fd(), ref.status_fd(),
                         ref.control_fd()}) {
            if (fd < 0 || fd >= sc::kMaxCallerFd) __builtin_trap();
          }
        }
      }
    }
    absl::StatusOr<sc::ExecInput::Action> action = input.OnMessage(&request);
    if (!action.ok()) continue;
    switch (action->kind) {
      case sc::ExecInput::Kind::kStdin:
        if (eof || action->data.size() > sc::kMaxStdinChunk) __builtin_trap();
        break;
      case sc::ExecInput::Kind::kStdinEof:
        if (eof) __builtin_trap();
        eof = true;
        break;
      case sc::ExecInput::Kind::kResize:
        if (!tty) __builtin_trap();
        break;
      case sc::ExecInput::Kind::kSignal:
        if (action->signal < 1 || action->signal > 64) __builtin_trap();
        break;
      case sc::ExecInput::Kind::kNone:
        break;
    }
    if (input.stdin_closed() != eof) __builtin_trap();
  }
  sc::ExecInput::Action last = input.OnHalfClose();
  if (eof && last.kind != sc::ExecInput::Kind::kNone) __builtin_trap();
  return 0;
}
