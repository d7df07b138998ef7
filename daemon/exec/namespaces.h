#ifndef DAEMON_EXEC_NAMESPACES_H_
#define DAEMON_EXEC_NAMESPACES_H_

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace sc {

class Peer;

// The namespaces a workload joins, opened in the daemon before any fork so
// that the child only calls setns() on fds it already holds. An invalid fd
// means "do not join" (the user namespace when it is the daemon's own: setns
// into one's own user namespace is EINVAL).
struct NamespaceHandles {
  UniqueFd user;
  UniqueFd mnt;
  UniqueFd uts;
  UniqueFd ipc;
  UniqueFd net;
  UniqueFd cgroup;
  UniqueFd pid;
};

// Opens /proc/<peer>/ns/* through the peer's verified /proc directory, then
// checks that the peer is still the process that connected (so the files are
// its namespaces, not a recycled pid's).
absl::StatusOr<NamespaceHandles> OpenPeerNamespaces(const Peer& peer);

}  // namespace sc

#endif  // DAEMON_EXEC_NAMESPACES_H_
