#ifndef COMMON_EXIT_CODES_H_
#define COMMON_EXIT_CODES_H_

namespace sc {

// sc-exec's own exit codes, used only when it cannot report the process's
// status. They sit in 120-125 like a shell's and env(1)'s own codes, below
// 126/127 (cannot execute / not found) and 128+N (killed by signal N), so
// that a script can tell them from the workload's.
enum ExitCode : int {
  kExitUsage = 120,          // bad command line
  kExitUnreachable = 121,    // the daemon's socket cannot be reached
  kExitRefused = 122,        // the daemon refused the call (status on stderr)
  kExitNotReady = 123,       // --ready/--entrypoint: rootfs not ready in time
  kExitStreamBroken = 124,   // the stream ended without an exit status
  kExitInternal = 125,       // sc-exec itself failed
  kExitCannotExecute = 126,  // reported by the daemon for the process
  kExitNotFound = 127,       // reported by the daemon for the process
};

}  // namespace sc

#endif  // COMMON_EXIT_CODES_H_
