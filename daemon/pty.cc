#include "daemon/pty.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/fs_util.h"

namespace sc {
namespace {

// Opens the ptmx at `path` under `root_fd`, or explains why not.
absl::StatusOr<UniqueFd> OpenPtmxAt(int root_fd, const char* path) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  UniqueFd pathfd(static_cast<int>(syscall(SYS_openat2, root_fd, path, &how, sizeof(how))));
  if (!pathfd) return ErrnoStatus(errno, absl::StrCat("open ", path));
  struct stat st {};
  if (fstat(pathfd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", path));
  if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 || minor(st.st_rdev) != 2) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not the ptmx device"));
  }
  // Reopening the O_PATH fd through /proc opens exactly the inode checked.
  std::string self = absl::StrCat("/proc/self/fd/", pathfd.get());
  UniqueFd master(open(self.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
  if (!master) return ErrnoStatus(errno, absl::StrCat("open ", path));
  return master;
}

}  // namespace

absl::StatusOr<Pty> OpenPty(int rootfs_fd, int peer_root_fd, const winsize& size) {
  absl::StatusOr<UniqueFd> master = OpenPtmxAt(rootfs_fd, "dev/pts/ptmx");
  std::string tried = master.ok() ? "" : std::string(master.status().message());
  if (!master.ok()) master = OpenPtmxAt(rootfs_fd, "dev/ptmx");
  if (!master.ok() && peer_root_fd >= 0) {
    absl::StrAppend(&tried, "; ", master.status().message());
    master = OpenPtmxAt(peer_root_fd, "dev/pts/ptmx");
  }
  if (!master.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot allocate a terminal from the caller's devpts (", tried, "; ",
                     master.status().message(), "): mount devpts at <rootfs>/dev/pts"));
  }
  Pty pty;
  pty.master = *std::move(master);
  int unlock = 0;
  if (ioctl(pty.master.get(), TIOCSPTLCK, &unlock) != 0) {
    return ErrnoStatus(errno, "unlock the pty (TIOCSPTLCK)");
  }
  pty.slave.reset(ioctl(pty.master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty.slave) return ErrnoStatus(errno, "open the pty's slave (TIOCGPTPEER)");
  if (ioctl(pty.master.get(), TIOCSWINSZ, &size) != 0) {
    return ErrnoStatus(errno, "set the terminal size (TIOCSWINSZ)");
  }
  return pty;
}

}  // namespace sc
