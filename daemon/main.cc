// sc-mount-helper: the StoppableContainer node daemon. Flags only; the work
// is in daemon_lib.
#include <grp.h>
#include <malloc.h>
#include <sys/sysinfo.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "common/defaults.h"
#include "daemon/base/config.h"
#include "daemon/edge/server.h"
#include "daemon/identity/peer.h"
#include "daemon/rootfs/mounts.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, socket, sc::kDefaultSocketPath,
          "Unix socket to serve on; its directory is created if missing");
ABSL_FLAG(std::string, socket_mode, "0660", "permission bits of the socket (octal)");
ABSL_FLAG(std::string, socket_group, "root", "group owning the socket (name or number)");
ABSL_FLAG(std::string, audit_log, "", "file to append the JSON audit log to (default: stderr)");
ABSL_FLAG(std::string, log_level, "info", "human log level: debug, info, warn, error");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "on SIGTERM/SIGINT, how long running calls may take before they are cancelled");
ABSL_FLAG(int, max_message_bytes, 4 << 20, "largest gRPC message accepted or sent");
ABSL_FLAG(int, ready_fd, -1,
          "write READY and a newline to this inherited fd once serving, then close it");
ABSL_FLAG(std::string, instance_base, sc::kDefaultInstanceBase,
          "directory holding <namespace>/<name>/{upper,work,rootfs} of each instance");
ABSL_FLAG(std::vector<std::string>, layer_root, {},
          "comma-separated directories that explicit lower layers must lie in "
          "(e.g. containerd's overlayfs snapshots directory)");
ABSL_FLAG(std::vector<std::string>, bind_root, {},
          "comma-separated directories that bind-mount sources must lie in");
ABSL_FLAG(absl::Duration, provider_wait, absl::Seconds(30),
          "default wait for a provider pod's ROOTFS_MARKER container");
ABSL_FLAG(absl::Duration, provider_wait_max, absl::Minutes(5),
          "longest provider wait a request may ask for");
ABSL_FLAG(int, max_calls_per_pod, 16,
          "most rootfs calls (PrepareRootfs, ReleaseRootfs, BindMount, GetInstance, "
          "ListInstances, CheckRootfs) one pod may have in flight at once");
ABSL_FLAG(int, max_provider_waits_per_pod, 2,
          "most PrepareRootfs calls one provider pod may have waiting for its rootfs container");
ABSL_FLAG(int, max_connections_per_pod, 256,
          "most open connections per pod (per uid for callers outside pods); more are closed");
ABSL_FLAG(absl::Duration, handshake_timeout, absl::Seconds(5),
          "a connection that has sent nothing this long after connecting is closed");
ABSL_FLAG(std::string, overlay_layers, "auto",
          "how overlayfs gets an instance's layers: auto (by fd where the kernel can, Linux "
          "6.13, else as /proc/self/fd/N paths), fd, or proc_fd_paths (for tests and to "
          "emulate older kernels)");
ABSL_FLAG(std::string, peer_pidfd, "auto",
          "how a caller's process is pinned: auto (SO_PEERPIDFD where the kernel has it, "
          "Linux 6.5, else pidfd_open of its pid, proven through sock_diag to hold the "
          "connection), or pidfd_open (that fallback always: for tests and to emulate older "
          "kernels)");
ABSL_FLAG(std::string, pod_rootfs, sc::kDefaultPodRootfsPath,
          "where pods see their instance's rootfs, in their own mount namespace");
ABSL_FLAG(int, max_execs, 1024,
          "most Exec calls at once in total: streaming sessions and starts (a by-reference "
          "session holds nothing of the daemon's once started)");
ABSL_FLAG(int, max_execs_per_pod, 64, "most Exec calls at once per pod, counted as --max_execs");
ABSL_FLAG(absl::Duration, exec_kill_grace, absl::Seconds(5),
          "after a client disconnects (a by-reference session's: the keeper's): SIGHUP, SIGTERM, "
          "then SIGKILL after this grace");
ABSL_FLAG(int64_t, operator_exec_pids_max, 1024,
          "pids.max of the cgroup that operators' execs (sc-exec --instance) share, below the "
          "daemon's own; it also limits their devices to the container default set");
ABSL_FLAG(std::string, metrics_address, "",
          "serve Prometheus metrics over HTTP (/metrics) on this address: HOST:PORT, or :PORT "
          "for every IPv4 address of the pod (e.g. 127.0.0.1:9464, :9464); never on the gRPC "
          "socket. Empty: no metrics, nothing counted");
ABSL_FLAG(int, metrics_pod_series, 10,
          "most pods with a series of their own in sc_mount_helper_exec_sessions_per_pod (those "
          "with the most sessions); the others are summed as pod_uid=\"other\"");

namespace {

[[noreturn]] void Usage(const std::string& message) {
  std::cerr << "sc-mount-helper: " << message << "\n";
  std::exit(2);
}

gid_t ParseGroup(const std::string& group) {
  uint32_t gid = 0;
  if (absl::SimpleAtoi(group, &gid)) return gid;
  struct group* entry = getgrnam(group.c_str());
  if (entry == nullptr) Usage("--socket_group: no such group: " + group);
  return entry->gr_gid;
}

}  // namespace

