#ifndef DAEMON_EXEC_CALLER_FDS_H_
#define DAEMON_EXEC_CALLER_FDS_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "daemon/identity/peer.h"
#include "mounthelper.pb.h"

namespace sc {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

// The fds a by-reference Exec names (StdioByReference), copied out of the
// verified caller's fd table. stderr is left empty with a tty.
struct CallerStdio {
  UniqueFd in, out, err, status, control;
};

// Takes each fd with pidfd_getfd on the caller's own pidfd (the one its
// identity was proven with, so no other process's fds can be named) and
// checks that it is what its role needs: open in the caller, not O_PATH,
// not a directory, readable or writable as the role reads or writes, the two
// control pipes pipes, and none of them a connection to or the socket of
// the daemon itself (`daemon_socket`), which a workload must not get. Every
// refusal names the field and the fd, with the code that fits.
absl::StatusOr<CallerStdio> TakeCallerStdio(const Peer& peer, const v1::StdioByReference& ref,
                                            bool tty, const std::string& daemon_socket);

}  // namespace sc

#endif  // DAEMON_EXEC_CALLER_FDS_H_
