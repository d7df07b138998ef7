#ifndef DAEMON_ROOTFS_MOUNTS_H_
#define DAEMON_ROOTFS_MOUNTS_H_

// The mount steps of an instance's rootfs, which rootfs_ops.cc calls. They are
// defined in rootfs_service.cc until the daemon's files are laid out by
// concern (issue 16, item 3).

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/instances.h"

namespace sc {

// Mounts what `view` says is missing (the overlay of `lower_fds` with the
// instance's upper and work directories, then proc, dev, sys and what goes
// below them), in order. Returns how many mounts it made.
absl::StatusOr<int> CompleteInstance(int instance_fd, const InstanceView& view,
                                     const std::vector<int>& lower_fds);

struct ReleaseCounts {
  uint32_t unmounted = 0;
  uint32_t lazily = 0;
};

// Unmounts everything at or below the instance's rootfs, deepest first.
absl::StatusOr<ReleaseCounts> UnmountInstance(int instance_fd, const InstanceLayout& layout);

// The name an instance directory is set aside under while it is deleted.
std::string DoomedName(const std::string& name);

// Removes every tree DoomedName gave `name` in `ns_fd`, on device `dev` only.
absl::Status RemoveDoomedTrees(int ns_fd, const std::string& name, dev_t dev);

}  // namespace sc

#endif  // DAEMON_ROOTFS_MOUNTS_H_
