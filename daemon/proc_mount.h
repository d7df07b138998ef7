#ifndef DAEMON_PROC_MOUNT_H_
#define DAEMON_PROC_MOUNT_H_

namespace sc {

// The rootfs's own /proc is mounted at prepare time, from the daemon's pid
// namespace: the node's, with hostPID. A workload must see its pod's
// processes only, or it could read other containers' environ, cmdline and,
// for a same-uid process with no more capabilities, /proc/<pid>/root.
//
// Called in the launched workload, once it is in the caller's pid and mount
// namespaces and before chroot: unless <rootfs>/proc already belongs to this
// pid namespace (an earlier exec into the same pod mounted it), mounts a
// fresh proc over it (nosuid, nodev, noexec) with the kernel knobs
// (sys, sysrq-trigger, irq, bus, fs) bound read-only as in the rootfs's own.
// A rootfs without a proc directory is left alone.
//
// Async-signal-safe: system calls only. Returns 0, or the errno of the step
// that failed.
int MountOwnProcIfNeeded(int rootfs_fd);

}  // namespace sc

#endif  // DAEMON_PROC_MOUNT_H_
