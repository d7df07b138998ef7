#include "daemon/exec/launch_children.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "daemon/base/container_spec.h"
#include "daemon/base/dev_mount.h"
#include "daemon/base/proc_mount.h"
#include "daemon/base/syscalls.h"
#include "daemon/exec/pid_init.h"
#include "session/keeper.h"

namespace sc::launch {
namespace {

// How the two children are made. Where CloneOnStack exists they share the
// daemon's memory (CLONE_VM) and the parent waits until the child has exec'd
// or exited (CLONE_VFORK), as posix_spawn does: copying the daemon's page
// tables twice, the copy-on-write faults that follow and tearing the copies
// down again at execve made up most of an exec's start-up (about 2.5 of
// 3.7 ms here). While they run, the launching thread is suspended in clone3,
// the children touch nothing of the daemon's but the Plan, their stacks and
// errno, and all signals stay blocked until the workload has reset their
// dispositions; the kernel never picks such a child as an OOM victim
// (in_vfork), which would take the daemon with it. Elsewhere: plain forks.
constexpr uint64_t kShareMemory = kHaveCloneOnStack ? CLONE_VM | CLONE_VFORK : 0;

SC_CLONE_CHILD_CODE void Send(int fd, int32_t type, int32_t step, int32_t err, int32_t value) {
  Report r{type, step, err, value};
  // Nothing to do on failure: the parent then sees EOF without a report.
  ssize_t n = write(fd, &r, sizeof(r));
  (void)n;
}

[[noreturn]] SC_CLONE_CHILD_CODE void Fail(const Plan& p, int32_t step) {
  Send(p.status_fd, kFailed, step, errno, 0);
  _exit(125);
}

// Whether the working directory is reachable from the root: the kernel names
// one that is not "(unreachable)/...".
SC_CLONE_CHILD_CODE bool CwdInsideRoot() {
  char cwd[PATH_MAX];
  long n = syscall(SYS_getcwd, cwd, sizeof(cwd));
  return n > 0 && cwd[0] == '/';
}

SC_CLONE_CHILD_CODE bool WriteZero(int fd) {
  // "0" names the writing process, in v1 and v2 alike.
  return write(fd, "0", 1) == 1;
}

// Makes the mount at `dirfd`/`path` (a mount point) and every mount below it
// slaves: what is mounted there from now on stays in this mount namespace,
// what the namespace it was copied from mounts still arrives. 0 or errno.
SC_CLONE_CHILD_CODE int MakeSlaves(int dirfd, const char* path, unsigned int flags) {
  mount_attr slave{};
  slave.propagation = MS_SLAVE;
  if (syscall(SYS_mount_setattr, dirfd, path, flags | AT_RECURSIVE, &slave, sizeof(slave)) != 0) {
    return errno;
  }
  return 0;
}

// Moves the session's devpts (a detached mount) over <root>/dev/pts, in the
// caller's mount namespace, whose mounts there must be slaves (MakeSlaves).
// Neither component may be a symlink: the rootfs is the workload's to
// write. No dev/pts directory: nothing to do, the terminal works without a
// name. 0 or errno.
SC_CLONE_CHILD_CODE int AttachDevpts(int root, int devpts_fd) {
  UniqueFd dev(openat(root, "dev", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (!dev) return errno == ENOENT || errno == ENOTDIR ? 0 : errno;
  UniqueFd pts(openat(dev.get(), "pts", O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (!pts) return errno == ENOENT || errno == ENOTDIR ? 0 : errno;
  if (syscall(SYS_move_mount, devpts_fd, "", pts.get(), "",
              MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    return errno;
  }
  return 0;
}

struct WorkloadStart {
  const Plan* plan;
  bool in_cgroup_v2;
};

// The steps of the workload below, in the order it takes them. Each is
// async-signal-safe and ends the workload with its step's report on failure.

// Writes cgroup.procs of each of the caller's hierarchies, v2's unless
// CLONE_INTO_CGROUP put it there already.
SC_CLONE_CHILD_CODE void JoinCgroups(const Plan& p, bool in_cgroup_v2) {
  const CgroupHandles* cgroups = p.spec->cgroups;
  if (cgroups == nullptr) return;
  if (!in_cgroup_v2 && cgroups->v2_procs && !WriteZero(cgroups->v2_procs.get())) {
    Fail(p, kStepCgroup);
  }
  for (const UniqueFd& procs : cgroups->v1_procs) {
    if (!WriteZero(procs.get())) Fail(p, kStepCgroup);
  }
}

// Joins the caller's namespaces, or makes fresh ones (an operator's exec).
// Returns the directory to chroot into, in the mount namespace the workload
// ends in.
SC_CLONE_CHILD_CODE int EnterNamespaces(const Plan& p) {
  const LaunchSpec& s = *p.spec;
  if (s.namespaces != nullptr) {
    const NamespaceHandles& ns = *s.namespaces;
    if (ns.user && setns(ns.user.get(), CLONE_NEWUSER) != 0) Fail(p, kStepSetnsUser);
    if (setns(ns.mnt.get(), CLONE_NEWNS) != 0) Fail(p, kStepSetnsMnt);
    if (setns(ns.uts.get(), CLONE_NEWUTS) != 0) Fail(p, kStepSetnsUts);
    if (setns(ns.ipc.get(), CLONE_NEWIPC) != 0) Fail(p, kStepSetnsIpc);
    if (setns(ns.net.get(), CLONE_NEWNET) != 0) Fail(p, kStepSetnsNet);
    if (setns(ns.cgroup.get(), CLONE_NEWCGROUP) != 0) Fail(p, kStepSetnsCgroup);
    return s.rootfs_fd;
  }
  // rootfs_fd is a mount of the daemon's namespace; the kernel moves the
  // working directory to its copy in the new one, which "." then opens.
  if (fchdir(s.rootfs_fd) != 0) Fail(p, kStepChroot);
  if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP) != 0) {
    Fail(p, kStepUnshare);
  }
  int root = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) Fail(p, kStepChroot);
  // The copies are peers of the daemon's shared mounts: the proc below
  // would appear in the daemon's namespace and every pod's. Slaves first.
  if (int err = MakeSlaves(root, "", AT_EMPTY_PATH); err != 0) {
    errno = err;
    Fail(p, kStepProc);
  }
  return root;
}

// A /proc of the workload's own pid namespace, a /sys of its network
// namespace, the devices of its pod and an mqueue of its IPC namespace, not
// the node's (container_spec.h). A pod's go into the pod's mount namespace,
// before the terminal's session leaves it: later execs into the pod find
// them there. errno is set again from each result: the fds a step closed on
// the way out may have changed it.
SC_CLONE_CHILD_CODE void MountOwnFilesystems(const Plan& p, int root) {
  int null_tree = p.null_tree;
  if (int err = MountOwnProcIfNeeded(root, &null_tree); err != 0) {
    errno = err;
    Fail(p, kStepProc);
  }
  if (int err = MountOwnSysIfNeeded(root, p.cgroup_view.data(), p.cgroup_view.size()); err != 0) {
    errno = err;
    Fail(p, kStepSys);
  }
  if (p.pod_devices != nullptr) {
    if (int err = MountPodDevIfNeeded(root, p.pod_devices, p.pod_devices_capacity); err != 0) {
      errno = err;
      Fail(p, kStepPodDevices);
    }
  }
  if (int err = MountOwnMqueueIfNeeded(root); err != 0) {
    errno = err;
    Fail(p, kStepMqueue);
  }
}

// A terminal's devpts is the session's alone (launcher.h). In a pod, the
// workload leaves the pod's mount namespace for a copy of it whose mounts
// are all slaves (from "/": a pod's rootfs_path need not be a mount point),
// so that the devpts below appears nowhere else; an operator's exec is in a
// namespace of its own already. fds keep naming the mounts of the
// namespace they were opened in: the rootfs is opened again in the copy
// (the kernel moved the working directory there). Returns the root to enter.
SC_CLONE_CHILD_CODE int AttachSessionDevpts(const Plan& p, int root) {
  const LaunchSpec& s = *p.spec;
  if (s.devpts_fd < 0) return root;
  if (s.namespaces != nullptr) {
    if (fchdir(root) != 0) Fail(p, kStepSessionMountNs);
    if (unshare(CLONE_NEWNS) != 0) Fail(p, kStepSessionMountNs);
    root = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) Fail(p, kStepSessionMountNs);
    if (int err = MakeSlaves(AT_FDCWD, "/", 0); err != 0) {
      errno = err;
      Fail(p, kStepSessionMountNs);
    }
  }
  if (int err = AttachDevpts(root, s.devpts_fd); err != 0) {
    errno = err;
    Fail(p, kStepDevpts);
  }
  return root;
}

// The daemon blocks SIGTERM/SIGINT and ignores SIGPIPE; an ignored signal
// and the mask survive execve, so both are reset here.
SC_CLONE_CHILD_CODE void ResetSignals(const Plan& p) {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, nullptr);  // EINVAL for libc-reserved signals: fine
  }
  if (sigprocmask(SIG_SETMASK, &p.empty_mask, nullptr) != 0) Fail(p, kStepSignals);
}

// A session of its own, with the terminal as its controlling terminal and
// stdio, or the three fds it was given.
SC_CLONE_CHILD_CODE void SetUpSessionAndStdio(const Plan& p) {
  const LaunchSpec& s = *p.spec;
  if (setsid() < 0) Fail(p, kStepSetsid);
  if (s.tty_fd >= 0) {
    if (ioctl(s.tty_fd, TIOCSCTTY, 0) != 0) Fail(p, kStepCtty);
    for (int target = 0; target < 3; ++target) {
      if (dup2(s.tty_fd, target) < 0) Fail(p, kStepStdio);
    }
  } else {
    if (dup2(s.stdin_fd, 0) < 0 || dup2(s.stdout_fd, 1) < 0 || dup2(s.stderr_fd, 2) < 0) {
      Fail(p, kStepStdio);
    }
  }
}

SC_CLONE_CHILD_CODE void EnterRootfs(const Plan& p, int root) {
  // Without following any symlink: the fd is the directory that was checked.
  if (fchdir(root) != 0 || chroot(".") != 0) Fail(p, kStepChroot);
  if (chdir("/") != 0) Fail(p, kStepChdirRoot);
}

SC_CLONE_CHILD_CODE void SetRlimits(const Plan& p) {
  for (const auto& [resource, limit] : p.spec->rlimits) {
    if (setrlimit(static_cast<__rlimit_resource_t>(resource), &limit) != 0) Fail(p, kStepRlimit);
  }
}

// Capabilities: root gets none back on execve (NOROOT), none can be raised
// into the ambient set, the bounding set is emptied, then ids, then capset.
SC_CLONE_CHILD_CODE void DropPrivileges(const Plan& p) {
  const LaunchSpec& s = *p.spec;
  if (prctl(PR_SET_SECUREBITS,
            SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
            0, 0, 0) != 0) {
    Fail(p, kStepSecurebits);
  }
  for (int cap = 0; cap < 64; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL) break;  // past CAP_LAST_CAP
      Fail(p, kStepBounding);
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) Fail(p, kStepAmbient);
  // Raw system calls: glibc's wrappers would signal the daemon's other
  // threads (setxid broadcast), which do not exist in this process.
  if (syscall(SYS_setgroups, s.groups.size(), s.groups.data()) != 0) Fail(p, kStepGroups);
  if (syscall(SYS_setresgid, s.gid, s.gid, s.gid) != 0) Fail(p, kStepGid);
  if (syscall(SYS_setresuid, s.uid, s.uid, s.uid) != 0) Fail(p, kStepUid);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capset, &header, data) != 0) Fail(p, kStepCapset);
}

