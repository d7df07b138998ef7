#ifndef DAEMON_EDGE_STREAM_SESSION_H_
#define DAEMON_EDGE_STREAM_SESSION_H_

// A streaming Exec session (exec_service.cc) once its process runs: its
// stdio as messages of the call's stream until it has exited and its output
// is drained.
//
// Threads: the handler thread (a gRPC sync thread) launches the process and
// then pumps its output into the stream; one reader thread per session reads
// client messages and applies them (stdin, EOF, resize, signals). The sync API
// is kept on purpose: a blocking stream Write() is exactly the flow control
// the issue asks for (the pump reads the next chunk from the process only
// after gRPC took the previous one, so a slow client makes the process block
// on write), and a blocking write() into the stdin pipe back-pressures the
// client in the same way. The callback API would need an I/O thread of its
// own for the pipes anyway. The stream carries raw ByteBuffers (exec_stream.h)
// so that output is read straight into the slice gRPC sends: no copy in user
// space.
//
// Memory per session, bounded: one output slice (kOutputChunk = 1 MiB) being
// filled by the pump plus the message gRPC is sending, one stdin message (at
// most 1 MiB, refused beyond) in the reader, plus gRPC's per-stream HTTP/2
// flow-control window; nothing else grows with the amount of data. The pipes
// hold up to 1 MiB each: output charged to the pod (their writer), stdin to
// the daemon.

#include <grpcpp/server_context.h>
#include <signal.h>
#include <sys/types.h>

#include <mutex>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "daemon/edge/exec_stream.h"
#include "daemon/exec/pid_init.h"
#include "daemon/exec/pty.h"
#include "daemon/identity/audit.h"

namespace sc {

// What a client is told of a message that does not parse.
inline constexpr char kMalformedExecRequest[] =
    "a message does not parse as an ExecRequest (is the client built from this daemon's "
    "mounthelper.proto?)";

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

// A session's stdio as the daemon makes it: a terminal of the session's own
// (pty.h), or, for a streaming session without one, three pipes.
struct SessionStdio {
  bool tty = false;
  Pty pty;
  Pipe in, out, err;
};

// The three pipes of a streaming session without a terminal: the daemon's
// ends non-blocking, each pipe as large as a message of output.
absl::Status OpenSessionPipes(SessionStdio* stdio);

// The running process, shared by the pump and the reader: signals go to its
// process group only while the leader is unreaped (its pid, and so the group
// id, cannot have been reused until then).
class Workload {
 public:
  Workload(pid_t pid, UniqueFd pidfd, PidNamespaceInit init)
      : pid_(pid), pidfd_(std::move(pidfd)), init_(std::move(init)) {}
  int pidfd() const { return pidfd_.get(); }

  void SignalGroup(int sig);
  // Reaps the exited leader; with `kill_group`, first SIGKILLs what is left
  // of its group (a cancelled session leaves nothing behind).
  bool Reap(bool kill_group, siginfo_t* info);
  // Last resort when the session ends abnormally: kill and reap.
  void KillAndReap();
  bool reaped();

 private:
  std::mutex mu_;
  pid_t pid_;
  UniqueFd pidfd_;
  PidNamespaceInit init_;
  bool reaped_ = false;
};

// Relays the session until the process has exited and its output is
// drained, or, once the client is gone or broke the protocol, until the
// process (SIGHUP, SIGCONT, SIGTERM, SIGKILL after `kill_grace`) has exited;
// then sends the exit message, unless no one is left to read it, and waits
// a moment for the client to half-close. The child's ends of `stdio` must be
// closed. Returns what the call ends with; `details` gets the exit and why
// the session was stopped.
absl::Status RelaySession(grpc::ServerContext* context, absl::Duration kill_grace,
                          Workload* workload, SessionStdio* stdio, ExecStream* stream,
                          AuditDetails* details);

}  // namespace sc

#endif  // DAEMON_EDGE_STREAM_SESSION_H_
