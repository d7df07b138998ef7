#include "daemon/edge/listener.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/log_throttle.h"
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
  l->options_ = opt;
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

namespace {

int64_t MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

LogThrottle accept_errors;
LogThrottle closed_pending;

void LogClosedPending(const char* why, uid_t uid) {
  uint64_t held_back = 0;
  if (closed_pending.Allow(&held_back)) {
    spdlog::warn("closed a connection of uid {} that {} ({} more such closes not logged)", uid, why,
                 held_back);
  }
}

}  // namespace

void UnixListener::ExpirePending(int64_t now_ms) {
  std::map<uid_t, int> per_uid;
  for (const Pending& p : pending_) ++per_uid[p.uid];
  int total = static_cast<int>(pending_.size());
  std::vector<Pending> kept;
  kept.reserve(pending_.size());
  for (Pending& p : pending_) {
    if (p.deadline_ms <= now_ms) {
      LogClosedPending("sent nothing within the handshake timeout", p.uid);
    } else if (total > options_.max_pending || per_uid[p.uid] > options_.max_pending_per_uid) {
      LogClosedPending("was the oldest of too many silent connections", p.uid);
    } else {
      kept.push_back(std::move(p));
      continue;
    }
    --total;
    --per_uid[p.uid];
  }
  pending_ = std::move(kept);
}

void UnixListener::AcceptLoop() {
  std::vector<pollfd> fds;
  while (true) {
    int64_t now = MonotonicMs();
    ExpirePending(now);
    int timeout = 1000;
    for (const Pending& p : pending_) {
      timeout = static_cast<int>(std::min<int64_t>(timeout, p.deadline_ms - now));
    }
    fds.assign({{listen_fd_.get(), POLLIN, 0}, {stop_event_.get(), POLLIN, 0}});
    for (const Pending& p : pending_) fds.push_back({p.fd.get(), POLLIN, 0});
    int ready = poll(fds.data(), fds.size(), std::max(timeout, 0));
    if (ready < 0) {
      if (errno == EINTR) continue;
      spdlog::critical("{}", ErrnoMessage(errno, "poll on the listening socket"));
      return;
    }
    if (fds[1].revents != 0) return;
    if (ready == 0) {
      if (on_idle_) on_idle_();
      continue;
    }
    // Pending connections that spoke (or hung up: gRPC sees the end).
    std::vector<Pending> still;
    for (size_t i = 0; i < pending_.size(); ++i) {
      if (fds[i + 2].revents != 0) {
        on_accept_(std::move(pending_[i].fd));
      } else {
        still.push_back(std::move(pending_[i]));
      }
    }
    pending_ = std::move(still);
    if ((fds[0].revents & POLLIN) == 0) continue;
    UniqueFd conn(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      // EMFILE and friends: keep serving the connections we have.
      uint64_t held_back = 0;
      if (accept_errors.Allow(&held_back)) {
        spdlog::error("{} ({} more not logged)", ErrnoMessage(errno, "accept"), held_back);
      }
      poll(nullptr, 0, 100);
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      cred.uid = static_cast<uid_t>(-1);
    }
    pending_.push_back({std::move(conn), cred.uid, now + options_.handshake_timeout_ms});
  }
}

}  // namespace sc