// The working directory is looked up as the workload itself, with nothing
// of the daemon's privileges left: inside the chroot ".." stops at the root
// and symlinks resolve within it, but a magic link on the way (a planted
// symlink to /proc/<pid>/root) jumps wherever it points, and with the
// daemon's capabilities that was any process's root, the node's included.
// Now only what the workload itself may open, and even that must lead to
// a directory inside the root.
SC_CLONE_CHILD_CODE void EnterWorkingDirectory(const Plan& p) {
  const LaunchSpec& s = *p.spec;
  if (chdir(s.working_dir.c_str()) != 0) {
    if (!s.working_dir_fallback || (errno != ENOENT && errno != ENOTDIR) || chdir("/") != 0) {
      Fail(p, kStepWorkdir);
    }
  }
  if (!CwdInsideRoot()) {
    errno = EXDEV;
    Fail(p, kStepWorkdirOutside);
  }
}

// no_new_privs, the daemon's fds marked to go, and the seccomp filter last.
SC_CLONE_CHILD_CODE void LockDown(const Plan& p) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Fail(p, kStepNoNewPrivs);

  // Every fd >= 3 (the daemon's, other sessions', the status pipe) is closed
  // by the successful execve; until then the status pipe is still needed.
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) Fail(p, kStepCloseFds);

  sock_fprog prog = p.spec->seccomp->Fprog();
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) Fail(p, kStepSeccomp);
}

