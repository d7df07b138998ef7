#include "daemon/exec/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/base/clone_on_stack.h"
#include "daemon/base/container_spec.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/raw_mounts.h"
#include "daemon/base/sys_mount.h"
#include "daemon/base/syscalls.h"
#include "daemon/exec/launch_children.h"
#include "daemon/exec/launch_watch.h"
#include "daemon/exec/pid_init.h"
#include "daemon/exec/session_binary.h"

namespace sc {
namespace {

using launch::FormatPid;
using launch::IntermediateMain;
using launch::Plan;
using launch::Report;
using launch::StartChild;
using launch::StepName;

constexpr char kDefaultPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr auto kStartTimeout = std::chrono::seconds(30);
// The children's own stacks (CLONE_VM): they need a few KiB; only the pages
// they touch are ever allocated.
constexpr size_t kChildStackSize = 256 * 1024;

// A detached read-only clone of a cgroup directory, a slave of it: nothing
// the workload's namespace mounts there goes back.
absl::StatusOr<UniqueFd> ReadOnlyClone(int dir_fd) {
  UniqueFd tree(CloneTree(dir_fd, ""));
  if (!tree) return ErrnoStatus(errno, "open_tree(a cgroup directory)");
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  attr.propagation = MS_SLAVE;
  if (syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0) {
    return ErrnoStatus(errno, "mount_setattr(a cgroup directory's clone)");
  }
  return tree;
}

absl::Status DidNotStart() {
  return absl::DeadlineExceededError(
      absl::StrCat("the workload did not start within ",
                   std::chrono::duration_cast<std::chrono::seconds>(kStartTimeout).count(),
                   " s (stopped, or blocked before execve); it was killed"));
}

void Reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {
  }
}

// A pipe whose write end only the daemon holds (close-on-exec, so no child
// keeps it past its execve): its EOF tells an operator exec's init that the
// daemon is gone. Made once; -1 on failure.
int DaemonLifePipe() {
  static std::atomic<int> read_end{-1};
  if (int fd = read_end.load(); fd >= 0) return fd;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (int fd = read_end.load(); fd >= 0) return fd;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  // The write end is never closed: it lives as long as the daemon.
  read_end.store(fds[0]);
  return fds[0];
}

// Takes charge of the init a launch started (pid 0: none).
PidNamespaceInit AdoptInit(pid_t pid) {
  if (pid <= 0) return {};
  // Safe from pid reuse: our unreaped child.
  UniqueFd pidfd(PidfdOpen(pid, 0));
  if (!pidfd) {
    kill(pid, SIGKILL);
    Reap(pid);
    return {};
  }
  return PidNamespaceInit(pid, std::move(pidfd));
}

// The steps of Launch, in the daemon.

// What the children execve: argv, envp and the PATH candidates as plain
// arrays, the oom_score_adj as text, the empty signal mask.
void PlanCommand(const LaunchSpec& spec, Plan* plan) {
  for (const std::string& a : spec.argv) plan->argv.push_back(const_cast<char*>(a.c_str()));
  plan->argv.push_back(nullptr);
  for (const std::string& e : spec.env) plan->envp.push_back(const_cast<char*>(e.c_str()));
  plan->envp.push_back(nullptr);
  plan->candidate_storage = ExecCandidates(spec.argv[0], spec.env);
  for (const std::string& c : plan->candidate_storage) {
    plan->candidates.push_back(const_cast<char*>(c.c_str()));
  }
  plan->candidates.push_back(nullptr);
  std::string oom = spec.oom_score_adj ? absl::StrCat(*spec.oom_score_adj) : "";
  plan->oom_len = oom.size();
  std::memcpy(plan->oom, oom.data(), std::min(oom.size(), sizeof(plan->oom)));
  sigemptyset(&plan->empty_mask);
}

// What the workload's own mounts need, made here: the children cannot
// allocate, and only in the daemon's mount namespace can these be cloned.
absl::Status PlanOwnMounts(const LaunchSpec& spec, Plan* plan) {
  plan->null_tree_storage.reset(CloneDevNull());
  if (!plan->null_tree_storage) return ErrnoStatus(errno, "clone /dev/null for the masked paths");
  plan->null_tree = plan->null_tree_storage.get();
  if (spec.cgroups != nullptr) {
    for (const CgroupHandles::ViewDir& v : spec.cgroups->view) {
      absl::StatusOr<UniqueFd> tree = ReadOnlyClone(v.dir.get());
      if (!tree.ok()) return tree.status();
      plan->cgroup_view.push_back({v.name.c_str(), tree->get()});
      plan->cgroup_view_storage.push_back(*std::move(tree));
    }
  }
  if (spec.namespaces != nullptr) {
    plan->pod_device_storage.resize(kMaxPodDevices);
    plan->pod_devices = plan->pod_device_storage.data();
    plan->pod_devices_capacity = plan->pod_device_storage.size();
  }
  return absl::OkStatus();
}

// The session binary where a process of it starts (an operator exec's init,
// a keeper), and what it is given.
absl::Status PlanSessionBinary(const LaunchSpec& spec, Plan* plan) {
  const bool kept = spec.keeper.has_value();
  if (kept && (spec.namespaces == nullptr || spec.cgroups == nullptr)) {
    return absl::InternalError("a keeper needs the caller's namespaces and cgroups");
  }
  if (spec.namespaces == nullptr || kept) {
    absl::StatusOr<int> session_binary = SessionBinaryFd();
    if (!session_binary.ok()) return session_binary.status();
    plan->self_exe_fd = *session_binary;
  }
  if (spec.namespaces == nullptr) {
    plan->daemon_life_fd = DaemonLifePipe();
    if (plan->daemon_life_fd < 0) return ErrnoStatus(errno, "pipe2 (the daemon's life pipe)");
  }
  if (kept) {
    FormatPid(std::max(0, spec.keeper->grace_ms), plan->keeper_grace, sizeof(plan->keeper_grace));
    plan->keeper_mode = spec.tty_fd >= 0 ? "tty" : "pipes";
  }
  return absl::OkStatus();
}

struct Started {
  long pid = -1;
  int clone_errno = 0;
  bool timed_out = false;  // the LaunchWatch killed the children
};

// Starts the intermediate on `stack`; it returns once the workload has
// exec'd or exited, or the start deadline has passed.
Started StartIntermediate(Plan* plan, uint64_t stack, uint64_t stack_size) {
  // A raw clone3 rather than fork(): no atfork handlers run (gRPC's or
  // anyone's), the child runs as this thread only and must not touch locks
  // or the heap. Every signal stays blocked in the children until the
  // workload has reset the dispositions (a daemon handler must not run on
  // the shared memory).
  sigset_t all, old_mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  CloneArgs args{};
  args.flags = CLONE_PARENT_SETTID;
  args.parent_tid = reinterpret_cast<uint64_t>(&plan->pids[0]);
  args.exit_signal = SIGCHLD;
  LaunchWatch watch(std::chrono::steady_clock::now() + kStartTimeout, plan->pids, 3);
  Started started;
  started.pid = StartChild(&args, stack, stack_size, IntermediateMain, plan);
  started.clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  started.timed_out = watch.Stop();
  return started;
}

// Reads the status pipe until every writer is gone: the intermediate has
// exited, and the workload has exec'd (CLOEXEC) or exited. The pids go to
// `result`, the last failure of a step and of execve to the two reports.
absl::Status ReadReports(int status_fd, const Plan& plan, LaunchResult* result, Report* failure,
                         Report* exec_failure) {
  const bool kept = plan.spec->keeper.has_value();
  auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      if (result->host_pid > 0 && !kept) {
        kill(result->host_pid, SIGKILL);
        Reap(result->host_pid);
      }
      if (kept) {
        // Whoever still holds the status pipe is stuck: the keeper and the
        // workload (node-wide pids; the keeper reaps the workload, the
        // node's reaper the keeper).
        for (int i : {2, 1}) {
          if (int pid = plan.pids[i].load(); pid > 0) kill(pid, SIGKILL);
        }
      }
      return DidNotStart();
    }
    pollfd pfd{status_fd, POLLIN, 0};
    int rc = poll(&pfd, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return ErrnoStatus(errno, "poll the status pipe");
    if (rc == 0) continue;
    Report r{};
    ssize_t n = read(status_fd, &r, sizeof(r));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read the status pipe");
    if (n == 0) return absl::OkStatus();
    if (n != sizeof(r)) return absl::InternalError("short record on the status pipe");
    switch (r.type) {
      case launch::kHostPid:
        result->host_pid = r.value;
        break;
      case launch::kNsPid:
        result->ns_pid = r.value;
        break;
      case launch::kFailed:
        *failure = r;
        break;
      case launch::kExecFailed:
        *exec_failure = r;
        break;
      default:
        break;
    }
  }
}

