#include "daemon/identity/peer.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/syscalls.h"
#include "daemon/identity/policy.h"
#include "daemon/identity/sock_diag.h"
#include "spdlog/spdlog.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5
#endif

namespace sc {
namespace {

// Errors that say the daemon ran short while it identified a caller, not
// that the caller is nobody: the caller is told to retry, not that it is
// not entitled.
bool IsResourceShortage(int err) {
  return err == EMFILE || err == ENFILE || err == ENOMEM || err == EAGAIN;
}

std::atomic<bool> force_pidfd_open{false};

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

// Without SO_PEERPIDFD, SO_PEERCRED's pid names the process that called
// connect() only as long as that process has not exited: since then (and the
// daemon identifies a connection only at its first bytes, seconds later) the
// pid may be another process's, one that may be root in the daemon's
// namespaces. The process a pidfd_open() of that pid pinned is taken for the
// caller only if it holds the connection's other end: an fd of its (listed
// through `proc_dir`, its /proc/<pid>, opened while the pidfd was alive) is
// "socket:[<inode of the other end>]". A process that got a recycled pid
// holds that socket only if it was handed it, by inheritance or SCM_RIGHTS,
// by whoever held it: the caller's side.
//
// The scan runs on the accept thread and costs about 1.2-1.5 us per fd
// (10 000 fds: 12-15 ms, with or without ASan: the syscalls cost it), so it
// looks at no more than kMaxFdsLookedAt fds, in fd order: a caller with more
// (a pod's RLIMIT_NOFILE is often 1048576, and dup() is cheap) must not
// stall everyone else's connections for seconds.
constexpr int kMaxFdsLookedAt = 16384;

absl::Status HoldsConnectingSocket(int conn_fd, pid_t pid, int proc_dir) {
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<ino_t> other_end = UnixPeerInode(conn_fd);
  if (!other_end.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot prove that the process with pid ", pid,
        " holds the connecting socket, as the daemon must on kernels without SO_PEERPIDFD "
        "(Linux < 6.5): ",
        other_end.status().message()));
  }
  if (*other_end == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the connecting socket of pid ", pid, " was closed before it was identified"));
  }
  UniqueFd fd_dir(openat(proc_dir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd_dir) {
    return absl::FailedPreconditionError(
        ErrnoMessage(errno, absl::StrCat("open /proc/", pid, "/fd")));
  }
  const std::string want = absl::StrCat("socket:[", *other_end, "]");
  alignas(dirent64) char entries[32 * 1024];
  char target[64];
  int scanned = 0;
  while (true) {
    ssize_t n = getdents64(fd_dir.get(), entries, sizeof(entries));
    if (n < 0) {
      return absl::FailedPreconditionError(
          ErrnoMessage(errno, absl::StrCat("list /proc/", pid, "/fd")));
    }
    if (n == 0) break;
    for (ssize_t at = 0; at < n;) {
      const auto* entry = reinterpret_cast<const dirent64*>(entries + at);
      at += entry->d_reclen;
      if (entry->d_name[0] == '.') continue;
      if (++scanned > kMaxFdsLookedAt) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the process with pid ", pid, " holds more than ", kMaxFdsLookedAt,
            " fds and the connecting socket is not among its first ", kMaxFdsLookedAt,
            ": on kernels without SO_PEERPIDFD (Linux < 6.5) the daemon looks no further; "
            "connect with fewer fds open"));
      }
      // An fd closed since it was listed fails (ENOENT): not the one.
      ssize_t len = readlinkat(fd_dir.get(), entry->d_name, target, sizeof(target));
      if (len == static_cast<ssize_t>(want.size()) && std::memcmp(target, want.data(), len) == 0) {
        spdlog::debug("pid {} holds the connecting socket (its fd {}): {} fds looked at in {} us",
                      pid, entry->d_name, scanned,
                      std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count());
        return absl::OkStatus();
      }
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the process with pid ", pid, " does not hold the connecting socket (its pid was reused?); ",
      scanned, " fds looked at"));
}

// Which way this kernel pins callers, when not forced.
struct PinningProbe {
  PeerPinning pinning;
  std::string why_none;
};

PinningProbe ProbeFallback() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return {PeerPinning::kNone, ErrnoMessage(errno, "socketpair for the sock_diag probe")};
  }
  UniqueFd a(pair[0]), b(pair[1]);
  struct stat other {};
  if (fstat(b.get(), &other) != 0) {
    return {PeerPinning::kNone, ErrnoMessage(errno, "fstat for the sock_diag probe")};
  }
  absl::StatusOr<ino_t> seen = UnixPeerInode(a.get());
  if (!seen.ok()) return {PeerPinning::kNone, std::string(seen.status().message())};
  if (*seen != other.st_ino) {
    return {PeerPinning::kNone,
            absl::StrCat("sock_diag named socket ", *seen,
                         " as the other end of a socketpair, not ", other.st_ino)};
  }
  return {PeerPinning::kPidfdOpenProof, ""};
}

bool KernelHasSoPeerPidfd() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return false;
  UniqueFd a(pair[0]), b(pair[1]);
  int pidfd = -1;
  socklen_t len = sizeof(pidfd);
  if (getsockopt(a.get(), SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0) return false;
  UniqueFd owned(pidfd);
  return true;
}

}  // namespace

void ForcePeerPidfdOpen() { force_pidfd_open.store(true); }