// Like execvp: a candidate that does not exist is skipped, one that exists
// but cannot be run is remembered (126 beats 127).
[[noreturn]] SC_CLONE_CHILD_CODE void ExecFirstCandidate(const Plan& p) {
  int first_denied = -1;
  int denied_errno = 0;
  int last_errno = ENOENT;
  for (size_t i = 0; i + 1 < p.candidates.size(); ++i) {
    execve(p.candidates[i], p.argv.data(), p.envp.data());
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) continue;
    if (err == EACCES || err == EPERM || err == EISDIR) {
      if (first_denied < 0) {
        first_denied = static_cast<int>(i);
        denied_errno = err;
      }
      continue;
    }
    last_errno = err;
    Send(p.status_fd, kExecFailed, 0, err, static_cast<int32_t>(i));
    _exit(126);
  }
  if (first_denied >= 0) {
    Send(p.status_fd, kExecFailed, 0, denied_errno, first_denied);
    _exit(126);
  }
  Send(p.status_fd, kExecFailed, 0, last_errno, -1);
  _exit(127);
}

// The workload, from its first instruction to execve. Async-signal-safe only.
[[noreturn]] SC_CLONE_CHILD_CODE void RunWorkload(const Plan& p, bool in_cgroup_v2) {
  Send(p.status_fd, kNsPid, 0, 0, static_cast<int32_t>(syscall(SYS_getpid)));
  // cgroups first: once in the caller's cgroup namespace, its root would hide
  // the destination's ancestors from the move.
  JoinCgroups(p, in_cgroup_v2);
  int root = EnterNamespaces(p);
  MountOwnFilesystems(p, root);
  root = AttachSessionDevpts(p, root);
  ResetSignals(p);
  SetUpSessionAndStdio(p);
  EnterRootfs(p, root);
  SetRlimits(p);
  DropPrivileges(p);
  EnterWorkingDirectory(p);
  LockDown(p);
  ExecFirstCandidate(p);
}

