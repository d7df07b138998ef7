#ifndef DAEMON_IDENTITY_SOCK_DIAG_H_
#define DAEMON_IDENTITY_SOCK_DIAG_H_

#include <sys/types.h>

#include "absl/status/statusor.h"

namespace sc {

// The inode of the socket at the other end of the connected Unix socket
// `sock_fd` (as /proc/<pid>/fd shows it: "socket:[<inode>]"), or 0 when that
// end is closed. Asked of the kernel's socket diagnostics (NETLINK_SOCK_DIAG
// with a unix_diag_req for `sock_fd`'s inode and UDIAG_SHOW_PEER, see
// sock_diag(7)) in the network namespace the socket lives in: an accepted
// Unix socket is created in its client's, a pod's own for a pod caller, and
// unix_diag only finds sockets of the asking netlink socket's namespace.
//
// UNIMPLEMENTED when the kernel cannot answer: no NETLINK_SOCK_DIAG, or no
// unix_diag handler (CONFIG_UNIX_DIAG unset, or the unix_diag module not
// loaded and not loadable). UNAVAILABLE when no answer comes within 1 s.
absl::StatusOr<ino_t> UnixPeerInode(int sock_fd);

}  // namespace sc

#endif  // DAEMON_IDENTITY_SOCK_DIAG_H_
