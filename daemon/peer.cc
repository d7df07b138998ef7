#include "daemon/peer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "daemon/fs_util.h"
#include "daemon/syscalls.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5
#endif

namespace sc {
namespace {

// The namespaces that make a process "in the daemon's own namespaces". cgroup,
// uts, ipc and time do not grant anything over mounts or processes; these do.
constexpr const char* kOperatorNamespaces[] = {"user", "mnt", "pid", "net"};

absl::StatusOr<bool> SameNamespace(int peer_proc_dir, const char* ns) {
  std::string rel = absl::StrCat("ns/", ns);
  struct stat mine, theirs;
  if (stat(absl::StrCat("/proc/self/", rel).c_str(), &mine) != 0) {
    return ErrnoStatus(errno, absl::StrCat("stat /proc/self/", rel));
  }
  if (fstatat(peer_proc_dir, rel.c_str(), &theirs, 0) != 0) {
    return ErrnoStatus(errno, absl::StrCat("stat /proc/<peer>/", rel));
  }
  return mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino;
}

}  // namespace

const char* PeerKindName(PeerKind kind) {
  switch (kind) {
    case PeerKind::kOperator:
      return "operator";
    case PeerKind::kPod:
      return "pod";
    case PeerKind::kUnknown:
      break;
  }
  return "unknown";
}

absl::StatusOr<std::shared_ptr<const Peer>> Peer::FromSocket(int conn_fd) {
  std::shared_ptr<Peer> peer(new Peer());
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (getsockopt(conn_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoStatus(errno, "getsockopt(SO_PEERCRED)");
  }
  peer->pid_ = cred.pid;
  peer->uid_ = cred.uid;
  peer->gid_ = cred.gid;
  if (cred.pid <= 0) {
    // The peer is in a pid namespace we cannot see into.
    peer->unknown_reason_ = "the peer's pid is not visible in the daemon's pid namespace";
    return std::shared_ptr<const Peer>(std::move(peer));
  }

  // The socket's own pidfd names the process that connected, even if it has
  // exited and its pid was reused since. Kernels without SO_PEERPIDFD (before
  // 6.5, ENOPROTOOPT): open one from the pid, which leaves the window between
  // connect() and here. Kernels 6.5 to 6.15 answer EINVAL for a peer that has
  // exited and been reaped: its pid may already be someone else's, so it must
  // not be opened by number.
  int pidfd = -1;
  len = sizeof(pidfd);
  if (getsockopt(conn_fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0) {
    peer->pidfd_.reset(pidfd);
    peer->pinned_by_socket_ = true;
  } else if (errno == EINVAL) {
    peer->unknown_reason_ =
        absl::StrCat("the calling process (pid ", cred.pid, ") has exited (SO_PEERPIDFD: EINVAL)");
    return std::shared_ptr<const Peer>(std::move(peer));
  } else if (errno == ENOPROTOOPT) {
    peer->pidfd_.reset(PidfdOpen(cred.pid, 0));
    if (!peer->pidfd_) {
      peer->unknown_reason_ = ErrnoMessage(errno, "pidfd_open(peer)");
      return std::shared_ptr<const Peer>(std::move(peer));
    }
  } else {
    peer->unknown_reason_ = ErrnoMessage(errno, "getsockopt(SO_PEERPIDFD)");
    return std::shared_ptr<const Peer>(std::move(peer));
  }

  std::string proc = absl::StrCat("/proc/", cred.pid);
  peer->proc_dir_.reset(open(proc.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!peer->proc_dir_) {
    peer->unknown_reason_ = ErrnoMessage(errno, absl::StrCat("open ", proc));
    return std::shared_ptr<const Peer>(std::move(peer));
  }
  // The pid cannot have been reused while the process the pidfd pins is
  // alive, so the /proc directory just opened is that process's.
  if (absl::Status alive = peer->CheckAlive(); !alive.ok()) {
    peer->unknown_reason_ = std::string(alive.message());
    return std::shared_ptr<const Peer>(std::move(peer));
  }
  if (absl::Status classified = peer->Classify(); !classified.ok()) {
    peer->kind_ = PeerKind::kUnknown;
    peer->unknown_reason_ = std::string(classified.message());
  }
  return std::shared_ptr<const Peer>(std::move(peer));
}

absl::Status Peer::Classify() {
  bool same = true;
  for (const char* ns : kOperatorNamespaces) {
    absl::StatusOr<bool> s = SameNamespace(proc_dir_.get(), ns);
    if (!s.ok()) return s.status();
    same = same && *s;
  }
  if (same && uid_ == 0) {
    kind_ = PeerKind::kOperator;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> content = ReadFileAt(proc_dir_.get(), "cgroup", 64 * 1024);
  if (!content.ok()) return content.status();
  absl::StatusOr<std::vector<CgroupLine>> lines = ParseCgroupFile(*content);
  if (!lines.ok()) return lines.status();
  absl::StatusOr<PodCgroup> pod = PodFromCgroupLines(*lines);
  if (!pod.ok()) {
    return absl::Status(
        pod.status().code(),
        absl::StrCat("not an operator (", same ? "uid is not 0" : "not in the daemon's namespaces",
                     ") and not in a pod: ", pod.status().message()));
  }
  // The cgroup file was read while the process was alive (checked again here),
  // so it is this process's.
  if (absl::Status alive = CheckAlive(); !alive.ok()) return alive;
  pod_ = *std::move(pod);
  kind_ = PeerKind::kPod;
  return absl::OkStatus();
}

absl::Status Peer::CheckAlive() const {
  if (!pidfd_) return absl::FailedPreconditionError("the peer process is not pinned");
  if (PidfdSendSignal(pidfd_.get(), 0, nullptr, 0) != 0) {
    if (errno == ESRCH) {
      return absl::FailedPreconditionError(
          absl::StrCat("the calling process (pid ", pid_, ") has exited"));
    }
    return ErrnoStatus(errno, "pidfd_send_signal(peer, 0)");
  }
  return absl::OkStatus();
}

std::string Peer::Describe() const {
  std::string out = absl::StrCat("pid ", pid_, " uid ", uid_);
  switch (kind_) {
    case PeerKind::kOperator:
      absl::StrAppend(&out, " operator");
      break;
    case PeerKind::kPod:
      absl::StrAppend(&out, " pod ", pod_->pod_uid);
      break;
    case PeerKind::kUnknown:
      absl::StrAppend(&out, " unknown");
      break;
  }
  return out;
}

PeerRegistry::PeerRegistry(int first_fd, int span)
    : first_fd_(first_fd), span_(span), next_fd_(first_fd) {}

absl::StatusOr<UniqueFd> PeerRegistry::Renumber(UniqueFd conn_fd) {
  std::lock_guard<std::mutex> lock(mu_);
  // F_DUPFD takes the lowest free number at or above the hint, so a busy
  // number is skipped; wrap to the start of the range when past its end.
  int fd = fcntl(conn_fd.get(), F_DUPFD_CLOEXEC, next_fd_);
  if (fd >= first_fd_ + span_ || (fd < 0 && errno == EINVAL)) {
    if (fd >= 0) UniqueFd discard(fd);
    fd = fcntl(conn_fd.get(), F_DUPFD_CLOEXEC, first_fd_);
  }
  if (fd < 0) return ErrnoStatus(errno, "fcntl(F_DUPFD_CLOEXEC) for a connection");
  next_fd_ = fd + 1 >= first_fd_ + span_ ? first_fd_ : fd + 1;
  return UniqueFd(fd);
}

void PeerRegistry::Add(int conn_fd, std::shared_ptr<const Peer> peer) {
  struct stat st {};
  if (fstat(conn_fd, &st) != 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  std::string key = LimitKey(*peer);
  entries_[conn_fd] = Entry{st.st_ino, std::move(peer), std::move(key)};
}

absl::StatusOr<std::shared_ptr<const Peer>> PeerRegistry::Find(absl::string_view grpc_peer) const {
  int fd = -1;
  absl::string_view number = grpc_peer;
  // Exactly "fd:" and 1-9 digits: SimpleAtoi alone would accept " 7" or "7 ".
  bool digits = absl::ConsumePrefix(&number, "fd:") && !number.empty() && number.size() <= 9 &&
                std::all_of(number.begin(), number.end(), absl::ascii_isdigit);
  if (!digits || !absl::SimpleAtoi(number, &fd)) {
    return absl::NotFoundError(
        absl::StrCat("connection ", grpc_peer.substr(0, 64), " was not accepted by the daemon"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(fd);
  struct stat st {};
  if (it == entries_.end() || fstat(fd, &st) != 0 || st.st_ino != it->second.socket_inode) {
    return absl::NotFoundError(absl::StrCat("connection ", grpc_peer, " is gone"));
  }
  return it->second.peer;
}

void PeerRegistry::Sweep() {
  std::lock_guard<std::mutex> lock(mu_);
  SweepLocked();
}

std::string PeerRegistry::LimitKey(const Peer& peer) {
  if (peer.pod()) return absl::StrCat("pod ", peer.pod()->pod_uid);
  return absl::StrCat("uid ", peer.uid());
}

size_t PeerRegistry::CountFor(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  SweepLocked();
  size_t n = 0;
  for (const auto& [fd, entry] : entries_) n += entry.limit_key == key ? 1 : 0;
  return n;
}

void PeerRegistry::SweepLocked() {
  for (auto it = entries_.begin(); it != entries_.end();) {
    struct stat st {};
    if (fstat(it->first, &st) != 0 || st.st_ino != it->second.socket_inode) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t PeerRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace sc