// What the client is told of an execve that failed: no candidate found
// (127), or the one that could not be executed (126).
std::string ExecFailureMessage(const Plan& plan, const Report& exec_failure) {
  const std::string& argv0 = plan.spec->argv[0];
  int err = exec_failure.err;
  if (exec_failure.value < 0) {
    return absl::StrCat("sc-exec: ", argv0, ": command not found",
                        argv0.find('/') == std::string::npos
                            ? absl::StrCat(" (PATH searched in the rootfs)")
                            : std::string(": ") + strerror(err));
  }
  const std::string& which = plan.candidate_storage[exec_failure.value];
  return absl::StrCat("sc-exec: ", which, ": cannot execute: ", strerror(err));
}

// A step of the children that failed, as a status.
absl::Status StepFailure(const LaunchSpec& spec, const Report& failure) {
  if (failure.step == launch::kStepWorkdir) {
    return ErrnoStatus(failure.err,
                       absl::StrCat("working directory ", spec.working_dir, " in the rootfs"));
  }
  if (failure.step == launch::kStepPodDevices && failure.err == E2BIG) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the pod's own /dev holds more than ", kMaxPodDevices,
        " device nodes beyond the default set, the most that reach a workload (a privileged "
        "pod?)"));
  }
  if (failure.step == launch::kStepWorkdirOutside) {
    return absl::PermissionDeniedError(
        absl::StrCat("working directory ", spec.working_dir,
                     " leads out of the rootfs (through a link such as /proc/<pid>/root), "
                     "which is refused"));
  }
  return ErrnoStatus(failure.err, absl::StrCat("starting the process: ", StepName(failure.step)));
}

