#ifndef SESSION_PID1_H_
#define SESSION_PID1_H_

namespace sc {

// An operator's exec gets a pid namespace of its own. Its first process is
// the namespace's init, and the kernel drops every signal but SIGKILL and
// SIGSTOP that an init has no handler for, also from outside: were the
// workload that process, Ctrl-C, a forwarded SIGTERM and the SIGHUP/SIGTERM
// of a dropped session would do nothing to `cat` or `sleep`. So the session
// binary (session/main.cc), exec'd under the name below, takes that place: it only reaps
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

// The init's main (session/main.cc calls it when argv[0] is that name).
// Never returns.
[[noreturn]] void PidNamespaceInitMain();

}  // namespace sc

#endif  // SESSION_PID1_H_
