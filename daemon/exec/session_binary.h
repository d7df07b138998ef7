#ifndef DAEMON_EXEC_SESSION_BINARY_H_
#define DAEMON_EXEC_SESSION_BINARY_H_

#include "absl/status/statusor.h"

namespace sc {

// The session binary (session/main.cc: a keeper, an operator exec's pid 1),
// which the daemon carries inside itself, as a sealed memfd to execveat:
// nothing to install beside the daemon, and no one can change it once
// written. Made on first use, then shared (never closed).
absl::StatusOr<int> SessionBinaryFd();

}  // namespace sc

#endif  // DAEMON_EXEC_SESSION_BINARY_H_
