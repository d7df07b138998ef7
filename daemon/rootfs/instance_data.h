#ifndef DAEMON_ROOTFS_INSTANCE_DATA_H_
#define DAEMON_ROOTFS_INSTANCE_DATA_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"

namespace sc {

// An instance's data on disk once an operator deletes it: the directory is
// set aside under a name no instance can have while the rootfs lock is held,
// and removed outside it (a large upper layer takes seconds).

// The name an instance directory is set aside under while it is deleted.
std::string DoomedName(const std::string& name);

// Removes every tree DoomedName gave `name` in `ns_fd`, on device `dev` only.
absl::Status RemoveDoomedTrees(int ns_fd, const std::string& name, dev_t dev);

}  // namespace sc

#endif  // DAEMON_ROOTFS_INSTANCE_DATA_H_