SC_CLONE_CHILD_CODE int WorkloadMain(void* arg) {
  const WorkloadStart& start = *static_cast<const WorkloadStart*>(arg);
  RunWorkload(*start.plan, start.in_cgroup_v2);
}

// StartChild straight into the caller's v2 cgroup (CLONE_INTO_CGROUP) where
// there is one; on an older kernel, or where the cgroup refuses it, a plain
// start, and the child writes cgroup.procs itself (start->in_cgroup_v2).
long StartInCgroup(CloneArgs* args, const CgroupHandles* cgroups, uint64_t stack,
                   uint64_t stack_size, int (*fn)(void*), WorkloadStart* start) {
  start->in_cgroup_v2 = false;
  if (cgroups != nullptr && cgroups->v2_dir) {
    args->flags |= kCloneIntoCgroup;
    args->cgroup = static_cast<uint64_t>(cgroups->v2_dir.get());
    start->in_cgroup_v2 = true;
  }
  long pid = StartChild(args, stack, stack_size, fn, start);
  if (pid < 0 && start->in_cgroup_v2) {
    args->flags &= ~kCloneIntoCgroup;
    args->cgroup = 0;
    start->in_cgroup_v2 = false;
    pid = StartChild(args, stack, stack_size, fn, start);
  }
  return pid;
}

