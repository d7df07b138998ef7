#ifndef DAEMON_EXEC_LAUNCHER_H_
#define DAEMON_EXEC_LAUNCHER_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "daemon/exec/cgroup_join.h"
#include "daemon/exec/namespaces.h"
#include "daemon/exec/pid_init.h"
#include "daemon/exec/seccomp_filter.h"

namespace sc {

// Everything the workload is started with. All handles are opened by the
// caller beforehand: the forked children only make async-signal-safe system
// calls on what they are given (no allocation, no locks, no libseccomp).
struct LaunchSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH unless it has a '/'
  std::vector<std::string> env;
  std::string working_dir = "/";  // inside the rootfs
  // When working_dir does not exist in the rootfs, start in "/" (an inherited
  // directory, not one the caller asked for).
  bool working_dir_fallback = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;

  // Pod peers: join these namespaces. Null: fresh namespaces of the
  // process's own (operators exec'ing into an instance by name).
  const NamespaceHandles* namespaces = nullptr;
  // The cgroups to join (a pod's, or the operator execs' own,
  // operator_cgroup.h); their directories also make the workload's
  // /sys/fs/cgroup. Null: stay in the daemon's cgroups.
  const CgroupHandles* cgroups = nullptr;
  int rootfs_fd = -1;  // the directory to chroot into
  std::optional<int> oom_score_adj;
  std::vector<std::pair<int, rlimit>> rlimits;

  // The process's stdio (the child's ends), or a terminal for all three.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  int tty_fd = -1;  // set: stdio and controlling terminal
  // With tty_fd: the devpts the terminal is of, a detached mount of the
  // session's own (pty.h). The workload then gets a mount namespace of its
  // own, a slave of the one it would be in (a pod's: the pod's; an
  // operator's: its fresh one), and in it this devpts over <rootfs>/dev/pts,
  // so that its terminal is /dev/pts/N there and no other session's devpts is
  // in sight. A rootfs without a dev/pts directory leaves the terminal
  // nameless. Sessions without a terminal stay in the pod's mount namespace.
  int devpts_fd = -1;

  const SeccompProgram* seccomp = nullptr;  // required

  // Stdio by reference (pods only): the workload's parent is a keeper
  // (keeper.h) in the caller's cgroups, not the daemon, and stdin/stdout/
  // stderr_fd (or tty_fd) are the caller's own files. The fds are the
  // daemon's copies; the keeper gets its own.
  struct Keeper {
    int status_fd = -1;
    int control_fd = -1;
    int master_fd = -1;     // tty: the terminal's master,
    int relay_in_fd = -1;   // the caller's stdin and
    int relay_out_fd = -1;  // stdout, which the keeper relays
    int grace_ms = 5000;    // SIGTERM to SIGKILL when the caller is gone
  };
  std::optional<Keeper> keeper;
};

struct LaunchResult {
  // The workload, a child of the daemon (clone3 CLONE_PARENT from the
  // intermediate process): the caller reaps it (or the pidfd's waitid).
  // With a keeper, its child instead: pidfd is then empty, and neither is
  // the daemon's to reap.
  pid_t host_pid = -1;
  pid_t keeper_pid = -1;
  pid_t ns_pid = -1;  // as seen in its own pid namespace
  UniqueFd pidfd;
  // Set when execve failed: the process has already exited with exit_code
  // (126 or 127) and been reaped; `message` says why, for a person.
  bool exec_failed = false;
  // An operator's exec: the init of its pid namespace (pid_init.h), ended
  // and reaped when this is destroyed, after the workload.
  PidNamespaceInit init;
  int exit_code = 0;
  std::string message;
};

// Starts the workload: makes the daemon non-dumpable (the children run on its
// memory until execve), starts an intermediate that takes the oom_score_adj
// and joins (or unshares) the pid namespace; it starts the workload in the
// cgroup (CLONE_INTO_CGROUP, else cgroup.procs) and exits. Both children share
// the daemon's memory and the caller waits until the workload has exec'd
// (posix_spawn's way; plain forks where clone_on_stack.h has no CloneOnStack).
// The workload joins the rest, mounts its own /proc, /sys, pod devices and
// mqueue over the rootfs's (container_spec.h), enters the rootfs, drops every
// privilege,
// loads the seccomp filter and execs. A failure before execve comes back as a
// status naming the step and errno; a failed execve as exec_failed.
absl::StatusOr<LaunchResult> Launch(const LaunchSpec& spec);

// The PATH lookup list for argv0 under `env` (the last PATH= entry, else the
// default PATH): argv0 itself when it contains '/'. Exposed for tests.
std::vector<std::string> ExecCandidates(const std::string& argv0,
                                        const std::vector<std::string>& env);

}  // namespace sc

#endif  // DAEMON_EXEC_LAUNCHER_H_
