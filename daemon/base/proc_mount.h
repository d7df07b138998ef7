#ifndef DAEMON_BASE_PROC_MOUNT_H_
#define DAEMON_BASE_PROC_MOUNT_H_

namespace sc {

// The rootfs's own /proc, mounted at prepare time, shows no process (it is of
// an empty pid namespace, see MountEmptyProcAt). A workload sees its pod's
// processes only (an operator's exec: its own), never the node's: with those
// it could read other containers' environ, cmdline and, for a same-uid
// process with no more capabilities, /proc/<pid>/root and /proc/<pid>/mem.
//
// Called in the launched workload, once it is in its pid and mount
// namespaces and before chroot: unless <rootfs>/proc already is a finished
// proc of this pid namespace (an earlier exec into the same pod mounted it),
// mounts a fresh proc over it (nosuid, nodev, noexec) and finishes it
// (FinishProc). A rootfs without a proc directory is left alone. `null_tree`
// as for MaskPaths (raw_mounts.h).
//
// Async-signal-safe: system calls only. Returns 0, or the errno of the step
// that failed.
int MountOwnProcIfNeeded(int rootfs_fd, int* null_tree);

// What a container's /proc gets once mounted (container_spec.h): the masked
// paths, then the kernel knobs bound read-only, proc/sys last. The prepare
// finishes the rootfs's own proc with it too. 0 or errno.
int FinishProc(int proc_fd, int* null_tree);

}  // namespace sc

#endif  // DAEMON_BASE_PROC_MOUNT_H_
