#ifndef DAEMON_EXEC_CGROUP_JOIN_H_
#define DAEMON_EXEC_CGROUP_JOIN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"
#include "daemon/identity/cgroup.h"

namespace sc {

class Peer;

// The cgroups of the peer, opened in the daemon so that the child only writes
// to fds it holds. v2: the directory (for clone3's CLONE_INTO_CGROUP) and its
// cgroup.procs (the fallback); v1: cgroup.procs of every mounted hierarchy
// the peer is in. The child joins them before it enters the peer's cgroup
// namespace, whose root would otherwise hide the destination.
struct CgroupHandles {
  UniqueFd v2_dir;
  UniqueFd v2_procs;
  std::vector<UniqueFd> v1_procs;
  std::vector<std::string> paths;  // host paths, for the audit log and messages
  // The directories joined, for the workload's /sys/fs/cgroup (sys_mount.h):
  // each under its hierarchy's mount name ("memory", "cpu,cpuacct",
  // "unified"), or "" for the one hierarchy of a pure v2 node.
  struct ViewDir {
    std::string name;
    UniqueFd dir;
  };
  std::vector<ViewDir> view;
};

absl::StatusOr<CgroupHandles> OpenPeerCgroups(const Peer& peer);

// Adds `dir_fd` (a cgroup directory at `dir` of a hierarchy among `mounts`)
// to handles->view under its hierarchy's mount name; a name that is not a
// plain one, or that is there already, is left out.
absl::Status AddViewDir(const std::string& dir, bool v2, int dir_fd,
                        const std::vector<CgroupMount>& mounts, CgroupHandles* handles);

}  // namespace sc

#endif  // DAEMON_EXEC_CGROUP_JOIN_H_
