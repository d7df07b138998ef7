#ifndef DAEMON_BASE_DEV_MOUNT_H_
#define DAEMON_BASE_DEV_MOUNT_H_

#include <cstddef>

#include "daemon/base/raw_mounts.h"

namespace sc {

// A rootfs's /dev is a read-only tmpfs with the runtime-spec's default set
// (container_spec.h), made at prepare time and shared by the instance's
// consumer pods through the hostPath: none of the node's device nodes. Two
// things each exec adds in its own mount namespace (a pod's, or an
// operator's fresh one), before chroot. Async-signal-safe: system calls only;
// 0 or the errno of the failed step.

// A pod's view of <rootfs>/dev (the caller's mount namespace) must be a
// container's and hold the devices the pod was given explicitly (a
// volumeDevices entry, a device plugin's device): every character or block
// device node in the pod's own /dev (the caller's container, as the mount
// namespace's root shows it; one level of subdirectories, such as dri/ or
// net/) beyond the default set. When it lacks any of them, or is not a
// read-only tmpfs (the node's /dev an older daemon bound in, which a pod
// that started before the instance was converted still sees), a /dev of the
// pod's own goes over it: the default set, those nodes (same numbers, mode
// and owner), the rootfs's devpts and shm carried over. The pod's device
// cgroup still decides what its workloads may open. `scratch` holds up to
// `capacity` nodes (more: E2BIG). Must run in the caller's mount namespace,
// with CAP_MKNOD.
int MountPodDevIfNeeded(int rootfs_fd, DevNode* scratch, size_t capacity);

// An mqueue of the workload's own IPC namespace at <rootfs>/dev/mqueue,
// unless that is one already. A rootfs without it is left alone.
int MountOwnMqueueIfNeeded(int rootfs_fd);

}  // namespace sc

#endif  // DAEMON_BASE_DEV_MOUNT_H_
