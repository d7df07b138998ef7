#include "daemon/exec/caller_fds.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/syscalls.h"
#include "daemon/exec/exec_session.h"

namespace sc {
namespace {

enum class Access { kRead, kWrite };

// Whether `addr` names the daemon's socket path.
bool IsDaemonAddress(const sockaddr_un& addr, socklen_t len, const std::string& daemon_socket) {
  if (addr.sun_family != AF_UNIX || len <= offsetof(sockaddr_un, sun_path)) return false;
  size_t path_len = strnlen(addr.sun_path, len - offsetof(sockaddr_un, sun_path));
  return !daemon_socket.empty() && std::string(addr.sun_path, path_len) == daemon_socket;
}

absl::StatusOr<UniqueFd> TakeOne(const Peer& peer, const char* field, int number, Access access,
                                 bool pipe_only, const std::string& daemon_socket) {
  auto what = [&] { return absl::StrCat("by_reference.", field, " (fd ", number, ")"); };
  // ValidateExecStart refuses these first; kept for any other caller.
  if (number < 0 || number >= kMaxCallerFd) {
    return absl::InvalidArgumentError(
        absl::StrCat("by_reference.", field, ": ", number, " is not an fd number"));
  }
  UniqueFd fd(PidfdGetfd(peer.pidfd(), number, 0));
  if (!fd) {
    int err = errno;
    // Before Linux 6.9 an exiting caller whose fd table is already gone (a
    // zombie, say) gives EBADF for every number, not ESRCH: that is the
    // caller's exit, not a wrong number.
    if (err == EBADF && !peer.CheckAliveAfterProcFailure().ok()) err = ESRCH;
    if (err == EBADF) {
      return absl::InvalidArgumentError(
          absl::StrCat(what(), " is not open in the caller (pid ", peer.pid(), ")"));
    }
    if (err == ESRCH) {
      return absl::FailedPreconditionError(
          absl::StrCat("the caller (pid ", peer.pid(), ") exited before its fds were taken"));
    }
    return ErrnoStatus(err, absl::StrCat("pidfd_getfd ", what()));
  }
  int flags = fcntl(fd.get(), F_GETFL);
  if (flags < 0) return ErrnoStatus(errno, absl::StrCat("fcntl(F_GETFL) of ", what()));
  if (flags & O_PATH) {
    return absl::InvalidArgumentError(
        absl::StrCat(what(), " is an O_PATH fd, which cannot be read or written"));
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", what()));
  if (S_ISDIR(st.st_mode))
    return absl::InvalidArgumentError(absl::StrCat(what(), " is a directory"));
  if (pipe_only && !S_ISFIFO(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(what(), " must be a pipe"));
  }
  int mode = flags & O_ACCMODE;
  bool ok = access == Access::kRead ? mode == O_RDONLY || mode == O_RDWR
                                    : mode == O_WRONLY || mode == O_RDWR;
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(what(), " is not open for ", access == Access::kRead ? "reading" : "writing"));
  }
  if (S_ISSOCK(st.st_mode)) {
    sockaddr_un addr{};
    socklen_t len = sizeof(addr);
    bool own = getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
               IsDaemonAddress(addr, len, daemon_socket);
    len = sizeof(addr);
    own = own || (getpeername(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
                  IsDaemonAddress(addr, len, daemon_socket));
    if (own) {
      return absl::PermissionDeniedError(
          absl::StrCat(what(),
                       " is the mount-helper's socket or a connection to it, which a workload "
                       "must not get"));
    }
  }
  return fd;
}

}  // namespace

absl::StatusOr<CallerStdio> TakeCallerStdio(const Peer& peer, const v1::StdioByReference& ref,
                                            bool tty, const std::string& daemon_socket) {
  if (peer.pidfd() < 0) {
    return absl::FailedPreconditionError(
        "stdio by reference needs the caller's pidfd, which this connection has none of; "
        "use the streaming Exec (sc-exec --stream)");
  }
  CallerStdio out;
  struct Role {
    const char* field;
    int number;
    Access access;
    bool pipe_only;
    UniqueFd* into;
  };
  Role roles[] = {
      {"stdin_fd", ref.stdin_fd(), Access::kRead, false, &out.in},
      {"stdout_fd", ref.stdout_fd(), Access::kWrite, false, &out.out},
      {"stderr_fd", ref.stderr_fd(), Access::kWrite, false, &out.err},
      {"status_fd", ref.status_fd(), Access::kWrite, true, &out.status},
      {"control_fd", ref.control_fd(), Access::kRead, true, &out.control},
  };
  for (Role& role : roles) {
    if (tty && role.into == &out.err) continue;
    absl::StatusOr<UniqueFd> fd =
        TakeOne(peer, role.field, role.number, role.access, role.pipe_only, daemon_socket);
    if (!fd.ok()) return fd.status();
    *role.into = *std::move(fd);
  }
  if (absl::Status alive = peer.CheckAlive(); !alive.ok()) return alive;
  return out;
}

}  // namespace sc
