#include "daemon/identity/sock_diag.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"
#include "daemon/base/fs_util.h"

namespace sc {
namespace {

constexpr int kAnswerTimeoutMs = 1000;

absl::Status MissingUnixDiag(int err, absl::string_view what) {
  return absl::UnimplementedError(absl::StrCat(
      "the kernel's Unix socket diagnostics are missing (CONFIG_UNIX_DIAG, module unix_diag; ",
      ErrnoMessage(err, what), ")"));
}

absl::StatusOr<UniqueFd> DiagSocketHere() {
  UniqueFd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (fd) return fd;
  if (errno == EPROTONOSUPPORT || errno == EAFNOSUPPORT) {
    return MissingUnixDiag(errno, "socket(AF_NETLINK, NETLINK_SOCK_DIAG)");
  }
  return ErrnoStatus(errno, "socket(AF_NETLINK, NETLINK_SOCK_DIAG)");
}

// A NETLINK_SOCK_DIAG socket in the network namespace `sock_fd` lives in.
// A netlink socket belongs to the namespace its creator was in at socket(),
// so when that is not ours a short-lived thread joins it (setns of a network
// namespace changes only the calling thread) and makes the socket there: the
// daemon's own threads never leave its namespace.
absl::StatusOr<UniqueFd> DiagSocketFor(int sock_fd) {
  UniqueFd netns(ioctl(sock_fd, SIOCGSKNS));
  if (!netns) return ErrnoStatus(errno, "ioctl(SIOCGSKNS) on a connection");
  struct stat theirs {
  }, mine{};
  if (fstat(netns.get(), &theirs) != 0) {
    return ErrnoStatus(errno, "fstat of a connection's network namespace");
  }
  if (stat("/proc/thread-self/ns/net", &mine) != 0) {
    return ErrnoStatus(errno, "stat /proc/thread-self/ns/net");
  }
  if (theirs.st_dev == mine.st_dev && theirs.st_ino == mine.st_ino) return DiagSocketHere();
  absl::StatusOr<UniqueFd> made = absl::InternalError("not run");
  std::thread joiner([&] {
    if (setns(netns.get(), CLONE_NEWNET) != 0) {
      made = ErrnoStatus(errno, "setns into a connection's network namespace");
      return;
    }
    made = DiagSocketHere();
  });
  joiner.join();
  return made;
}

}  // namespace

absl::StatusOr<ino_t> UnixPeerInode(int sock_fd) {
  struct stat st {};
  if (fstat(sock_fd, &st) != 0) return ErrnoStatus(errno, "fstat of a connection");
  if (!S_ISSOCK(st.st_mode)) return absl::InvalidArgumentError("not a socket");
  absl::StatusOr<UniqueFd> diag = DiagSocketFor(sock_fd);
  if (!diag.ok()) return diag.status();

  struct {
    nlmsghdr header;
    unix_diag_req body;
  } request{};
  request.header.nlmsg_len = sizeof(request);
  request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.header.nlmsg_flags = NLM_F_REQUEST;
  request.header.nlmsg_seq = 1;
  request.body.sdiag_family = AF_UNIX;
  request.body.udiag_states = ~0u;
  request.body.udiag_ino = static_cast<__u32>(st.st_ino);
  request.body.udiag_show = UDIAG_SHOW_PEER;
  // Exact lookups check the cookie unless it is "none".
  request.body.udiag_cookie[0] = INET_DIAG_NOCOOKIE;
  request.body.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(diag->get(), &request, sizeof(request), 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof(kernel)) != static_cast<ssize_t>(sizeof(request))) {
    return ErrnoStatus(errno, "sendto(NETLINK_SOCK_DIAG)");
  }

  // The kernel answers before sendto() returns; the wait is for safety only.
  pollfd pfd{diag->get(), POLLIN, 0};
  int ready;
  while ((ready = poll(&pfd, 1, kAnswerTimeoutMs)) < 0 && errno == EINTR) {
  }
  if (ready < 0) return ErrnoStatus(errno, "poll(NETLINK_SOCK_DIAG)");
  if (ready == 0) {
    return absl::UnavailableError(absl::StrCat("sock_diag did not answer within ", kAnswerTimeoutMs,
                                               " ms (CONFIG_UNIX_DIAG?)"));
  }
  alignas(nlmsghdr) char buffer[8192];
  ssize_t n;
  while ((n = recv(diag->get(), buffer, sizeof(buffer), MSG_DONTWAIT)) < 0 && errno == EINTR) {
  }
  if (n < 0) return ErrnoStatus(errno, "recv(NETLINK_SOCK_DIAG)");
  int len = static_cast<int>(n);
  for (auto* h = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
        return absl::InternalError("sock_diag: truncated error message");
      }
      int err = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
      if (err == 0) continue;
      // No unix_diag handler: ENOENT. (A socket unix_diag does not find is
      // also ENOENT, but ours is open, and asked of in its own namespace.)
      if (err == ENOENT || err == EOPNOTSUPP || err == EPROTONOSUPPORT) {
        return MissingUnixDiag(err, "sock_diag for AF_UNIX");
      }
      return ErrnoStatus(err, "sock_diag for AF_UNIX");
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg))) {
      return absl::InternalError("sock_diag: truncated unix_diag_msg");
    }
    const auto* msg = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
    if (msg->udiag_ino != request.body.udiag_ino) continue;
    int attrs_len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg)));
    auto* attr = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(NLMSG_DATA(h)) +
                                           NLMSG_ALIGN(sizeof(*msg)));
    for (; RTA_OK(attr, attrs_len); attr = RTA_NEXT(attr, attrs_len)) {
      if (attr->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(attr) >= sizeof(__u32)) {
        __u32 peer = 0;
        std::memcpy(&peer, RTA_DATA(attr), sizeof(peer));
        return static_cast<ino_t>(peer);
      }
    }
    // unix_diag leaves the attribute out when the socket has no peer.
    return static_cast<ino_t>(0);
  }
  return absl::InternalError(
      absl::StrCat("sock_diag did not describe socket inode ", request.body.udiag_ino));
}

}  // namespace sc
