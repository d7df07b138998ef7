#include "daemon/proc_mount.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "daemon/clone_on_stack.h"

namespace sc {
namespace {

// libmount has no answer for the new mount API in a forked child (it
// allocates); these are the raw system calls.
SC_CLONE_CHILD_CODE int FsOpen(const char* fs) {
  return static_cast<int>(syscall(SYS_fsopen, fs, FSOPEN_CLOEXEC));
}
SC_CLONE_CHILD_CODE int FsConfigCreate(int fd) {
  return static_cast<int>(syscall(SYS_fsconfig, fd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0));
}
SC_CLONE_CHILD_CODE int FsMount(int fd, unsigned int attrs) {
  return static_cast<int>(syscall(SYS_fsmount, fd, FSMOUNT_CLOEXEC, attrs));
}
SC_CLONE_CHILD_CODE int OpenTree(int dirfd, const char* path, unsigned int flags) {
  return static_cast<int>(syscall(SYS_open_tree, dirfd, path, flags));
}
SC_CLONE_CHILD_CODE int MoveMount(int from_fd, const char* from, int to_fd, const char* to,
                                  unsigned int flags) {
  return static_cast<int>(syscall(SYS_move_mount, from_fd, from, to_fd, to, flags));
}
SC_CLONE_CHILD_CODE int MountSetattrReadOnly(int fd) {
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  return static_cast<int>(syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)));
}

// Whether the proc mounted at <rootfs>/proc is of the caller's pid namespace:
// its "self" names the caller by the caller's own pid only then.
SC_CLONE_CHILD_CODE bool ProcIsOurs(int rootfs_fd) {
  char link[32];
  ssize_t n = readlinkat(rootfs_fd, "proc/self", link, sizeof(link));
  if (n <= 0 || n >= static_cast<ssize_t>(sizeof(link))) return false;
  char want[32];
  long pid = syscall(SYS_getpid);
  int len = 0;
  char digits[32];
  do {
    digits[len++] = static_cast<char>('0' + pid % 10);
    pid /= 10;
  } while (pid > 0);
  for (int i = 0; i < len; ++i) want[i] = digits[len - 1 - i];
  return n == len && memcmp(link, want, static_cast<size_t>(len)) == 0;
}

}  // namespace

SC_CLONE_CHILD_CODE int MountOwnProcIfNeeded(int rootfs_fd) {
  if (ProcIsOurs(rootfs_fd)) return 0;
  // Not following a symlink: the rootfs is the workload's to write, but a
  // mount point cannot be replaced while the rootfs's proc is on it.
  UniqueFd dir(openat(rootfs_fd, "proc", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    if (errno == ENOENT) return 0;
    return errno;
  }
  UniqueFd fs(FsOpen("proc"));
  if (!fs) {
    return errno;
  }
  if (FsConfigCreate(fs.get()) != 0) {
    return errno;
  }
  UniqueFd proc(FsMount(fs.get(), MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  if (!proc) {
    return errno;
  }
  if (MoveMount(proc.get(), "", dir.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) !=
      0) {
    return errno;
  }
  for (const char* knob : {"sys", "sysrq-trigger", "irq", "bus", "fs"}) {
    UniqueFd tree(
        OpenTree(proc.get(), knob, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW));
    if (!tree) {
      if (errno == ENOENT) continue;  // a kernel without it
      return errno;
    }
    if (MountSetattrReadOnly(tree.get()) != 0) {
      return errno;
    }
    if (MoveMount(tree.get(), "", proc.get(), knob, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
      return errno;
    }
  }
  return 0;
}

}  // namespace sc
