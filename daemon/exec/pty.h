#ifndef DAEMON_EXEC_PTY_H_
#define DAEMON_EXEC_PTY_H_

#include <sys/ioctl.h>
#include <sys/types.h>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace sc {

// The group and mode of a session's terminal: the tty group and 0620, as a
// container runtime's devpts and sshd give them.
inline constexpr gid_t kTtyGid = 5;

struct Pty {
  UniqueFd master;  // the daemon's end, O_NONBLOCK
  UniqueFd slave;   // the process's stdio and controlling terminal
  // The devpts the pair is of: a detached mount (fsmount) of a devpts
  // instance made for this session alone. The launcher attaches it over
  // <rootfs>/dev/pts in the session's own mount namespace (launcher.h); until
  // then, and if it never is, no path leads to it.
  UniqueFd devpts;
};

// Allocates a session's pseudo-terminal from a new devpts instance of its
// own (ptmxmode 0666 so that the capless workload can allocate more ptys in
// it, mode 0620, gid kTtyGid, uid `uid`: the slave, and every pty the
// workload allocates there, is owned by the workload's uid). No other session
// and no pod shares it: before, every terminal of an instance came from the
// instance's one devpts at <rootfs>/dev/pts, where another consumer pod of
// the instance read and wrote it (issue 18). The slave is opened from the
// master (TIOCGPTPEER), the window size applied before the process exists.
absl::StatusOr<Pty> OpenSessionPty(uid_t uid, const winsize& size);

}  // namespace sc

#endif  // DAEMON_EXEC_PTY_H_
