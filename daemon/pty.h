#ifndef DAEMON_PTY_H_
#define DAEMON_PTY_H_

#include <sys/ioctl.h>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace sc {

struct Pty {
  UniqueFd master;  // the daemon's end, O_NONBLOCK
  UniqueFd slave;   // the process's stdio and controlling terminal
};

// Allocates a pseudo-terminal from the devpts the caller sees: the rootfs'
// dev/pts/ptmx, else its dev/ptmx, else the caller's own /dev/pts/ptmx (via
// `peer_root_fd`, may be -1). Every candidate is resolved inside its root
// without following magic links and must be the ptmx device (5:2), so a device
// node shipped in an image can never be opened in its place. The slave is
// opened from the master (TIOCGPTPEER), so it is the same devpts instance.
// The window size is applied before the process exists.
absl::StatusOr<Pty> OpenPty(int rootfs_fd, int peer_root_fd, const winsize& size);

}  // namespace sc

#endif  // DAEMON_PTY_H_