// The launch's outcome from what the children reported and how the
// intermediate (`mid_status`) ended; `init` is kept for the caller.
absl::StatusOr<LaunchResult> ResultFromReports(const Plan& plan, LaunchResult result,
                                               const Report& failure, const Report& exec_failure,
                                               int mid_status, PidNamespaceInit init) {
  const bool kept = plan.spec->keeper.has_value();
  if (kept) {
    // The intermediate reports no pid: the kernel wrote both.
    result.keeper_pid = plan.pids[1].load();
    result.host_pid = plan.pids[2].load();
    if (result.keeper_pid <= 0 && failure.type == 0) {
      return absl::InternalError("the keeper did not start");
    }
  }
  if (result.host_pid > 0 && (failure.type != 0 || exec_failure.type != 0)) {
    // It reported and _exit'ed: reap it here, the caller never sees it
    // (with a keeper, the keeper reaps it and reports it to the caller too).
    int status = 0;
    if (kept) {
      status = exec_failure.value < 0 ? 127 << 8 : 126 << 8;
    } else {
      while (waitpid(result.host_pid, &status, __WALL) < 0 && errno == EINTR) {
      }
    }
    if (exec_failure.type != 0 && failure.type == 0) {
      result.exec_failed = true;
      result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 126;
      result.message = ExecFailureMessage(plan, exec_failure);
      result.host_pid = -1;
      return result;
    }
  }
  if (failure.type != 0) return StepFailure(*plan.spec, failure);
  if (!WIFEXITED(mid_status) || WEXITSTATUS(mid_status) != 0 || result.host_pid <= 0) {
    return absl::InternalError(
        absl::StrCat("the intermediate process failed (status ", mid_status, ")"));
  }
  if (kept) return result;
  result.init = std::move(init);
  // Safe from pid reuse: the workload is our unreaped child.
  result.pidfd.reset(PidfdOpen(result.host_pid, 0));
  if (!result.pidfd) {
    absl::Status st = ErrnoStatus(errno, "pidfd_open(workload)");
    kill(result.host_pid, SIGKILL);
    Reap(result.host_pid);
    return st;
  }
  return result;
}

}  // namespace