int main(int argc, char** argv) {
  // Exec output moves in messages of up to 1 MiB (stream_session.cc), each
  // block allocated and freed once or twice on its way. With glibc's default
  // thresholds such blocks come from mmap or the heap is trimmed after them,
  // and every message paid page faults and the zeroing of fresh pages (40%
  // of the daemon's CPU time while streaming). Keep them in the heap, but let
  // each arena keep no more than 4 MiB free at its top, and have one arena
  // per CPU instead of glibc's eight: what bursts of sessions leave behind is
  // free memory at the arenas' tops, which malloc_trim cannot return (256
  // sessions at once left 210 MB with 16 MiB and 16 arenas, ~80 MB with
  // 4 MiB, ~42 MB with 4 MiB and 2 arenas on 2 CPUs).
  mallopt(M_MMAP_THRESHOLD, 2 << 20);
  mallopt(M_TRIM_THRESHOLD, 4 << 20);
  mallopt(M_ARENA_MAX, std::max(2, get_nprocs()));
  absl::SetProgramUsageMessage(
      "The StoppableContainer mount-helper: serves overlayfs mounts, bind mounts "
      "and chroot exec over gRPC on a Unix socket.\nUsage: sc-mount-helper [flags]");
  // --help lists this file's flags (Abseil's default looks for a file named
  // after the binary, which matches none here); --helpfull adds Abseil's own.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "daemon/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);

  sc::DaemonConfig config;
  config.socket.path = absl::GetFlag(FLAGS_socket);
  uint32_t mode = 0;
  const std::string mode_text = absl::GetFlag(FLAGS_socket_mode);
  char* end = nullptr;
  mode = static_cast<uint32_t>(std::strtoul(mode_text.c_str(), &end, 8));
  if (mode_text.empty() || *end != '\0' || mode > 0777) {
    Usage("--socket_mode must be octal permission bits such as 0660, not " + mode_text);
  }
  config.socket.mode = mode;
  config.socket.gid = ParseGroup(absl::GetFlag(FLAGS_socket_group));
  config.audit_log_path = absl::GetFlag(FLAGS_audit_log);
  config.log_level = absl::GetFlag(FLAGS_log_level);
  config.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  config.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  config.ready_fd = absl::GetFlag(FLAGS_ready_fd);
  config.instance_base = absl::GetFlag(FLAGS_instance_base);
  config.layer_roots = absl::GetFlag(FLAGS_layer_root);
  config.bind_roots = absl::GetFlag(FLAGS_bind_root);
  config.provider_wait = absl::GetFlag(FLAGS_provider_wait);
  config.provider_wait_max = absl::GetFlag(FLAGS_provider_wait_max);
  config.max_calls_per_pod = absl::GetFlag(FLAGS_max_calls_per_pod);
  config.max_provider_waits_per_pod = absl::GetFlag(FLAGS_max_provider_waits_per_pod);
  config.max_connections_per_pod = absl::GetFlag(FLAGS_max_connections_per_pod);
  const absl::Duration handshake_timeout = absl::GetFlag(FLAGS_handshake_timeout);
  if (handshake_timeout <= absl::ZeroDuration() || handshake_timeout > absl::Hours(1)) {
    Usage("--handshake_timeout must be positive and at most 1h");
  }
  config.socket.handshake_timeout_ms =
      static_cast<int>(absl::ToInt64Milliseconds(handshake_timeout));
  const std::string overlay_layers = absl::GetFlag(FLAGS_overlay_layers);
  if (overlay_layers == "fd") {
    sc::ForceOverlayLayerPassing(sc::OverlayLayerPassing::kByFd);
  } else if (overlay_layers == "proc_fd_paths") {
    sc::ForceOverlayLayerPassing(sc::OverlayLayerPassing::kProcFdPaths);
  } else if (overlay_layers != "auto") {
    Usage("--overlay_layers must be auto, fd or proc_fd_paths, not " + overlay_layers);
  }
  const std::string peer_pidfd = absl::GetFlag(FLAGS_peer_pidfd);
  if (peer_pidfd == "pidfd_open") {
    sc::ForcePeerPidfdOpen();
  } else if (peer_pidfd != "auto") {
    Usage("--peer_pidfd must be auto or pidfd_open, not " + peer_pidfd);
  }
  config.pod_rootfs_path = absl::GetFlag(FLAGS_pod_rootfs);
  config.max_execs_total = absl::GetFlag(FLAGS_max_execs);
  config.max_execs_per_pod = absl::GetFlag(FLAGS_max_execs_per_pod);
  config.exec_kill_grace = absl::GetFlag(FLAGS_exec_kill_grace);
  config.operator_exec_pids_max = absl::GetFlag(FLAGS_operator_exec_pids_max);
  config.metrics.address = absl::GetFlag(FLAGS_metrics_address);
  config.metrics.pod_series = absl::GetFlag(FLAGS_metrics_pod_series);
  config.metrics.instance_base =
      config.instance_base.empty() ? sc::kDefaultInstanceBase : config.instance_base;
  if (config.metrics.pod_series < 0) Usage("--metrics_pod_series must not be negative");
  if (config.shutdown_grace < absl::ZeroDuration()) Usage("--shutdown_grace must not be negative");
  if (config.max_calls_per_pod < 1 || config.max_provider_waits_per_pod < 1 ||
      config.max_connections_per_pod < 1) {
    Usage(
        "--max_calls_per_pod, --max_provider_waits_per_pod and --max_connections_per_pod "
        "must be at least 1");
  }
  if (config.max_execs_total < 1 || config.max_execs_per_pod < 1) {
    Usage("--max_execs and --max_execs_per_pod must be at least 1");
  }

  spdlog::level::level_enum level = spdlog::level::from_str(config.log_level);
  if (level == spdlog::level::off && config.log_level != "off") {
    Usage("--log_level must be one of debug, info, warn, error, off");
  }
  spdlog::set_level(level);
  return sc::RunDaemon(config);
}
