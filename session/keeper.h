#ifndef SESSION_KEEPER_H_
#define SESSION_KEEPER_H_

// A by-reference session's keeper (StdioByReference in mounthelper.proto):
// the parent of the workload in place of the daemon, so that the session
// does not depend on the daemon once it has started. It is the session
// binary (session/main.cc), exec'd under the name below by the launch
// (daemon/exec/launch_children.cc), in the
// caller's cgroups (charged to the pod and ended with it) and the node's pid
// namespace (reparented to the node's reaper, not to anything in the
// daemon's pod, whose processes a DaemonSet rollout kills). It keeps
// CAP_KILL only (the workload may run as another uid), is not dumpable and
// holds nothing but the fds below:
//
//   3  a pidfd of the workload, its child
//   4  the caller's status pipe (write end): one KeeperStatus at the end
//   5  the caller's control pipe (read end): KeeperControl records; EOF
//      means the caller is gone
//   6  tty only: the session terminal's master
//   7  tty only: the caller's stdin, relayed to the master
//   8  tty only: the caller's stdout, what the master gives
//
// argv: name, the workload's pid (its process group), the grace in ms
// between SIGTERM and SIGKILL for a session whose caller went away, and
// "tty" or "pipes". Without a terminal the workload has the caller's stdio
// itself and the keeper relays nothing.

namespace sc {

inline constexpr char kKeeperName[] = "sc-mount-helper: keeper";
inline constexpr int kKeeperWorkloadFd = 3;
inline constexpr int kKeeperStatusFd = 4;
inline constexpr int kKeeperControlFd = 5;
inline constexpr int kKeeperMasterFd = 6;
inline constexpr int kKeeperRelayInFd = 7;
inline constexpr int kKeeperRelayOutFd = 8;
inline constexpr int kKeeperFdCount = 9;  // 0-2 are /dev/null's

// session/main.cc calls it when argv[0] is kKeeperName. Never returns.
[[noreturn]] void KeeperMain(int argc, char** argv);

}  // namespace sc

#endif  // SESSION_KEEPER_H_
