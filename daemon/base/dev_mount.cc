#include "daemon/base/dev_mount.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "daemon/base/clone_on_stack.h"
#include "daemon/base/container_spec.h"

namespace sc {
namespace {

// What a runtime puts in every container's /dev, so nothing a pod was given:
// the default set, and the terminal a tty container gets as its console.
SC_CLONE_CHILD_CODE bool IsDefaultName(const char* name) {
  for (const DeviceNode& d : kDefaultDevices) {
    if (strcmp(name, d.name) == 0) return true;
  }
  for (const DevLink& l : kDefaultDevLinks) {
    if (strcmp(name, l.name) == 0) return true;
  }
  for (const char* dir : kDefaultDevDirs) {
    if (strcmp(name, dir) == 0) return true;
  }
  return strcmp(name, "console") == 0 || strcmp(name, "core") == 0;
}

struct Dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

struct Scan {
  DevNode* nodes;
  size_t capacity;
  size_t count = 0;
};

// Adds the device nodes of directory `dir_fd` (named `prefix` below /dev, ""
// for /dev itself); at the top, descends one level. 0 or errno.
SC_CLONE_CHILD_CODE int ScanDir(int dir_fd, const char* prefix, Scan* scan) {
  alignas(8) char buf[4096];
  while (true) {
    long n = syscall(SYS_getdents64, dir_fd, buf, sizeof(buf));
    if (n < 0) return errno;
    if (n == 0) return 0;
    for (long off = 0; off < n;) {
      const Dirent64* d = reinterpret_cast<const Dirent64*>(buf + off);
      off += d->d_reclen;
      const char* name = d->d_name;
      if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
      if (prefix[0] == '\0' && IsDefaultName(name)) continue;
      struct stat st {};
      if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // gone meanwhile
        return errno;
      }
      if (S_ISDIR(st.st_mode) && prefix[0] == '\0') {
        UniqueFd sub(openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) return errno;
        if (int err = ScanDir(sub.get(), name, scan); err != 0) return err;
        continue;
      }
      if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) continue;
      if (scan->count == scan->capacity) return E2BIG;
      DevNode& node = scan->nodes[scan->count];
      size_t plen = strlen(prefix);
      size_t nlen = strlen(name);
      size_t total = plen + (plen > 0 ? 1 : 0) + nlen;
      if (total >= sizeof(node.name)) return ENAMETOOLONG;
      char* out = node.name;
      if (plen > 0) {
        memcpy(out, prefix, plen);
        out[plen] = '/';
        out += plen + 1;
      }
      memcpy(out, name, nlen + 1);
      node.mode = st.st_mode & (S_IFMT | 07777);
      node.rdev = st.st_rdev;
      node.uid = st.st_uid;
      node.gid = st.st_gid;
      ++scan->count;
    }
  }
}

SC_CLONE_CHILD_CODE bool HasAll(int dev_fd, const Scan& scan) {
  for (size_t i = 0; i < scan.count; ++i) {
    struct stat st {};
    const DevNode& n = scan.nodes[i];
    if (fstatat(dev_fd, n.name, &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
    if ((st.st_mode & S_IFMT) != (n.mode & S_IFMT) || st.st_rdev != n.rdev) return false;
  }
  return true;
}

// A detached clone of the mount on `name` in `dev_fd`, -1 when none is there.
SC_CLONE_CHILD_CODE int CloneMountOn(int dev_fd, const char* name, int* err) {
  *err = 0;
  int mounted = IsMountPointBeneath(dev_fd, name);
  if (mounted != 1) {
    if (mounted < 0 && mounted != -ENOENT) *err = -mounted;
    return -1;
  }
  int fd = CloneTree(dev_fd, name);
  if (fd < 0) *err = errno;
  return fd;
}

}  // namespace

SC_CLONE_CHILD_CODE int MountPodDevIfNeeded(int rootfs_fd, DevNode* scratch, size_t capacity) {
  // The mount namespace's root is the caller's container's.
  Scan scan{scratch, capacity};
  UniqueFd pod_dev(open("/dev", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (pod_dev) {
    if (int err = ScanDir(pod_dev.get(), "", &scan); err != 0) return err;
  } else if (errno != ENOENT && errno != ENOTDIR) {
    return errno;
  }
  UniqueFd dev(openat(rootfs_fd, "dev", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (!dev) return errno == ENOENT ? 0 : errno;
  // A container's /dev is a read-only tmpfs; the node's (bound in by an
  // older daemon, still in the view of a pod that started before the
  // instance was converted) is not.
  struct statfs fs {};
  if (fstatfs(dev.get(), &fs) != 0) return errno;
  bool container_dev = fs.f_type == TMPFS_MAGIC && (fs.f_flags & ST_RDONLY) != 0;
  if (container_dev && HasAll(dev.get(), scan)) return 0;

  static const char* const kMode[] = {"mode", "0755", nullptr};
  UniqueFd own(NewDetachedMount("tmpfs", kMode, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
  if (!own) return errno;
  if (int err = PopulateDev(own.get(), scan.nodes, scan.count); err != 0) return err;
  if (int err = SetAttrs(own.get(), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
      err != 0) {
    return err;
  }
  int err = 0;
  UniqueFd pts(CloneMountOn(dev.get(), "pts", &err));
  if (err != 0) return err;
  UniqueFd shm(CloneMountOn(dev.get(), "shm", &err));
  if (err != 0) return err;
  if (int e = AttachAt(own.get(), dev.get(), ""); e != 0) return e;
  if (pts) {
    if (int e = AttachAt(pts.get(), own.get(), "pts"); e != 0) return e;
  }
  if (shm) {
    if (int e = AttachAt(shm.get(), own.get(), "shm"); e != 0) return e;
  }
  return 0;
}

SC_CLONE_CHILD_CODE int MountOwnMqueueIfNeeded(int rootfs_fd) {
  UniqueFd dev(openat(rootfs_fd, "dev", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (!dev) return errno == ENOENT ? 0 : errno;
  UniqueFd dir(openat(dev.get(), "mqueue", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return errno == ENOENT ? 0 : errno;
  static const char* const kNoOptions[] = {nullptr};
  // One mqueue superblock per IPC namespace: a new mount of it shows the
  // device number of one mounted before.
  UniqueFd mq(NewDetachedMount("mqueue", kNoOptions,
                               MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  if (!mq) return errno;
  struct stat want {};
  struct stat have {};
  if (fstat(mq.get(), &want) != 0 || fstat(dir.get(), &have) != 0) return errno;
  if (want.st_dev == have.st_dev) return 0;
  return AttachAt(mq.get(), dir.get(), "");
}

}  // namespace sc