// The keeper, before it is one (keeper.h): joins the caller's cgroups, enters
// its pid namespace for its children only, starts the workload as its own
// child and execs the daemon's binary in the keeper's role. It stays in the
// node's pid namespace, so the pids the kernel writes are node-wide.
[[noreturn]] SC_CLONE_CHILD_CODE void RunKeeperChild(Plan& p, bool in_cgroup_v2) {
  const LaunchSpec& s = *p.spec;
  const LaunchSpec::Keeper& k = *s.keeper;
  JoinCgroups(p, in_cgroup_v2);  // a keeper always has them (Launch)
  if (setns(s.namespaces->pid.get(), CLONE_NEWPID) != 0) Fail(p, kStepPidNs);
  CloneArgs args{};
  args.flags = CLONE_PARENT_SETTID;
  args.parent_tid = reinterpret_cast<uint64_t>(&p.pids[2]);
  args.exit_signal = SIGCHLD;
  // In the cgroup already: the workload inherits it.
  WorkloadStart start{&p, true};
  long pid = StartChild(&args, p.workload_stack, p.stack_size, WorkloadMain, &start);
  if (pid < 0) Fail(p, kStepClone);
  // Our unreaped child: the pid cannot have been reused.
  int pidfd = PidfdOpen(static_cast<pid_t>(pid), 0);
  if (pidfd < 0) Fail(p, kStepKeeper);
  FormatPid(pid, p.keeper_group, sizeof(p.keeper_group));

  // This fd table is the keeper's own copy (no CLONE_FILES): first copies
  // above the keeper's numbers, so that no dup2 below overwrites a source,
  // then each in its place.
  int sources[] = {pidfd, k.status_fd, k.control_fd, k.master_fd, k.relay_in_fd, k.relay_out_fd};
  for (int& fd : sources) {
    if (fd < 0) continue;
    fd = fcntl(fd, F_DUPFD_CLOEXEC, kKeeperFdCount);
    if (fd < 0) Fail(p, kStepKeeperFds);
  }
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) Fail(p, kStepKeeperFds);
  for (int target = 0; target < 3; ++target) {
    if (dup2(null, target) < 0) Fail(p, kStepKeeperFds);
  }
  for (int i = 0; i < 6; ++i) {
    if (sources[i] >= 0 && dup2(sources[i], kKeeperWorkloadFd + i) < 0) Fail(p, kStepKeeperFds);
  }
  // Everything else (the daemon's fds, the copies) goes at execve.
  if (syscall(SYS_close_range, static_cast<unsigned>(kKeeperFdCount), ~0U, CLOSE_RANGE_CLOEXEC) !=
      0) {
    Fail(p, kStepKeeperFds);
  }
  char name[sizeof(kKeeperName)];
  memcpy(name, kKeeperName, sizeof(name));
  char* argv[] = {name, p.keeper_group, p.keeper_grace, const_cast<char*>(p.keeper_mode), nullptr};
  char* envp[] = {nullptr};
  syscall(SYS_execveat, p.self_exe_fd, "", argv, envp, AT_EMPTY_PATH);
  Fail(p, kStepKeeper);
}

