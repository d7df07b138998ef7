#include "daemon/base/proc_mount.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/syscall.h>
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

SC_CLONE_CHILD_CODE int FinishProc(int proc_fd, int* null_tree) {
  if (int err = MaskPaths(proc_fd, kMaskedProcPaths, std::size(kMaskedProcPaths), null_tree);
      err != 0) {
    return err;
  }
  return ReadOnlyOverSelf(proc_fd, kReadOnlyProcPaths, std::size(kReadOnlyProcPaths));
}

SC_CLONE_CHILD_CODE int MountOwnProcIfNeeded(int rootfs_fd, int* null_tree) {
  // Not following a symlink: the rootfs is the workload's to write, but a
  // mount point cannot be replaced while the rootfs's proc is on it.
  UniqueFd dir(openat(rootfs_fd, "proc", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    if (errno == ENOENT) return 0;
    return errno;
  }
  // Finished by an earlier exec into this mount namespace (an older daemon's
  // lacks the masks: it gets a new one on top).
  if (ProcIsOurs(rootfs_fd) && IsMountPointBeneath(dir.get(), "sys") == 1 &&
      AllMountedBeneath(dir.get(), kMaskedProcPaths, std::size(kMaskedProcPaths))) {
    return 0;
  }
  static const char* const kNoOptions[] = {nullptr};
  UniqueFd proc(NewDetachedMount("proc", kNoOptions,
                                 MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  if (!proc) return errno;
  if (int err = AttachAt(proc.get(), dir.get(), ""); err != 0) return err;
  return FinishProc(proc.get(), null_tree);
}

}  // namespace sc
