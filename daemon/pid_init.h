#ifndef DAEMON_PID_INIT_H_
#define DAEMON_PID_INIT_H_

#include <sys/types.h>

#include "common/unique_fd.h"

namespace sc {

// An operator's exec gets a pid namespace of its own. Its first process is
// the namespace's init, and the kernel drops every signal but SIGKILL and
// SIGSTOP that an init has no handler for, also from outside: were the
// workload that process, Ctrl-C, a forwarded SIGTERM and the SIGHUP/SIGTERM
// of a dropped session would do nothing to `cat` or `sleep`. So the daemon's
// own binary, exec'd under the name below, takes that place: it only reaps
// what is orphaned in the namespace. The daemon ends it once it has reaped
// the workload, which ends every process left in the namespace (they could
// hold the output open). Should the daemon die first (an operator's session
// lives in the daemon's pod, and a rollout ends that pod), the session ends
// too: fd 3, the one fd the init keeps, reaches EOF, and the init sends
// SIGHUP, SIGCONT and SIGTERM to everything in its namespace, waits at most
// kPidInitDaemonGoneGrace for the workload, and exits, which SIGKILLs what
// is left. It is not dumpable.
inline constexpr char kPidNamespaceInitName[] = "sc-mount-helper: pid 1";
inline constexpr int kPidInitDaemonLifeFd = 3;
inline constexpr int kPidInitDaemonGoneGraceMs = 5000;

// The init's main (daemon/main.cc calls it when argv[0] is that name).
// Never returns.
[[noreturn]] void PidNamespaceInitMain();

// The daemon's handle on such an init, a child of the daemon: destruction
// SIGKILLs and reaps it (and with it, whatever is left in its namespace).
class PidNamespaceInit {
 public:
  PidNamespaceInit() = default;
  PidNamespaceInit(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  PidNamespaceInit(PidNamespaceInit&& other) noexcept = default;
  PidNamespaceInit& operator=(PidNamespaceInit&& other) noexcept;
  PidNamespaceInit(const PidNamespaceInit&) = delete;
  PidNamespaceInit& operator=(const PidNamespaceInit&) = delete;
  ~PidNamespaceInit() { Stop(); }

  pid_t pid() const { return pid_; }
  void Stop();

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
};

}  // namespace sc

#endif  // DAEMON_PID_INIT_H_
