#ifndef DAEMON_BASE_RAW_MOUNTS_H_
#define DAEMON_BASE_RAW_MOUNTS_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

// Mount steps made of system calls only, async-signal-safe: an exec's
// children run them between clone and execve (on the daemon's memory: no
// allocation, no locks, no libmount), and the daemon runs the very same ones
// when it prepares a rootfs, so that what consumer pods see through the
// hostPath and what each exec mounts for itself never differ. Every function
// returns 0 or an errno (the -1 returning ones set errno). No symlink is
// followed in any path given: the rootfs is the workload's to write.

namespace sc {

// A new superblock of `fstype` with `options` (a null-terminated list of
// "key", "value" pairs; value "" sets a flag), made and returned as a
// detached mount with the MOUNT_ATTR_* `attrs`. -1 with errno.
int NewDetachedMount(const char* fstype, const char* const* options, uint64_t attrs);

// Like NewDetachedMount, but the superblock's context is opened (fsopen) by a
// child in a new namespace of `clone_flag` (CLONE_NEWPID for proc,
// CLONE_NEWNET for sysfs), which dies at once: the mount shows a namespace
// with nothing in it (no process; only a loopback interface).
int NewDetachedMountInEmptyNamespace(const char* fstype, int clone_flag, uint64_t attrs);

// Attaches the detached mount `mount_fd` at `path` beneath `dir_fd` ("" for
// `dir_fd` itself).
int AttachAt(int mount_fd, int dir_fd, const char* path);

// A detached clone of the mount at `path` beneath `dir_fd` ("" for `dir_fd`
// itself; not recursive), which must be in the caller's mount namespace. -1
// with errno.
int CloneTree(int dir_fd, const char* path);

// Sets the MOUNT_ATTR_* `attrs` on the mount `mount_fd` is the root of.
int SetAttrs(int mount_fd, uint64_t attrs);

// Whether `path` beneath `dir_fd` is the root of a mount other than the one
// `dir_fd` is on (statx STATX_MNT_ID). 1, 0, or -errno.
int IsMountPointBeneath(int dir_fd, const char* path);

// Whether each of `paths` beneath `dir_fd` is a mount point or missing.
bool AllMountedBeneath(int dir_fd, const char* const* paths, size_t count);

// Masks each of `paths` (relative to `dir_fd`, a mount's root in the caller's
// namespace) as runc does: an empty read-only tmpfs over a directory, a
// read-only /dev/null over anything else. `null_tree` holds a detached clone
// of a /dev/null (CloneDevNull) or -1; the first file mask consumes it (and
// sets it to -1), later ones clone that mask. Missing paths and paths that
// are mount points already (an earlier, interrupted attempt) are skipped.
int MaskPaths(int dir_fd, const char* const* paths, size_t count, int* null_tree);

// Binds each of `paths` read-only (and nosuid, nodev, noexec) over itself,
// with the same skips as MaskPaths.
int ReadOnlyOverSelf(int dir_fd, const char* const* paths, size_t count);

// A detached, read-only clone of the node's /dev/null (a character device
// 1:3, checked), for MaskPaths. -1 with errno.
int CloneDevNull();

// A device node of a pod's own /dev, to be made again in the rootfs's.
struct DevNode {
  char name[128];  // relative to /dev: "fuse", "dri/renderD128"
  mode_t mode;     // type and permission bits
  dev_t rdev;
  uid_t uid;
  gid_t gid;
};

// Fills the empty tmpfs whose root is `dev_fd` (a detached or attached
// mount's root) with the default /dev of container_spec.h: the device nodes
// (0666), the links, the mount point directories; then `extra` nodes (their
// parent directories made 0755) with their own mode and owner.
int PopulateDev(int dev_fd, const DevNode* extra, size_t extra_count);

}  // namespace sc

#endif  // DAEMON_BASE_RAW_MOUNTS_H_
