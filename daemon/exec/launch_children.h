#ifndef DAEMON_EXEC_LAUNCH_CHILDREN_H_
#define DAEMON_EXEC_LAUNCH_CHILDREN_H_

// The children of one launch (launcher.cc), from clone to execve: the
// intermediate, which takes the pid namespace and starts the workload (or,
// with stdio by reference, the keeper, which starts it); the workload, which
// joins the caller's cgroups and namespaces, mounts its own /proc, /sys and
// /dev, enters the rootfs, drops every privilege and execs. They make
// async-signal-safe system calls only, on what the Plan gives them (no
// allocation, no locks), and report a failed step on the status pipe. For
// launcher.cc only.

#include <signal.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "daemon/base/clone_on_stack.h"
#include "daemon/base/raw_mounts.h"
#include "daemon/base/sys_mount.h"
#include "daemon/exec/launcher.h"

namespace sc::launch {

// The steps of the children, reported through the status pipe on failure.
enum Step : int32_t {
  kStepOomScore = 1,
  kStepPidNs,
  kStepClone,
  kStepCgroup,
  kStepSetnsUser,
  kStepSetnsMnt,
  kStepSetnsUts,
  kStepSetnsIpc,
  kStepSetnsNet,
  kStepSetnsCgroup,
  kStepUnshare,
  kStepSignals,
  kStepSetsid,
  kStepCtty,
  kStepStdio,
  kStepChroot,
  kStepChdirRoot,
  kStepWorkdir,
  kStepRlimit,
  kStepSecurebits,
  kStepBounding,
  kStepAmbient,
  kStepGroups,
  kStepGid,
  kStepUid,
  kStepCapset,
  kStepNoNewPrivs,
  kStepCloseFds,
  kStepSeccomp,
  kStepProc,
  kStepWorkdirOutside,
  kStepPidNsInit,
  kStepSessionMountNs,
  kStepDevpts,
  kStepKeeper,
  kStepKeeperFds,
  kStepSys,
  kStepPodDevices,
  kStepMqueue,
};

const char* StepName(int32_t step);

enum ReportType : int32_t { kHostPid = 1, kNsPid = 2, kFailed = 3, kExecFailed = 4 };

// One record on the status pipe: smaller than PIPE_BUF, so written atomically.
struct Report {
  int32_t type;
  int32_t step;
  int32_t err;
  int32_t value;
};

// Everything the children read, prepared in the parent as plain arrays.
struct Plan {
  const LaunchSpec* spec;
  int status_fd;
  int self_exe_fd = -1;          // the session binary: an operator exec's init, a keeper
  int daemon_life_fd = -1;       // the read end of DaemonLifePipe(), for that init
  std::atomic<int> init_pid{0};  // that init, written by the kernel
  // The intermediate's, the workload's (without a keeper) or the keeper's
  // and the workload's node-wide pids, written by the kernel
  // (CLONE_PARENT_SETTID) before each runs; for the LaunchWatch.
  std::atomic<int> pids[3] = {};
  uint64_t workload_stack = 0;
  uint64_t keeper_stack = 0;
  char keeper_group[16] = {};  // the workload's pid, by the keeper child
  char keeper_grace[16] = {};
  const char* keeper_mode = "pipes";
  uint64_t stack_size = 0;
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<std::string> candidate_storage;
  std::vector<char*> candidates;
  char oom[16];
  size_t oom_len;
  sigset_t empty_mask;
  // For the workload's own mounts (proc_mount.h, sys_mount.h, dev_mount.h).
  int null_tree = -1;
  std::vector<CgroupViewEntry> cgroup_view;
  DevNode* pod_devices = nullptr;  // pods only: scratch for their /dev
  size_t pod_devices_capacity = 0;
  // What those point into, held until the children are done.
  UniqueFd null_tree_storage;
  std::vector<UniqueFd> cgroup_view_storage;
  std::vector<DevNode> pod_device_storage;
};

// Starts fn(arg) in a child: on `stack` with CloneOnStack when the memory is
// shared, else a fork that calls fn itself.
long StartChild(CloneArgs* args, uint64_t stack, uint64_t stack_size, int (*fn)(void*), void* arg);

// The intermediate's entry, `plan` a Plan (CloneArgs' fn).
SC_CLONE_CHILD_CODE int IntermediateMain(void* plan);

// Decimal digits of a positive int, async-signal-safe.
SC_CLONE_CHILD_CODE void FormatPid(long value, char* out, size_t size);

}  // namespace sc::launch

#endif  // DAEMON_EXEC_LAUNCH_CHILDREN_H_
