#ifndef DAEMON_EXEC_EXEC_SESSION_H_
#define DAEMON_EXEC_EXEC_SESSION_H_

#include <sys/ioctl.h>
#include <sys/wait.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mounthelper.pb.h"

namespace sc {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

// Limits on what a client may send; every byte from the socket is hostile.
inline constexpr size_t kMaxStdinChunk = 1 << 20;  // per message, as the proto says
inline constexpr size_t kMaxArgs = 4096;           // argv + env entries
inline constexpr size_t kMaxArgBytes = 1 << 20;    // their total size
inline constexpr size_t kMaxPathBytes = 4096;
// One past the largest fd number a by-reference start may name: the kernel's
// default fs.nr_open (2^20). A number past it is a client's mistake, refused
// before any system call sees it.
inline constexpr int kMaxCallerFd = 1 << 20;

// Checks an ExecStart for what no kernel call should ever see: empty argv, NUL
// bytes, env entries without '=', relative or oversized paths, absurd sizes,
// by-reference fd numbers outside 0..kMaxCallerFd-1.
absl::Status ValidateExecStart(const v1::ExecStart& start);

// The client's half of a session after `start`: turns each message into what
// the daemon should do, and refuses what the protocol forbids (a second start,
// stdin after stdin_eof, resize without a tty, a signal outside 1..64, an
// oversized chunk). Pure logic, no I/O: unit-tested and fuzzable.
class ExecInput {
 public:
  enum class Kind { kNone, kStdin, kStdinEof, kResize, kSignal };
  struct Action {
    Kind kind = Kind::kNone;
    std::string data;  // kStdin
    winsize size{};    // kResize
    int signal = 0;    // kSignal
  };

  explicit ExecInput(bool tty) : tty_(tty) {}

  absl::StatusOr<Action> OnMessage(v1::ExecRequest* request);
  // A stdin message of `size` bytes whose bytes the caller keeps (the daemon
  // does not copy them out of gRPC's slices): the checks of OnMessage, an
  // Action without data.
  absl::StatusOr<Action> OnStdin(size_t size);
  // The client half-closed (WritesDone): stdin EOF unless already sent.
  Action OnHalfClose();
  bool stdin_closed() const { return stdin_closed_; }

 private:
  bool tty_;
  bool stdin_closed_ = false;
};

// The process's half: output streams reach EOF, the process exits; the exit
// message may go out only when all three happened (no output is lost).
class ExecOutput {
 public:
  explicit ExecOutput(bool tty) : stderr_eof_(tty) {}

  void OnStdoutEof() { stdout_eof_ = true; }
  void OnStderrEof() { stderr_eof_ = true; }
  // From waitid: CLD_EXITED/CLD_KILLED/CLD_DUMPED and si_status.
  void OnExit(int code, int status);

  bool exited() const { return exited_; }
  bool drained() const { return stdout_eof_ && stderr_eof_; }
  bool Done() const { return exited_ && drained(); }

  // The final message; `message` is for a person (may be empty).
  v1::ExecExit ExitMessage(const std::string& message) const;
  // "exited 3" / "killed by signal 9", for the audit log.
  std::string Describe() const;

 private:
  bool stdout_eof_ = false;
  bool stderr_eof_;
  bool exited_ = false;
  bool killed_ = false;
  bool core_ = false;
  int code_ = 0;
};

}  // namespace sc

#endif  // DAEMON_EXEC_EXEC_SESSION_H_
