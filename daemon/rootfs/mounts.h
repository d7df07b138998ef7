#ifndef DAEMON_ROOTFS_MOUNTS_H_
#define DAEMON_ROOTFS_MOUNTS_H_

#include <sys/mount.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sc {

// Mounting, always onto an fd resolved beforehand (paths.h), never onto a
// path string resolved again.
//
// Raw syscalls of the new mount API, not libmount: libmount 2.38's contexts
// take path strings that are looked up again (following symlinks), it cannot
// hand overlayfs its layers as fds (fsconfig FSCONFIG_SET_FD), attach a mount
// to an fd (move_mount MOVE_MOUNT_T_EMPTY_PATH) or set attributes on a
// detached tree (mount_setattr). libmount is used to read mount tables
// (mountinfo.h).

struct FsOption {
  std::string key;
  std::string value;  // "" sets a flag option
};

// The attributes of every instance's overlay mount (MOUNT_ATTR_*).
inline constexpr uint64_t kRootfsMountAttrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

// How overlayfs is handed the layers, which were all opened beforehand
// without following symlinks (paths.h); in both ways the kernel resolves
// nothing a request named again:
//   kByFd         fsconfig(FSCONFIG_SET_FD) "lowerdir+", "upperdir",
//                 "workdir" (Linux 6.13); mountinfo then shows real paths.
//   kProcFdPaths  the classic option string, each layer given as the magic
//                 link /proc/self/fd/N of its fd, which the kernel follows to
//                 the open directory once, at mount time (every kernel since
//                 overlayfs; mountinfo then shows those strings, so instance
//                 state keeps the real paths elsewhere: layer_record.h).
//                 The whole string must fit one page: see kMaxProcFdLayers.
enum class OverlayLayerPassing { kByFd, kProcFdPaths };
const char* OverlayLayerPassingName(OverlayLayerPassing passing);

// Which way this kernel takes (a probe on an unattached overlay context),
// unless ForceOverlayLayerPassing chose one.
OverlayLayerPassing OverlayLayerPassingInUse();
// For tests and for old-kernel emulation (--overlay_layers).
void ForceOverlayLayerPassing(OverlayLayerPassing passing);

// The most lower layers kProcFdPaths fits in one page, whatever their fd
// numbers (up to 7 digits).
inline constexpr int kMaxProcFdLayers = 160;

// overlayfs of `lower_fds` (top-most first) with `upper_fd` and `work_fd`,
// handed over as OverlayLayerPassingInUse() says, attached at `target_fd`
// with kRootfsMountAttrs.
absl::Status MountOverlayAt(const std::vector<int>& lower_fds, int upper_fd, int work_fd,
                            int target_fd);

// A new instance of `fstype` (proc, devpts, tmpfs...) with `options` and the
// MOUNT_ATTR_* `attrs`, attached at `target_fd`.
absl::Status MountNewAt(const char* fstype, const std::vector<FsOption>& options, uint64_t attrs,
                        int target_fd);

// A proc of a pid namespace that no process is left in, with the
// MOUNT_ATTR_* `attrs`, attached at `target_fd`. A rootfs is shared with
// consumer pods through a hostPath, so the proc it carries must show no
// process: one of the daemon's pid namespace (the node's) would let any
// process of a consumer pod open another workload's /proc/<pid>/root. Every
// exec mounts the proc of its own pid namespace over it (proc_mount.h).
absl::Status MountEmptyProcAt(uint64_t attrs, int target_fd);

// Binds the object `source_fd` is (an O_PATH fd) at `target_fd`: a detached
// clone (open_tree), given `attrs` (MOUNT_ATTR_*) and, when `slave`, slave
// propagation while still detached, then attached.
absl::Status BindAt(int source_fd, int target_fd, bool recursive, uint64_t attrs, bool slave);

// Adds the MOUNT_ATTR_* `attrs` to the mount `mount_fd` is the root of (not
// to the mounts below it).
absl::Status SetMountAttrs(int mount_fd, uint64_t attrs);

// Changes the propagation (MS_SHARED, MS_SLAVE, MS_PRIVATE) of the mount
// `mount_fd` is the root of.
absl::Status SetPropagation(int mount_fd, uint64_t propagation, bool recursive);

// Unmounts the mount on `name` in directory `parent_fd` (the directory's own
// mount), after checking that the top-most mount there has the kernel id
// `expected_id`. A busy mount is detached lazily (MNT_DETACH) as a last
// resort, which sets *lazily = true.
absl::Status UnmountAt(int parent_fd, const std::string& name, int expected_id, bool* lazily);

// Detaches the mount on `name` in directory `parent_fd` together with every
// mount below it in one step (MNT_DETACH), after the same check as UnmountAt.
absl::Status DetachTreeAt(int parent_fd, const std::string& name, int expected_id);

}  // namespace sc

#endif  // DAEMON_ROOTFS_MOUNTS_H_