std::vector<std::string> ExecCandidates(const std::string& argv0,
                                        const std::vector<std::string>& env) {
  if (argv0.find('/') != std::string::npos) return {argv0};
  std::string path = kDefaultPath;
  for (const std::string& e : env) {
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  }
  std::vector<std::string> out;
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    // An empty entry means the current directory, as in execvp.
    if (dir.empty()) dir = ".";
    out.push_back(absl::StrCat(dir, "/", argv0));
  }
  return out;
}

absl::StatusOr<LaunchResult> Launch(const LaunchSpec& spec) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("argv is empty");
  if (spec.seccomp == nullptr) return absl::InternalError("no seccomp program");
  if (spec.rootfs_fd < 0) return absl::InternalError("no rootfs fd");

  Plan plan;
  plan.spec = &spec;
  PlanCommand(spec, &plan);
  if (absl::Status s = PlanOwnMounts(spec, &plan); !s.ok()) return s;
  int status_pipe[2];
  if (pipe2(status_pipe, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2 (status)");
  UniqueFd status_r(status_pipe[0]);
  UniqueFd status_w(status_pipe[1]);
  plan.status_fd = status_w.get();
  const bool kept = spec.keeper.has_value();
  if (absl::Status s = PlanSessionBinary(spec, &plan); !s.ok()) return s;

  absl::StatusOr<ChildStacks> stacks = ChildStacks::Map(3, kChildStackSize);
  if (!stacks.ok()) return stacks.status();
  plan.workload_stack = stacks->base(1);
  plan.keeper_stack = stacks->base(2);
  plan.stack_size = stacks->size();

  // No one in the pod may ptrace or open /proc/<pid>/fd of the workload
  // while it still holds the daemon's fds (until execve resets it): it runs
  // on the daemon's memory, and dumpable is a property of the memory, so the
  // daemon itself is made non-dumpable (no core dumps of a privileged
  // process's memory either). A forked child inherits it.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return ErrnoStatus(errno, "prctl(PR_SET_DUMPABLE, 0)");
  }

  Started mid = StartIntermediate(&plan, stacks->base(0), stacks->size());
  if (mid.pid < 0) return ErrnoStatus(mid.clone_errno, "clone3 (intermediate)");
  status_w.reset();
  int mid_status = 0;
  while (waitpid(static_cast<pid_t>(mid.pid), &mid_status, 0) < 0 && errno == EINTR) {
  }
  // Held before anything can fail, so that every way out of here ends it.
  PidNamespaceInit init = AdoptInit(plan.init_pid.load());
  if (mid.timed_out) {
    // The watchdog killed them: the workload is an unreaped child (with a
    // keeper, the keeper's, which its new parent reaps).
    if (int pid = plan.pids[1].load(); pid > 0 && !kept) Reap(pid);
    return DidNotStart();
  }

  LaunchResult result;
  Report failure{};
  Report exec_failure{};
  if (absl::Status s = ReadReports(status_r.get(), plan, &result, &failure, &exec_failure);
      !s.ok()) {
    return s;
  }
  return ResultFromReports(plan, std::move(result), failure, exec_failure, mid_status,
                           std::move(init));
}

}  // namespace sc
