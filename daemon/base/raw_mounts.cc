#include "daemon/base/raw_mounts.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "daemon/base/clone_on_stack.h"
#include "daemon/base/container_spec.h"

namespace sc {
namespace {

constexpr uint64_t kMaskAttrs =
    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;

SC_CLONE_CHILD_CODE int FsOpen(const char* fs) {
  return static_cast<int>(syscall(SYS_fsopen, fs, FSOPEN_CLOEXEC));
}

SC_CLONE_CHILD_CODE int FsSet(int fs_fd, const char* key, const char* value) {
  if (value[0] == '\0') {
    return static_cast<int>(syscall(SYS_fsconfig, fs_fd, FSCONFIG_SET_FLAG, key, nullptr, 0));
  }
  return static_cast<int>(syscall(SYS_fsconfig, fs_fd, FSCONFIG_SET_STRING, key, value, 0));
}

// Creates the superblock of a configured context, as a detached mount.
SC_CLONE_CHILD_CODE int CreateDetached(int fs_fd, uint64_t attrs) {
  if (syscall(SYS_fsconfig, fs_fd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) return -1;
  return static_cast<int>(
      syscall(SYS_fsmount, fs_fd, FSMOUNT_CLOEXEC, static_cast<unsigned int>(attrs)));
}

SC_CLONE_CHILD_CODE int Errno() { return errno != 0 ? errno : EIO; }

}  // namespace

SC_CLONE_CHILD_CODE int NewDetachedMount(const char* fstype, const char* const* options,
                                         uint64_t attrs) {
  UniqueFd fs(FsOpen(fstype));
  if (!fs) return -1;
  for (const char* const* o = options; o != nullptr && o[0] != nullptr; o += 2) {
    if (FsSet(fs.get(), o[0], o[1]) != 0) return -1;
  }
  return CreateDetached(fs.get(), attrs);
}

namespace {

struct EmptyNamespaceChild {
  const char* fstype;
  int slot;  // the child leaves its filesystem context here
};

SC_CLONE_CHILD_CODE int OpenContextInto(void* arg) {
  const auto* child = static_cast<const EmptyNamespaceChild*>(arg);
  UniqueFd fs(FsOpen(child->fstype));
  if (!fs) return Errno();
  return dup3(fs.get(), child->slot, O_CLOEXEC) < 0 ? Errno() : 0;
}

}  // namespace

int NewDetachedMountInEmptyNamespace(const char* fstype, int clone_flag, uint64_t attrs) {
  // A filesystem context belongs to the namespace of whoever called fsopen.
  // The fd table is shared (CLONE_FILES): the child leaves its context in
  // place of `slot`, which the daemon holds. The child shares the daemon's
  // memory and runs on a stack of its own while this thread waits
  // (CLONE_VM | CLONE_VFORK, as the launcher's children): a fork-like child
  // would write-protect every page of the daemon for copy-on-write on each
  // prepare, and on Debian's 6.1 kernel under QEMU a store of this thread
  // made after such a child was seen lost (a prepare reported created=false
  // with 16 mounts made, in the VM test only).
  UniqueFd slot(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!slot) return -1;
  EmptyNamespaceChild child{fstype, slot.get()};
  long pid;
  if (kHaveCloneOnStack) {
    absl::StatusOr<ChildStacks> stack = ChildStacks::Map(1, 64 * 1024);
    if (!stack.ok()) {
      errno = ENOMEM;
      return -1;
    }
    CloneArgs args{};
    args.flags = static_cast<uint64_t>(clone_flag) | CLONE_FILES | CLONE_VM | CLONE_VFORK;
    args.exit_signal = SIGCHLD;
    args.stack = stack->base(0);
    args.stack_size = stack->size();
    pid = CloneOnStack(&args, OpenContextInto, &child);
  } else {
    pid = syscall(SYS_clone, static_cast<unsigned long>(clone_flag) | CLONE_FILES | SIGCHLD,
                  nullptr, nullptr, nullptr, nullptr);
    if (pid == 0) _exit(OpenContextInto(&child));
  }
  if (pid < 0) return -1;
  int status = 0;
  while (waitpid(static_cast<pid_t>(pid), &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    errno = WIFEXITED(status) ? WEXITSTATUS(status) : EINTR;
    return -1;
  }
  return CreateDetached(slot.get(), attrs);
}

SC_CLONE_CHILD_CODE int AttachAt(int mount_fd, int dir_fd, const char* path) {
  unsigned int flags = MOVE_MOUNT_F_EMPTY_PATH | (path[0] == '\0' ? MOVE_MOUNT_T_EMPTY_PATH : 0);
  if (syscall(SYS_move_mount, mount_fd, "", dir_fd, path, flags) != 0) return Errno();
  return 0;
}

SC_CLONE_CHILD_CODE int CloneTree(int dir_fd, const char* path) {
  unsigned int flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW |
                       (path[0] == '\0' ? AT_EMPTY_PATH : 0);
  return static_cast<int>(syscall(SYS_open_tree, dir_fd, path, flags));
}

SC_CLONE_CHILD_CODE int SetAttrs(int mount_fd, uint64_t attrs) {
  mount_attr attr{};
  attr.attr_set = attrs;
  if (syscall(SYS_mount_setattr, mount_fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0) {
    return Errno();
  }
  return 0;
}

SC_CLONE_CHILD_CODE int IsMountPointBeneath(int dir_fd, const char* path) {
  struct statx dir {};
  struct statx at {};
  if (syscall(SYS_statx, dir_fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &dir) != 0) return -Errno();
  if (syscall(SYS_statx, dir_fd, path, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &at) != 0) {
    return -Errno();
  }
  return dir.stx_mnt_id != at.stx_mnt_id ? 1 : 0;
}

SC_CLONE_CHILD_CODE bool AllMountedBeneath(int dir_fd, const char* const* paths, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    int mounted = IsMountPointBeneath(dir_fd, paths[i]);
    if (mounted != 1 && mounted != -ENOENT) return false;
  }
  return true;
}

SC_CLONE_CHILD_CODE int MaskPaths(int dir_fd, const char* const* paths, size_t count,
                                  int* null_tree) {
  const char* first_file = nullptr;
  for (size_t i = 0; i < count; ++i) {
    int mounted = IsMountPointBeneath(dir_fd, paths[i]);
    if (mounted == -ENOENT || mounted == 1) continue;
    if (mounted < 0) return -mounted;
    struct stat st {};
    if (fstatat(dir_fd, paths[i], &st, AT_SYMLINK_NOFOLLOW) != 0) return Errno();
    UniqueFd mask;
    if (S_ISDIR(st.st_mode)) {
      static const char* const kEmpty[] = {"mode", "0555", nullptr};
      mask.reset(NewDetachedMount("tmpfs", kEmpty, kMaskAttrs));
    } else if (first_file != nullptr) {
      mask.reset(CloneTree(dir_fd, first_file));
    } else {
      if (*null_tree < 0) return EBADF;
      mask.reset(*null_tree);
      *null_tree = -1;
      first_file = paths[i];
    }
    if (!mask) return Errno();
    if (int err = AttachAt(mask.get(), dir_fd, paths[i]); err != 0) return err;
  }
  return 0;
}

SC_CLONE_CHILD_CODE int ReadOnlyOverSelf(int dir_fd, const char* const* paths, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    int mounted = IsMountPointBeneath(dir_fd, paths[i]);
    if (mounted == -ENOENT || mounted == 1) continue;
    if (mounted < 0) return -mounted;
    UniqueFd tree(CloneTree(dir_fd, paths[i]));
    if (!tree) return Errno();
    if (int err = SetAttrs(tree.get(), kMaskAttrs); err != 0) return err;
    if (int err = AttachAt(tree.get(), dir_fd, paths[i]); err != 0) return err;
  }
  return 0;
}

int CloneDevNull() {
  UniqueFd null(open("/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!null) return -1;
  struct stat st {};
  if (fstat(null.get(), &st) != 0) return -1;
  if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3)) {
    errno = ENODEV;
    return -1;
  }
  UniqueFd tree(CloneTree(null.get(), ""));
  if (!tree) return -1;
  // Not nodev: a masked file reads as an empty device, as in runc.
  if (int err = SetAttrs(tree.get(), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
      err != 0) {
    errno = err;
    return -1;
  }
  return tree.release();
}

namespace {

// mknod + chmod (the umask is the daemon's) + chown.
SC_CLONE_CHILD_CODE int MakeNode(int dev_fd, const char* name, mode_t mode, dev_t rdev, uid_t uid,
                                 gid_t gid) {
  if (mknodat(dev_fd, name, mode, rdev) != 0) return Errno();
  if (fchmodat(dev_fd, name, mode & 07777, 0) != 0) return Errno();
  if (fchownat(dev_fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return Errno();
  return 0;
}

SC_CLONE_CHILD_CODE int MakeDir(int dev_fd, const char* name, mode_t mode) {
  if (mkdirat(dev_fd, name, mode) != 0) {
    if (errno != EEXIST) return Errno();
    // Only directories made here: a link of the default set is never one.
    struct stat st {};
    if (fstatat(dev_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return Errno();
    return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
  }
  if (fchmodat(dev_fd, name, mode, 0) != 0) return Errno();
  return 0;
}

}  // namespace

SC_CLONE_CHILD_CODE int PopulateDev(int dev_fd, const DevNode* extra, size_t extra_count) {
  for (const DeviceNode& d : kDefaultDevices) {
    if (int err = MakeNode(dev_fd, d.name, S_IFCHR | 0666, makedev(d.major, d.minor), 0, 0);
        err != 0) {
      return err;
    }
  }
  for (const DevLink& l : kDefaultDevLinks) {
    if (symlinkat(l.target, dev_fd, l.name) != 0) return Errno();
  }
  for (const char* dir : kDefaultDevDirs) {
    if (int err = MakeDir(dev_fd, dir, strcmp(dir, "shm") == 0 ? 01777 : 0755); err != 0) {
      return err;
    }
  }
  for (size_t i = 0; i < extra_count; ++i) {
    const DevNode& n = extra[i];
    char parent[sizeof(n.name)];
    const char* slash = strchr(n.name, '/');
    if (slash != nullptr) {
      size_t len = static_cast<size_t>(slash - n.name);
      memcpy(parent, n.name, len);
      parent[len] = '\0';
      if (int err = MakeDir(dev_fd, parent, 0755); err != 0) return err;
    }
    if (int err = MakeNode(dev_fd, n.name, n.mode, n.rdev, n.uid, n.gid); err != 0) return err;
  }
  return 0;
}

}  // namespace sc
