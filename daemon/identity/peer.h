#ifndef DAEMON_IDENTITY_PEER_H_
#define DAEMON_IDENTITY_PEER_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"
#include "daemon/identity/cgroup.h"

namespace sc {

enum class PeerKind { kUnknown, kOperator, kPod };
const char* PeerKindName(PeerKind kind);

// How Peer::FromSocket pins the connecting process:
//   kSoPeerPidfd    the socket's own pidfd (SO_PEERPIDFD, Linux 6.5).
//   kPidfdOpenProof pidfd_open() of SO_PEERCRED's pid, then proof that the
//                   process it pinned holds the connection's other end (its
//                   inode from sock_diag, found among /proc/<pid>/fd): a pid
//                   reused since connect() is not taken for the caller.
//   kNone           neither works (no SO_PEERPIDFD and no unix_diag): every
//                   caller is unknown.
enum class PeerPinning { kSoPeerPidfd, kPidfdOpenProof, kNone };
// For tests and for old-kernel emulation (--peer_pidfd=pidfd_open): use
// kPidfdOpenProof even where the kernel has SO_PEERPIDFD.
void ForcePeerPidfdOpen();
// What this kernel (and ForcePeerPidfdOpen) makes FromSocket use, with the
// reason when it is kNone; probed once. For the start-up log.
PeerPinning PeerPinningInUse(std::string* why_none = nullptr);
const char* PeerPinningName(PeerPinning pinning);

// The process at the other end of a connection, as the kernel reported it at
// accept time, pinned so that a recycled pid can never stand in for it.
class Peer {
 public:
  // Reads SO_PEERCRED (and SO_PEERPIDFD where the kernel has it; else see
  // PeerPinning::kPidfdOpenProof) from a connected Unix socket and derives
  // the identity. A peer whose identity
  // cannot be derived is still returned, as kUnknown with a reason, so that
  // its calls are refused with that reason rather than a reset connection.
  static absl::StatusOr<std::shared_ptr<const Peer>> FromSocket(int conn_fd);

  pid_t pid() const { return pid_; }
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }
  PeerKind kind() const { return kind_; }
  bool is_operator() const { return kind_ == PeerKind::kOperator; }
  // The pod the process belongs to (set for kPod).
  const std::optional<PodCgroup>& pod() const { return pod_; }
  // Why the peer is kUnknown ("" otherwise).
  const std::string& unknown_reason() const { return unknown_reason_; }
  // kUnknown because the daemon ran out of fds or memory while it identified
  // the caller, who may be entitled (retrying can succeed).
  bool unknown_for_want_of_resources() const { return unknown_for_want_of_resources_; }
  // The policy's refusal of a call from a kUnknown peer (policy.h,
  // RefuseUnknown), `only_who` saying who may make it.
  absl::Status RefuseUnknown(absl::string_view only_who) const;
  bool pinned_by_socket() const { return pinned_by_socket_; }

  // A pidfd for the process: it stays valid (and refers to this process) even
  // after the pid is reused.
  int pidfd() const { return pidfd_.get(); }
  // An fd of /proc/<pid>, opened while the process was verified alive through
  // the pidfd, so every openat() on it reaches this process or fails.
  int proc_dir() const { return proc_dir_.get(); }

  // OK while the process is alive; FAILED_PRECONDITION once it has exited.
  absl::Status CheckAlive() const;
  // After a read of the caller's /proc failed (root, ns/*, cgroup, fds): a
  // live process has all of them, and the kernel takes them away while the
  // process exits, a moment before its pidfd turns readable (a wide moment
  // under emulation: seen on 6.1 in QEMU). So wait for that, at most
  // `wait_ms`, and then answer as CheckAlive does.
  absl::Status CheckAliveAfterProcFailure(int wait_ms = 200) const;

  // "pid 42 uid 1000 pod <uid>" / "pid 42 uid 0 operator", for messages.
  std::string Describe() const;

 private:
  Peer() = default;
  absl::Status Classify();

  pid_t pid_ = 0;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool pinned_by_socket_ = false;
  UniqueFd pidfd_;
  UniqueFd proc_dir_;
  PeerKind kind_ = PeerKind::kUnknown;
  std::optional<PodCgroup> pod_;
  std::string unknown_reason_;
  bool unknown_for_want_of_resources_ = false;
};

// Maps gRPC's name for a connection back to the peer recorded when it was
// accepted. gRPC C++ does not expose a Unix socket's credentials; a channel
// made with AddInsecureChannelFromFd(fd) reports its peer as "fd:<fd>".
//
// fd numbers are recycled by the kernel once gRPC closes a connection, so the
// listener moves every accepted fd to a number from a cycling range
// (Renumber): an entry can only be confused with a later connection after the
// whole range has been handed out again, and each entry also records the
// socket's inode, checked at every lookup.
class PeerRegistry {
 public:
  // `first_fd` and `span` define the cycling range of connection fds.
  PeerRegistry(int first_fd, int span);

  // Moves `conn_fd` to the next free number of the range (closing the
  // original) and returns the new fd.
  absl::StatusOr<UniqueFd> Renumber(UniqueFd conn_fd);

  void Add(int conn_fd, std::shared_ptr<const Peer> peer);

  // Looks up "fd:<n>" as returned by ServerContext::peer(). NOT_FOUND when the
  // connection is unknown or gone.
  absl::StatusOr<std::shared_ptr<const Peer>> Find(absl::string_view grpc_peer) const;

  // Forgets connections gRPC has closed, releasing their pidfds.
  void Sweep();

  // What connection limits count a peer under: its pod ("pod <uid>"), or its
  // uid when it is in no pod ("uid <n>").
  static std::string LimitKey(const Peer& peer);
  // Connections open under `key` (closed ones are swept first).
  size_t CountFor(const std::string& key);

  size_t size() const;

 private:
  struct Entry {
    ino_t socket_inode;
    std::shared_ptr<const Peer> peer;
    std::string limit_key;
  };
  void SweepLocked();
  const int first_fd_;
  const int span_;
  mutable std::mutex mu_;
  int next_fd_;
  std::map<int, Entry> entries_;
};

}  // namespace sc

#endif  // DAEMON_IDENTITY_PEER_H_
