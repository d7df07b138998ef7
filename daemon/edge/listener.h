#ifndef DAEMON_EDGE_LISTENER_H_
#define DAEMON_EDGE_LISTENER_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "daemon/base/config.h"

namespace sc {

// The daemon's listening Unix socket and the lock that makes it ours.
//
// Start-up: create the socket's directory, take an exclusive lock on
// "<path>.lock" (a second daemon fails here, naming the holder), remove a
// stale socket left by a crash (only a socket: any other file is an error),
// bind with a umask that never exposes it wider than `mode`, then chown/chmod.
class UnixListener {
 public:
  static absl::StatusOr<std::unique_ptr<UnixListener>> Create(const SocketOptions& options);
  ~UnixListener();

  int fd() const { return listen_fd_.get(); }
  const std::string& path() const { return path_; }

  // Accepts connections on a thread of its own until Stop(), handing each
  // (non-blocking, close-on-exec) fd to `on_accept` once it has data to read
  // (see SocketOptions::handshake_timeout_ms). `on_idle` runs about once a
  // second.
  void Start(std::function<void(UniqueFd)> on_accept, std::function<void()> on_idle);

  // Stops accepting and joins the thread. Queued connections are refused.
  void Stop();

  // Removes the socket file if it is still the one we bound. Idempotent.
  void RemoveSocket();

 private:
  UnixListener() = default;
  void AcceptLoop();

  struct Pending {
    UniqueFd fd;
    uid_t uid;
    int64_t deadline_ms;  // CLOCK_MONOTONIC
  };
  // Closes pending connections past their deadline, or the oldest ones while
  // there are more than the limits allow.
  void ExpirePending(int64_t now_ms);

  SocketOptions options_;
  std::vector<Pending> pending_;  // oldest first
  std::string path_;
  UniqueFd lock_fd_;
  UniqueFd listen_fd_;
  UniqueFd stop_event_;
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  std::function<void(UniqueFd)> on_accept_;
  std::function<void()> on_idle_;
  std::thread thread_;
};

}  // namespace sc

#endif  // DAEMON_EDGE_LISTENER_H_
