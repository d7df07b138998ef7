#ifndef DAEMON_ROOTFS_POD_ROOTFS_H_
#define DAEMON_ROOTFS_POD_ROOTFS_H_

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "daemon/identity/peer.h"

namespace sc {

// Opens the rootfs a pod peer sees at `path` in its own mount namespace,
// resolved inside the peer's root (its symlinks cannot leave it), and the
// peer's root itself.
//
// A pod whose hostPath shows an instance's rootfs directory with nothing
// mounted on it (the instance was never prepared, is released, or is
// mounted on the node but did not propagate into the pod) would run its
// command in that empty directory ("command not found"): that is refused
// with FAILED_PRECONDITION naming the instance and its state.
// `instance_base` is where the instances' directories are.
absl::StatusOr<std::pair<UniqueFd, UniqueFd>> OpenPodRootfs(const Peer& peer,
                                                            const std::string& path,
                                                            const std::string& instance_base);

}  // namespace sc

#endif  // DAEMON_ROOTFS_POD_ROOTFS_H_
