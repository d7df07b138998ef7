#ifndef DAEMON_BASE_CONFIG_H_
#define DAEMON_BASE_CONFIG_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace sc {

// The daemon's listening socket (listener.h).
struct SocketOptions {
  std::string path;
  mode_t mode = 0660;
  gid_t gid = 0;
  int backlog = 128;
  // A connection is handed on only once it has sent its first bytes (a gRPC
  // client sends the HTTP/2 preface at once); one that has sent nothing
  // after this long is closed. Until then it costs one fd and no thread.
  int handshake_timeout_ms = 5000;
  // Connections waiting for their first bytes, in all and per uid: past
  // either, the oldest of them is closed.
  int max_pending = 1024;
  int max_pending_per_uid = 64;
};

// Prometheus metrics over HTTP (metrics.h).
struct MetricsOptions {
  // "HOST:PORT" or ":PORT" (every IPv4 address); port 0 takes a free one.
  std::string address;
  // At most this many pods get a series of their own in
  // sc_mount_helper_exec_sessions_per_pod; the rest are summed as "other".
  int pod_series = 10;
  // For instances by state.
  std::string instance_base;
};

// Everything the daemon is told by its flags (see main.cc for the docs).
struct DaemonConfig {
  SocketOptions socket;
  std::string audit_log_path;  // "" = stderr
  std::string log_level = "info";
  absl::Duration shutdown_grace = absl::Seconds(10);
  int max_message_bytes = 4 << 20;
  // When >= 0, "READY\n" is written to this fd once the daemon serves, and the
  // fd is closed: a supervisor or test waits on it instead of polling.
  int ready_fd = -1;

  // Rootfs lifecycle.
  std::string instance_base;             // <base>/<namespace>/<name>/
  std::vector<std::string> layer_roots;  // where explicit lower layers may live
  std::vector<std::string> bind_roots;   // where bind-mount sources may live
  absl::Duration provider_wait = absl::Seconds(30);
  absl::Duration provider_wait_max = absl::Minutes(5);
  // What one pod may hold at once: rootfs calls in flight, provider waits
  // among them.
  int max_calls_per_pod = 16;
  int max_provider_waits_per_pod = 2;

  // Connections: at most this many open per pod (per uid for callers that
  // are not in a pod); see also SocketOptions::handshake_timeout_ms.
  int max_connections_per_pod = 256;

  // Exec.
  std::string pod_rootfs_path;  // where pods see their rootfs
  int max_execs_total = 1024;
  int max_execs_per_pod = 64;
  absl::Duration exec_kill_grace = absl::Seconds(5);
  // pids.max of the cgroup all operator execs share (operator_cgroup.h).
  int64_t operator_exec_pids_max = 1024;

  // Prometheus metrics over HTTP; off while metrics.address is empty.
  MetricsOptions metrics;
};

}  // namespace sc

#endif  // DAEMON_BASE_CONFIG_H_
