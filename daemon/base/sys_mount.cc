#include "daemon/base/sys_mount.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>

#include "common/unique_fd.h"
#include "daemon/base/clone_on_stack.h"
#include "daemon/base/container_spec.h"
#include "daemon/base/raw_mounts.h"

namespace sc {
namespace {

constexpr uint64_t kReadOnly =
    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;

// "cpu,cpuacct" is also reached as "cpu" and "cpuacct", as on the node.
SC_CLONE_CHILD_CODE void LinkControllers(int dir_fd, const char* name) {
  if (strchr(name, ',') == nullptr) return;
  char part[64];
  size_t len = 0;
  for (const char* c = name;; ++c) {
    if (*c == ',' || *c == '\0') {
      part[len] = '\0';
      // An existing entry (another hierarchy's name) wins.
      if (len > 0) (void)symlinkat(name, dir_fd, part);
      len = 0;
      if (*c == '\0') break;
      continue;
    }
    if (len + 1 >= sizeof(part)) return;
    part[len++] = *c;
  }
}

SC_CLONE_CHILD_CODE int MountCgroupView(int sys_fd, const CgroupViewEntry* view, size_t count) {
  if (count == 1 && view[0].name[0] == '\0') return AttachAt(view[0].tree_fd, sys_fd, "fs/cgroup");
  static const char* const kMode[] = {"mode", "0755", nullptr};
  UniqueFd dir(
      NewDetachedMount("tmpfs", kMode, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  if (!dir) return errno;
  for (size_t i = 0; i < count; ++i) {
    if (mkdirat(dir.get(), view[i].name, 0555) != 0) return errno;
  }
  for (size_t i = 0; i < count; ++i) LinkControllers(dir.get(), view[i].name);
  if (int err = SetAttrs(dir.get(), kReadOnly); err != 0) return err;
  if (int err = AttachAt(dir.get(), sys_fd, "fs/cgroup"); err != 0) return err;
  for (size_t i = 0; i < count; ++i) {
    if (int err = AttachAt(view[i].tree_fd, dir.get(), view[i].name); err != 0) return err;
  }
  return 0;
}

}  // namespace

SC_CLONE_CHILD_CODE int FinishSys(int sys_fd, const CgroupViewEntry* view, size_t count) {
  int no_file_masks = -1;  // every masked sysfs path is a directory
  if (int err = MaskPaths(sys_fd, kMaskedSysPaths, std::size(kMaskedSysPaths), &no_file_masks);
      err != 0) {
    return err;
  }
  if (count == 0) return 0;
  return MountCgroupView(sys_fd, view, count);
}

SC_CLONE_CHILD_CODE int MountOwnSysIfNeeded(int rootfs_fd, const CgroupViewEntry* view,
                                            size_t count) {
  UniqueFd dir(openat(rootfs_fd, "sys", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return errno == ENOENT ? 0 : errno;
  static const char* const kNoOptions[] = {nullptr};
  // sysfs has one superblock per network namespace: a new mount of it shows
  // the device number the finished one has.
  UniqueFd sysfs(NewDetachedMount("sysfs", kNoOptions, kReadOnly));
  if (!sysfs) return errno;
  struct stat want {};
  struct stat have {};
  if (fstat(sysfs.get(), &want) != 0 || fstat(dir.get(), &have) != 0) return errno;
  if (want.st_dev == have.st_dev &&
      AllMountedBeneath(dir.get(), kMaskedSysPaths, std::size(kMaskedSysPaths)) &&
      (count == 0 || IsMountPointBeneath(dir.get(), "fs/cgroup") == 1)) {
    return 0;
  }
  if (int err = AttachAt(sysfs.get(), dir.get(), ""); err != 0) return err;
  return FinishSys(sysfs.get(), view, count);
}

}  // namespace sc
