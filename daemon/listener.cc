#include "daemon/listener.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "daemon/fs_util.h"
#include "spdlog/spdlog.h"

namespace sc {
namespace {

absl::StatusOr<sockaddr_un> SocketAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path must be 1 to ", sizeof(addr.sun_path) - 1, " bytes: ", path));
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// True when something accepts connections on `path`.
bool SomeoneListens(const sockaddr_un& addr) {
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return false;
  return connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Create(const SocketOptions& opt) {
  absl::StatusOr<sockaddr_un> addr = SocketAddress(opt.path);
  if (!addr.ok()) return addr.status();
  std::unique_ptr<UnixListener> l(new UnixListener());
  l->path_ = opt.path;

  std::filesystem::path dir = std::filesystem::path(opt.path).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot create socket directory ", dir.string(), ": ", ec.message()));
    }
  }

  // The lock outlives crashes correctly: the kernel drops it with the process.
  std::string lock_path = opt.path + ".lock";
  l->lock_fd_.reset(open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!l->lock_fd_) return ErrnoStatus(errno, absl::StrCat("open ", lock_path));
  if (flock(l->lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return ErrnoStatus(errno, absl::StrCat("flock ", lock_path));
    absl::StatusOr<std::string> holder = ReadFileAt(AT_FDCWD, lock_path.c_str(), 64);
    std::string who = holder.ok() ? std::string(absl::StripAsciiWhitespace(*holder)) : "?";
    return absl::AlreadyExistsError(absl::StrCat("another sc-mount-helper (pid ", who,
                                                 ") is serving ", opt.path,
                                                 "; stop it first or choose another --socket"));
  }
  std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(l->lock_fd_.get(), 0) != 0 ||
      pwrite(l->lock_fd_.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return ErrnoStatus(errno, absl::StrCat("write ", lock_path));
  }

  struct stat st {};
  if (lstat(opt.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(opt.path, " exists and is not a socket; refusing to replace it"));
    }
    // A daemon without our lock (an older version) may still be serving it.
    if (SomeoneListens(*addr)) {
      return absl::AlreadyExistsError(absl::StrCat("another process is listening on ", opt.path));
    }
    if (unlink(opt.path.c_str()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("remove stale socket ", opt.path));
    }
    spdlog::warn("removed stale socket {} left by a previous daemon", opt.path);
  } else if (errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("lstat ", opt.path));
  }

  l->listen_fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!l->listen_fd_) return ErrnoStatus(errno, "socket(AF_UNIX)");
  // Start-up is single-threaded, so the process-wide umask can be narrowed
  // around bind(): the socket never exists with a wider mode than asked.
  mode_t old_umask = umask(0777 & ~opt.mode);
  int bound = bind(l->listen_fd_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  int bind_errno = errno;
  umask(old_umask);
  if (bound != 0) return ErrnoStatus(bind_errno, absl::StrCat("bind ", opt.path));
  if (lstat(opt.path.c_str(), &st) != 0)
    return ErrnoStatus(errno, absl::StrCat("lstat ", opt.path));
  l->socket_dev_ = st.st_dev;
  l->socket_ino_ = st.st_ino;
  if (lchown(opt.path.c_str(), 0, opt.gid) != 0) {
    return ErrnoStatus(errno, absl::StrCat("chown ", opt.path));
  }
  if (chmod(opt.path.c_str(), opt.mode) != 0) {
    return ErrnoStatus(errno, absl::StrCat("chmod ", opt.path));
  }
  if (listen(l->listen_fd_.get(), opt.backlog) != 0) {
    return ErrnoStatus(errno, absl::StrCat("listen ", opt.path));
  }
  l->stop_event_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!l->stop_event_) return ErrnoStatus(errno, "eventfd");
  return l;
}

UnixListener::~UnixListener() {
  Stop();
  RemoveSocket();
}

void UnixListener::Start(std::function<void(UniqueFd)> on_accept, std::function<void()> on_idle) {
  on_accept_ = std::move(on_accept);
  on_idle_ = std::move(on_idle);
  thread_ = std::thread([this] { AcceptLoop(); });
}

void UnixListener::Stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    if (write(stop_event_.get(), &one, sizeof(one)) != sizeof(one)) {
      spdlog::error("{}", ErrnoMessage(errno, "wake the accept thread"));
    }
    thread_.join();
  }
  // Closing the listening socket makes the kernel refuse what is queued.
  listen_fd_.reset();
}

void UnixListener::RemoveSocket() {
  if (socket_ino_ == 0) return;
  struct stat st {};
  if (lstat(path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ && st.st_ino == socket_ino_) {
    if (unlink(path_.c_str()) != 0) {
      spdlog::error("{}", ErrnoMessage(errno, absl::StrCat("remove socket ", path_)));
    }
  }
  socket_ino_ = 0;
}

void UnixListener::AcceptLoop() {
  pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_event_.get(), POLLIN, 0}};
  while (true) {
    int ready = poll(fds, 2, 1000);
    if (ready < 0) {
      if (errno == EINTR) continue;
      spdlog::critical("{}", ErrnoMessage(errno, "poll on the listening socket"));
      return;
    }
    if (fds[1].revents != 0) return;
    if (ready == 0 || (fds[0].revents & POLLIN) == 0) {
      if (on_idle_) on_idle_();
      continue;
    }
    UniqueFd conn(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      // EMFILE and friends: keep serving the connections we have.
      spdlog::error("{}", ErrnoMessage(errno, "accept"));
      poll(nullptr, 0, 100);
      continue;
    }
    on_accept_(std::move(conn));
  }
}

}  // namespace sc