SC_CLONE_CHILD_CODE int KeeperChildMain(void* arg) {
  const WorkloadStart& start = *static_cast<const WorkloadStart*>(arg);
  RunKeeperChild(*const_cast<Plan*>(start.plan), start.in_cgroup_v2);
}

// With a keeper, the intermediate only starts it, in the caller's cgroup.
[[noreturn]] SC_CLONE_CHILD_CODE void StartKeeper(Plan& p) {
  const LaunchSpec& s = *p.spec;
  CloneArgs args{};
  args.flags = CLONE_PARENT_SETTID;
  args.parent_tid = reinterpret_cast<uint64_t>(&p.pids[1]);
  args.exit_signal = SIGCHLD;
  WorkloadStart start{&p, false};
  long pid = StartInCgroup(&args, s.cgroups, p.keeper_stack, p.stack_size, KeeperChildMain, &start);
  if (pid < 0) Fail(p, kStepKeeper);
  // The keeper has exec'd (or failed and said so): it is orphaned now, and
  // the node's reaper takes it over.
  _exit(0);
}

// The intermediate process: takes what the workload inherits and the pid
// namespace, then forks the workload as a sibling (CLONE_PARENT: it becomes
// the daemon's child, so the daemon reaps it and holds its pidfd).
[[noreturn]] SC_CLONE_CHILD_CODE void RunIntermediate(Plan& p) {
  const LaunchSpec& s = *p.spec;
  // A vfork child has an oom_score_adj of its own (the kernel does not
  // spread it to the daemon sharing the memory); the workload inherits it.
  if (s.oom_score_adj) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, p.oom, p.oom_len) != static_cast<ssize_t>(p.oom_len)) {
      Fail(p, kStepOomScore);
    }
    close(fd);
  }
  if (s.keeper) StartKeeper(p);
  // An operator's exec: its pid namespace's init goes into its cgroup too,
  // so that nothing of the exec runs without its device limit.
  if (s.namespaces == nullptr) JoinCgroups(p, false);
  if (s.namespaces != nullptr) {
    if (setns(s.namespaces->pid.get(), CLONE_NEWPID) != 0) Fail(p, kStepPidNs);
  } else {
    if (unshare(CLONE_NEWPID) != 0) Fail(p, kStepPidNs);
    // Its first process, the namespace's init, is the daemon's binary (see
    // pid_init.h): a fork (a copy of the memory, dropped at execve), a child
    // of the daemon like the workload.
    long init = syscall(SYS_clone, CLONE_PARENT | CLONE_PARENT_SETTID | SIGCHLD, nullptr,
                        &p.init_pid, nullptr, nullptr);
    if (init < 0) Fail(p, kStepPidNsInit);
    if (init == 0) {
      // Its one fd: EOF on it when the daemon is gone (pid_init.h).
      if (dup2(p.daemon_life_fd, kPidInitDaemonLifeFd) < 0) Fail(p, kStepPidNsInit);
      char name[sizeof(kPidNamespaceInitName)];
      memcpy(name, kPidNamespaceInitName, sizeof(name));
      char* argv[] = {name, nullptr};
      char* envp[] = {nullptr};
      syscall(SYS_execveat, p.self_exe_fd, "", argv, envp, AT_EMPTY_PATH);
      Fail(p, kStepPidNsInit);
    }
  }

  CloneArgs args{};
  args.flags = CLONE_PARENT | CLONE_PARENT_SETTID;
  args.parent_tid = reinterpret_cast<uint64_t>(&p.pids[1]);
  WorkloadStart start{&p, false};
  long pid = StartInCgroup(&args, s.cgroups, p.workload_stack, p.stack_size, WorkloadMain, &start);
  if (pid < 0) Fail(p, kStepClone);
  // With CLONE_VFORK the workload has exec'd or exited by now.
  Send(p.status_fd, kHostPid, 0, 0, static_cast<int32_t>(pid));
  _exit(0);
}

}  // namespace

