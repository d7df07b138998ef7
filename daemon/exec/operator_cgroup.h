#ifndef DAEMON_EXEC_OPERATOR_CGROUP_H_
#define DAEMON_EXEC_OPERATOR_CGROUP_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "daemon/exec/cgroup_join.h"

namespace sc {

// An operator's exec runs in no pod, so no pod's cgroup limits it: it goes
// into a cgroup of its own, "sc-operator-exec" below the daemon's, in the
// hierarchies that limit devices and processes:
//   v1 devices  devices.deny "a", then devices.allow for each rule of
//               kOperatorExecDevices (container_spec.h);
//   v1 pids     pids.max;
//   v2          a BPF_PROG_TYPE_CGROUP_DEVICE program admitting exactly those
//               rules (as runc attaches one), and pids.max where the pids
//               controller can be enabled below the daemon's cgroup (not in
//               a cgroup that holds processes itself, v2's rule).
// Made on first use and kept (a restarted daemon reuses it and re-applies
// the limits); every exec joins it. The handles are what OpenPeerCgroups
// gives for a pod: the launcher joins them the same way.
struct OperatorCgroupOptions {
  int64_t pids_max = 1024;
};

absl::StatusOr<CgroupHandles> OpenOperatorExecCgroups(const OperatorCgroupOptions& options);

// The cgroup directory's name in each hierarchy.
inline constexpr char kOperatorExecCgroup[] = "sc-operator-exec";

// A BPF_PROG_TYPE_CGROUP_DEVICE program admitting exactly the rules of
// kOperatorExecDevices, loaded (an fd), for attaching. Exposed for tests.
absl::StatusOr<UniqueFd> LoadOperatorDeviceProgram();

}  // namespace sc

#endif  // DAEMON_EXEC_OPERATOR_CGROUP_H_
