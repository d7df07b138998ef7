#ifndef DAEMON_BASE_SYS_MOUNT_H_
#define DAEMON_BASE_SYS_MOUNT_H_

#include <cstddef>

namespace sc {

// One cgroup hierarchy as a workload sees it under /sys/fs/cgroup: a detached
// read-only clone of the cgroup directory it was placed in (never a parent),
// under the name of the hierarchy's mount ("memory", "cpu,cpuacct",
// "unified"); name "" puts the one tree of a pure cgroup v2 node at
// /sys/fs/cgroup itself.
struct CgroupViewEntry {
  const char* name;
  int tree_fd;
};

// A workload's /sys is a read-only sysfs of its own network namespace, as a
// container's: /sys/class/net shows the pod's interfaces, not the node's.
// Called in the launched workload once it is in its network and mount
// namespaces, before chroot: unless <rootfs>/sys already is a finished sysfs
// of this network namespace (an earlier exec into the same pod mounted it),
// mounts one over it and finishes it (FinishSys). A rootfs without a sys
// directory is left alone.
//
// Async-signal-safe: system calls only. 0 or the errno of the failed step.
int MountOwnSysIfNeeded(int rootfs_fd, const CgroupViewEntry* view, size_t count);

// The masked paths of container_spec.h, then the cgroup view (a read-only
// tmpfs with a directory per hierarchy, each with its tree attached; or the
// one v2 tree) at fs/cgroup. The prepare finishes the rootfs's own sysfs
// with no view. 0 or errno.
int FinishSys(int sys_fd, const CgroupViewEntry* view, size_t count);

}  // namespace sc

#endif  // DAEMON_BASE_SYS_MOUNT_H_
