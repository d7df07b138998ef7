#include "daemon/exec/pty.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "daemon/base/fs_util.h"

namespace sc {
namespace {

// The kernel's reason for a failed fsconfig, kept in the fs context.
std::string ContextLog(int fs_fd) {
  char buf[512];
  ssize_t n = read(fs_fd, buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  std::string log(buf, static_cast<size_t>(n));
  while (!log.empty() && log.back() == '\n') log.pop_back();
  return log;
}

absl::Status FsError(int err, int fs_fd, absl::string_view what) {
  std::string log = ContextLog(fs_fd);
  return ErrnoStatus(err, log.empty() ? std::string(what) : absl::StrCat(what, " [", log, "]"));
}

// A new devpts instance as a detached mount: visible nowhere until attached.
absl::StatusOr<UniqueFd> NewDevpts(uid_t uid) {
  UniqueFd fs(fsopen("devpts", FSOPEN_CLOEXEC));
  if (!fs) return ErrnoStatus(errno, "fsopen(devpts) for the session's terminal");
  const std::string uid_text = absl::StrCat(uid);
  const std::string gid_text = absl::StrCat(kTtyGid);
  const std::pair<const char*, const char*> options[] = {
      {"ptmxmode", "0666"}, {"mode", "0620"}, {"gid", gid_text.c_str()}, {"uid", uid_text.c_str()}};
  // Every devpts mount is a new instance since Linux 4.7; the flag says so
  // to older readers of mountinfo.
  if (fsconfig(fs.get(), FSCONFIG_SET_FLAG, "newinstance", nullptr, 0) != 0) {
    return FsError(errno, fs.get(), "fsconfig(devpts, newinstance)");
  }
  for (const auto& [key, value] : options) {
    if (fsconfig(fs.get(), FSCONFIG_SET_STRING, key, value, 0) != 0) {
      return FsError(errno, fs.get(), absl::StrCat("fsconfig(devpts, ", key, "=", value, ")"));
    }
  }
  if (fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return FsError(errno, fs.get(), "create the session's devpts");
  }
  // As the instance's devpts: no setuid, no exec.
  UniqueFd mnt(fsmount(fs.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
  if (!mnt) return FsError(errno, fs.get(), "fsmount(devpts) for the session's terminal");
  return mnt;
}

}  // namespace

absl::StatusOr<Pty> OpenSessionPty(uid_t uid, const winsize& size) {
  absl::StatusOr<UniqueFd> devpts = NewDevpts(uid);
  if (!devpts.ok()) return devpts.status();
  Pty pty;
  pty.devpts = *std::move(devpts);
  // Our own fresh instance: nothing in it but its ptmx, which no one else
  // can reach.
  pty.master.reset(openat(pty.devpts.get(), "ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
  if (!pty.master) return ErrnoStatus(errno, "open the session's devpts's ptmx");
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