const char* StepName(int32_t step) {
  switch (step) {
    case kStepOomScore:
      return "set oom_score_adj";
    case kStepPidNs:
      return "enter the pid namespace";
    case kStepClone:
      return "clone3 the workload";
    case kStepCgroup:
      return "join the caller's cgroup (cgroup.procs)";
    case kStepSetnsUser:
      return "setns(user)";
    case kStepSetnsMnt:
      return "setns(mnt)";
    case kStepSetnsUts:
      return "setns(uts)";
    case kStepSetnsIpc:
      return "setns(ipc)";
    case kStepSetnsNet:
      return "setns(net)";
    case kStepSetnsCgroup:
      return "setns(cgroup)";
    case kStepUnshare:
      return "unshare fresh namespaces";
    case kStepSignals:
      return "reset the signal mask";
    case kStepSetsid:
      return "setsid";
    case kStepCtty:
      return "make the terminal the controlling terminal (TIOCSCTTY)";
    case kStepStdio:
      return "set up stdio (dup2)";
    case kStepChroot:
      return "enter the rootfs (fchdir + chroot)";
    case kStepChdirRoot:
      return "chdir / in the rootfs";
    case kStepWorkdir:
      return "change to the working directory";
    case kStepRlimit:
      return "setrlimit";
    case kStepSecurebits:
      return "prctl(PR_SET_SECUREBITS)";
    case kStepBounding:
      return "drop the capability bounding set";
    case kStepAmbient:
      return "clear ambient capabilities";
    case kStepGroups:
      return "setgroups";
    case kStepGid:
      return "setresgid";
    case kStepUid:
      return "setresuid";
    case kStepCapset:
      return "capset to zero";
    case kStepNoNewPrivs:
      return "prctl(PR_SET_NO_NEW_PRIVS)";
    case kStepCloseFds:
      return "close_range";
    case kStepSeccomp:
      return "load the seccomp filter";
    case kStepProc:
      return "mount a /proc of the pod's pid namespace over the rootfs's";
    case kStepWorkdirOutside:
      return "check that the working directory is inside the rootfs";
    case kStepPidNsInit:
      return "start the init of the exec's pid namespace";
    case kStepSessionMountNs:
      return "give the terminal's session a mount namespace of its own";
    case kStepDevpts:
      return "mount the session's devpts over <rootfs>/dev/pts";
    case kStepKeeper:
      return "start the session's keeper";
    case kStepKeeperFds:
      return "give the keeper its fds";
    case kStepSys:
      return "mount a /sys of the workload's network namespace over the rootfs's";
    case kStepPodDevices:
      return "give the workload the devices of the pod's own /dev";
    case kStepMqueue:
      return "mount an mqueue of the workload's IPC namespace at <rootfs>/dev/mqueue";
  }
  return "unknown step";
}

// Starts fn(arg) in a child: on `stack` with CloneOnStack when the memory is
// shared, else a fork that calls fn itself.
long StartChild(CloneArgs* args, uint64_t stack, uint64_t stack_size, int (*fn)(void*), void* arg) {
  args->flags |= kShareMemory;
  if (kHaveCloneOnStack) {
    args->stack = stack;
    args->stack_size = stack_size;
    return CloneOnStack(args, fn, arg);
  }
  long pid = syscall(SYS_clone3, args, sizeof(*args));
  if (pid == 0) _exit(fn(arg));
  return pid;
}

// Decimal digits of a positive int, async-signal-safe.
SC_CLONE_CHILD_CODE void FormatPid(long value, char* out, size_t size) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0 && n < sizeof(digits));
  size_t i = 0;
  while (n > 0 && i + 1 < size) out[i++] = digits[--n];
  out[i] = '\0';
}

SC_CLONE_CHILD_CODE int IntermediateMain(void* plan) { RunIntermediate(*static_cast<Plan*>(plan)); }

}  // namespace sc::launch
