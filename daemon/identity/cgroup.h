#ifndef DAEMON_IDENTITY_CGROUP_H_
#define DAEMON_IDENTITY_CGROUP_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sc {

// One line of /proc/<pid>/cgroup: "hierarchy-id:controllers:path".
struct CgroupLine {
  int hierarchy_id = 0;     // 0 is the unified (v2) hierarchy
  std::string controllers;  // "" for v2, "memory", "cpu,cpuacct", "name=systemd"
  std::string path;         // relative to the reader's cgroup namespace root
};

// Parses the whole file. Rejects malformed lines rather than skipping them:
// the file comes from the kernel, so a malformed line means we misread it.
absl::StatusOr<std::vector<CgroupLine>> ParseCgroupFile(absl::string_view content);

enum class CgroupDriver { kNone, kCgroupfs, kSystemd };
const char* CgroupDriverName(CgroupDriver driver);

// What the kubelet's cgroup naming tells about a process.
struct PodCgroup {
  std::string pod_uid;       // normalised with dashes, lowercase
  std::string container_id;  // "" when the process sits in the pod's own cgroup
  std::string qos_class;     // "guaranteed", "burstable" or "besteffort"
  CgroupDriver driver = CgroupDriver::kNone;
  std::string path;      // the cgroup path that named the pod
  int hierarchy_id = 0;  // which line it came from (0 = v2)
};

// Finds the pod a cgroup path belongs to, for both kubelet drivers:
//   cgroupfs: .../kubepods[/burstable|/besteffort]/pod<uid>[/<container-id>]
//   systemd:  .../kubepods[-<qos>].slice/kubepods[-<qos>]-pod<uid_>.slice
//             [/<runtime>-<container-id>.scope]
// Returns NOT_FOUND when the path names no pod.
absl::StatusOr<PodCgroup> PodFromCgroupPath(absl::string_view path);

// Finds the pod of a process from its parsed cgroup file: the v2 line when it
// names a pod, else the v1 hierarchies. Lines naming different pods are an
// error (FAILED_PRECONDITION), never a guess. NOT_FOUND when none names a pod.
absl::StatusOr<PodCgroup> PodFromCgroupLines(const std::vector<CgroupLine>& lines);

// A cgroup hierarchy mounted in the daemon's mount namespace.
struct CgroupMount {
  bool v2 = false;
  std::vector<std::string> options;  // super options ("memory", "name=systemd")
  std::string root;                  // mountinfo's root field
  std::string target;                // mount point
};

// Parses /proc/self/mountinfo text for cgroup and cgroup2 mounts.
std::vector<CgroupMount> ParseCgroupMounts(absl::string_view mountinfo);

// The host directory of one /proc/<pid>/cgroup line among `mounts`, or
// NOT_FOUND when that hierarchy is not mounted here.
absl::StatusOr<std::string> CgroupDirFor(const CgroupLine& line,
                                         const std::vector<CgroupMount>& mounts);

}  // namespace sc

#endif  // DAEMON_IDENTITY_CGROUP_H_