PeerPinning PeerPinningInUse(std::string* why_none) {
  static const bool has_peer_pidfd = KernelHasSoPeerPidfd();
  if (has_peer_pidfd && !force_pidfd_open.load()) return PeerPinning::kSoPeerPidfd;
  static const PinningProbe fallback = ProbeFallback();
  if (why_none != nullptr) *why_none = fallback.why_none;
  return fallback.pinning;
}

const char* PeerPinningName(PeerPinning pinning) {
  switch (pinning) {
    case PeerPinning::kSoPeerPidfd:
      return "SO_PEERPIDFD";
    case PeerPinning::kPidfdOpenProof:
      return "pidfd_open + sock_diag proof";
    case PeerPinning::kNone:
      break;
  }
  return "none";
}

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
  // 6.5, ENOPROTOOPT; or forced, --peer_pidfd=pidfd_open): open one from the
  // pid, then prove that the process it pins holds the connection
  // (HoldsConnectingSocket). Kernels 6.5 to 6.15 answer EINVAL for a peer that has
  // exited and been reaped: its pid may already be someone else's, so it must
  // not be opened by number.
  int pidfd = -1;
  len = sizeof(pidfd);
  int got = -1;
  if (force_pidfd_open.load()) {
    errno = ENOPROTOOPT;  // as a kernel before 6.5 answers
  } else {
    got = getsockopt(conn_fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len);
  }
  if (got == 0) {
    peer->pidfd_.reset(pidfd);
    peer->pinned_by_socket_ = true;
  } else if (errno == EINVAL) {
    peer->unknown_reason_ =
        absl::StrCat("the calling process (pid ", cred.pid, ") has exited (SO_PEERPIDFD: EINVAL)");
    return std::shared_ptr<const Peer>(std::move(peer));
  } else if (errno == ENOPROTOOPT) {
    peer->pidfd_.reset(PidfdOpen(cred.pid, 0));
    if (!peer->pidfd_) {
      peer->unknown_for_want_of_resources_ = IsResourceShortage(errno);
      peer->unknown_reason_ = errno == ESRCH ? absl::StrCat("the calling process (pid ", cred.pid,
                                                            ") has exited (pidfd_open)")
                                             : ErrnoMessage(errno, "pidfd_open(peer)");
      return std::shared_ptr<const Peer>(std::move(peer));
    }
  } else {
    peer->unknown_for_want_of_resources_ = IsResourceShortage(errno);
    peer->unknown_reason_ = ErrnoMessage(errno, "getsockopt(SO_PEERPIDFD)");
    return std::shared_ptr<const Peer>(std::move(peer));
  }

  std::string proc = absl::StrCat("/proc/", cred.pid);
  peer->proc_dir_.reset(open(proc.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!peer->proc_dir_) {
    peer->unknown_for_want_of_resources_ = IsResourceShortage(errno);
    peer->unknown_reason_ = ErrnoMessage(errno, absl::StrCat("open ", proc));
    return std::shared_ptr<const Peer>(std::move(peer));
  }
  // The pid cannot have been reused while the process the pidfd pins is
  // alive, so the /proc directory just opened is that process's.
  if (absl::Status alive = peer->CheckAlive(); !alive.ok()) {
    peer->unknown_reason_ = std::string(alive.message());
    return std::shared_ptr<const Peer>(std::move(peer));
  }
  if (!peer->pinned_by_socket_) {
    // Opened from the pid: the process pinned is the caller only if it holds
    // the connection (checked while alive, so through its own /proc).
    absl::Status held = HoldsConnectingSocket(conn_fd, cred.pid, peer->proc_dir_.get());
    if (held.ok()) held = peer->CheckAlive();
    if (!held.ok()) {
      peer->unknown_reason_ = std::string(held.message());
      peer->unknown_for_want_of_resources_ = held.code() == absl::StatusCode::kResourceExhausted;
      return std::shared_ptr<const Peer>(std::move(peer));
    }
  }
  if (absl::Status classified = peer->Classify(); !classified.ok()) {
    peer->kind_ = PeerKind::kUnknown;
    peer->unknown_reason_ = std::string(classified.message());
    peer->unknown_for_want_of_resources_ =
        classified.code() == absl::StatusCode::kResourceExhausted;
  }
  return std::shared_ptr<const Peer>(std::move(peer));
}

absl::Status Peer::RefuseUnknown(absl::string_view only_who) const {
  return sc::RefuseUnknown(only_who, unknown_reason_, unknown_for_want_of_resources_);
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
  // A pidfd is readable once its process has exited, reaped or not; signal
  // 0 still reaches a zombie, whose /proc/<pid>/root, ns and fds are gone.
  pollfd exited{pidfd_.get(), POLLIN, 0};
  if (poll(&exited, 1, 0) == 1 && (exited.revents & POLLIN) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the calling process (pid ", pid_, ") has exited"));
  }
  if (PidfdSendSignal(pidfd_.get(), 0, nullptr, 0) != 0) {
    if (errno == ESRCH) {
      return absl::FailedPreconditionError(
          absl::StrCat("the calling process (pid ", pid_, ") has exited"));
    }
    return ErrnoStatus(errno, "pidfd_send_signal(peer, 0)");
  }
  return absl::OkStatus();
}

absl::Status Peer::CheckAliveAfterProcFailure(int wait_ms) const {
  if (pidfd_) {
    pollfd exited{pidfd_.get(), POLLIN, 0};
    while (poll(&exited, 1, wait_ms) < 0 && errno == EINTR) {
    }
  }
  return CheckAlive();
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
