// The Exec RPC: the gRPC edge of a chroot exec session. The caller, the
// policy, every handle opened before any fork, then either stdio by reference
// (the caller's own files and a keeper in its pod; the call ends once the
// process runs) or a streaming session (stream_session.h).
#include <fcntl.h>
#include <google/protobuf/descriptor.h>
#include <grpcpp/support/method_handler.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/defaults.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/paths.h"
#include "daemon/edge/exec_stream.h"
#include "daemon/edge/service.h"
#include "daemon/edge/status_util.h"
#include "daemon/edge/stream_session.h"
#include "daemon/exec/caller_fds.h"
#include "daemon/exec/cgroup_join.h"
#include "daemon/exec/exec_session.h"
#include "daemon/exec/launcher.h"
#include "daemon/exec/namespaces.h"
#include "daemon/exec/operator_cgroup.h"
#include "daemon/exec/pty.h"
#include "daemon/exec/seccomp_filter.h"
#include "daemon/rootfs/instances.h"
#include "daemon/rootfs/mountinfo.h"
#include "daemon/rootfs/pod_rootfs.h"

namespace sc {
namespace {

constexpr const char* kMethod = "Exec";
using Details = std::vector<std::pair<std::string, std::string>>;

// A counted slot of the session limits; released on destruction.
class SessionSlot {
 public:
  // A slot for a session of `pod` ("" for a caller in no pod), or
  // RESOURCE_EXHAUSTED naming the limit that is reached.
  static absl::StatusOr<std::unique_ptr<SessionSlot>> Take(std::mutex* mu, int* total,
                                                           std::map<std::string, int>* per_pod,
                                                           std::string pod, int max_total,
                                                           int max_per_pod) {
    std::lock_guard<std::mutex> lock(*mu);
    if (*total >= max_total) {
      return absl::ResourceExhaustedError(absl::StrCat("the node runs ", *total,
                                                       " exec sessions, its maximum "
                                                       "(--max_execs); retry later"));
    }
    if (!pod.empty() && (*per_pod)[pod] >= max_per_pod) {
      return absl::ResourceExhaustedError(absl::StrCat("this pod runs ", (*per_pod)[pod],
                                                       " exec sessions, its maximum "
                                                       "(--max_execs_per_pod); retry later"));
    }
    ++*total;
    if (!pod.empty()) ++(*per_pod)[pod];
    return std::make_unique<SessionSlot>(mu, total, per_pod, std::move(pod));
  }

  SessionSlot(std::mutex* mu, int* total, std::map<std::string, int>* per_pod, std::string pod)
      : mu_(mu), total_(total), per_pod_(per_pod), pod_(std::move(pod)) {}
  ~SessionSlot() {
    std::lock_guard<std::mutex> lock(*mu_);
    --*total_;
    if (!pod_.empty() && --(*per_pod_)[pod_] <= 0) per_pod_->erase(pod_);
  }

 private:
  std::mutex* mu_;
  int* total_;
  std::map<std::string, int>* per_pod_;
  std::string pod_;
};

// An operator's exec: the named instance's rootfs, which must be prepared.
absl::StatusOr<UniqueFd> OpenInstanceRootfs(const DaemonConfig& config,
                                            const v1::InstanceRef& ref) {
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) return s;
  std::string base = config.instance_base.empty() ? kDefaultInstanceBase : config.instance_base;
  UniqueFd base_fd(open(base.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!base_fd) return ErrnoStatus(errno, absl::StrCat("open instance base ", base));
  absl::StatusOr<std::string> real = FdTarget(base_fd.get());
  if (!real.ok()) return real.status();
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return table.status();
  InstanceLayout layout = LayoutFor(*real, ref.namespace_(), ref.name());
  InstanceView view = DeriveInstance(*table, layout.rootfs);
  if (view.status != InstanceStatus::kReady) {
    if (view.status == InstanceStatus::kReleased) {
      return absl::NotFoundError(absl::StrCat("instance ", ref.namespace_(), "/", ref.name(),
                                              " is not prepared on this node"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("instance ", ref.namespace_(), "/", ref.name(), " is only partly prepared"));
  }
  return OpenBeneath(base_fd.get(), absl::StrCat(ref.namespace_(), "/", ref.name(), "/rootfs"),
                     O_PATH | O_DIRECTORY);
}

// The supplementary groups of a process, from /proc/<pid>/status.
std::vector<gid_t> PeerGroups(const Peer& peer) {
  std::vector<gid_t> groups;
  absl::StatusOr<std::string> status = ReadFileAt(peer.proc_dir(), "status", 64 * 1024);
  if (!status.ok()) return groups;
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, "Groups:")) continue;
    for (absl::string_view g : absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
      uint32_t v = 0;
      if (absl::SimpleAtoi(g, &v)) groups.push_back(v);
    }
  }
  return groups;
}

// A command that could not be executed (126) or was not found (127): its
// exit message, and the session's audit details.
void ReportExecFailed(const LaunchResult& launched, ExecStream* stream, Details* details) {
  v1::ExecResponse response;
  v1::ExecExit* exit = response.mutable_exit();
  exit->set_exit_code(launched.exit_code);
  exit->set_message(launched.message);
  stream->Write(response);
  details->emplace_back("exit", absl::StrCat("exited ", launched.exit_code));
  details->emplace_back("message", launched.message);
}

// The steps of an Exec call, in the order ExecRaw takes them. Each that can
// fail returns the status the call ends with, having added to `details`
// what the audit record says.

// The first message, which must be a valid start.
absl::Status ReadStart(ExecStream* stream, v1::ExecRequest* first) {
  if (!stream->Read(first)) {
    return absl::InvalidArgumentError(stream->malformed() ? kMalformedExecRequest
                                                          : "the stream ended before start");
  }
  if (!first->has_start()) {
    return absl::InvalidArgumentError("the first message of Exec must be start");
  }
  return ValidateExecStart(first->start());
}

// The policy, with what it looks at; whom the process runs as once allowed:
// the caller, or ExecStart.user.
absl::StatusOr<Ask::RunAs> DecideExec(const Peer& peer, const v1::ExecStart& start) {
  Who who = WhoIs(peer);
  Ask ask(Method::kExec);
  ask.names_instance = !start.instance().namespace_().empty() || !start.instance().name().empty();
  ask.rootfs_path = !start.rootfs_path().empty();
  ask.by_reference = start.has_by_reference();
  Ask::RunAs run_as{peer.uid(), peer.gid(), {}};
  if (start.has_user()) {
    run_as.uid = start.user().uid();
    run_as.gid = start.user().gid();
    run_as.groups.assign(start.user().groups().begin(), start.user().groups().end());
    ask.user = run_as;
    who.groups = PeerGroups(peer);
  }
  if (absl::Status decided = Decide(who, ask); !decided.ok()) return decided;
  return run_as;
}

// Everything the process is started with, opened before any fork: `spec`
// points into the rest.
struct ExecProcess {
  ExecProcess() = default;
  ExecProcess(const ExecProcess&) = delete;
  ExecProcess& operator=(const ExecProcess&) = delete;

  LaunchSpec spec;
  NamespaceHandles namespaces;
  CgroupHandles cgroups;
  UniqueFd rootfs;
  SessionStdio stdio;
};

// What `start` asks to run, as whom, under the workloads' seccomp filter.
absl::Status DescribeProcess(const v1::ExecStart& start, const Ask::RunAs& run_as,
                             LaunchSpec* spec) {
  absl::StatusOr<const SeccompProgram*> seccomp = DefaultSeccompProgram();
  if (!seccomp.ok()) return seccomp.status();
  spec->seccomp = *seccomp;
  spec->argv.assign(start.argv().begin(), start.argv().end());
  spec->env.assign(start.env().begin(), start.env().end());
  spec->working_dir = start.working_dir().empty() ? "/" : start.working_dir();
  spec->working_dir_fallback = start.working_dir_inherited();
  spec->uid = run_as.uid;
  spec->gid = run_as.gid;
  spec->groups = run_as.groups;
  return absl::OkStatus();
}

// A pod's exec: the rootfs as the pod sees it, the pod's namespaces and
// cgroups, its oom_score_adj and limits.
absl::Status OpenPodHandles(const DaemonConfig& config, const Peer& peer,
                            const v1::ExecStart& start, ExecProcess* process, Details* details) {
  LaunchSpec& spec = process->spec;
  std::string path = start.rootfs_path();
  if (path.empty()) {
    path = config.pod_rootfs_path.empty() ? kDefaultPodRootfsPath : config.pod_rootfs_path;
  }
  details->emplace_back("rootfs", path);
  absl::StatusOr<std::pair<UniqueFd, UniqueFd>> opened = OpenPodRootfs(
      peer, path, config.instance_base.empty() ? kDefaultInstanceBase : config.instance_base);
  if (!opened.ok()) return opened.status();
  process->rootfs = std::move(opened->first);
  absl::StatusOr<NamespaceHandles> ns = OpenPeerNamespaces(peer);
  if (!ns.ok()) return ns.status();
  process->namespaces = *std::move(ns);
  absl::StatusOr<CgroupHandles> cg = OpenPeerCgroups(peer);
  if (!cg.ok()) return cg.status();
  process->cgroups = *std::move(cg);
  spec.namespaces = &process->namespaces;
  spec.cgroups = &process->cgroups;
  absl::StatusOr<std::string> oom = ReadFileAt(peer.proc_dir(), "oom_score_adj", 64);
  int oom_value = 0;
  if (oom.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*oom), &oom_value)) {
    spec.oom_score_adj = oom_value;
  }
  // The peer's own limits, so the workload gets what the pod would.
  for (int r = 0; r < RLIMIT_NLIMITS; ++r) {
    rlimit lim{};
    if (prlimit(peer.pid(), static_cast<__rlimit_resource>(r), nullptr, &lim) == 0) {
      spec.rlimits.emplace_back(r, lim);
    }
  }
  return peer.CheckAlive();
}

// An operator's exec: the named instance's rootfs, and a cgroup of its own.
absl::Status OpenOperatorHandles(const DaemonConfig& config, const v1::ExecStart& start,
                                 ExecProcess* process, Details* details) {
  LaunchSpec& spec = process->spec;
  details->emplace_back("instance", absl::StrCat(start.instance().namespace_().substr(0, 63), "/",
                                                 start.instance().name().substr(0, 63)));
  absl::StatusOr<UniqueFd> opened = OpenInstanceRootfs(config, start.instance());
  if (!opened.ok()) return opened.status();
  process->rootfs = *std::move(opened);
  // A cgroup of its own, with device and pids limits (operator_cgroup.h).
  absl::StatusOr<CgroupHandles> cg =
      OpenOperatorExecCgroups(OperatorCgroupOptions{config.operator_exec_pids_max});
  if (!cg.ok()) return cg.status();
  process->cgroups = *std::move(cg);
  spec.cgroups = &process->cgroups;
  // Not the daemon's raised fd limit.
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = std::min<rlim_t>(nofile.rlim_max, 1024);
  spec.rlimits.emplace_back(RLIMIT_NOFILE, nofile);
  return absl::OkStatus();
}

// stdio: a terminal of the session's own, or pipes when the session streams.
absl::Status OpenStdio(const v1::ExecStart& start, uid_t uid, ExecProcess* process) {
  LaunchSpec& spec = process->spec;
  process->stdio.tty = start.tty();
  if (process->stdio.tty) {
    winsize size{};
    size.ws_row = static_cast<unsigned short>(start.window_size().rows());
    size.ws_col = static_cast<unsigned short>(start.window_size().cols());
    size.ws_xpixel = static_cast<unsigned short>(start.window_size().x_pixels());
    size.ws_ypixel = static_cast<unsigned short>(start.window_size().y_pixels());
    if (size.ws_row == 0 || size.ws_col == 0) {
      size.ws_row = 24;
      size.ws_col = 80;
    }
    // A devpts of the session's own, the slave the workload's (pty.h).
    absl::StatusOr<Pty> opened = OpenSessionPty(uid, size);
    if (!opened.ok()) return opened.status();
    process->stdio.pty = *std::move(opened);
    spec.tty_fd = process->stdio.pty.slave.get();
    spec.devpts_fd = process->stdio.pty.devpts.get();
    bool has_term = false;
    for (const std::string& e : spec.env) has_term = has_term || e.rfind("TERM=", 0) == 0;
    if (!has_term) spec.env.push_back("TERM=xterm");
  } else if (!start.has_by_reference()) {
    if (absl::Status s = OpenSessionPipes(&process->stdio); !s.ok()) return s;
    spec.stdin_fd = process->stdio.in.read.get();
    spec.stdout_fd = process->stdio.out.write.get();
    spec.stderr_fd = process->stdio.err.write.get();
  }
  return absl::OkStatus();
}

// Every handle before any fork.
absl::Status OpenProcess(const DaemonConfig& config, const Peer& peer, const v1::ExecStart& start,
                         const Ask::RunAs& run_as, ExecProcess* process, Details* details) {
  if (absl::Status s = DescribeProcess(start, run_as, &process->spec); !s.ok()) return s;
  absl::Status opened = peer.kind() == PeerKind::kPod
                            ? OpenPodHandles(config, peer, start, process, details)
                            : OpenOperatorHandles(config, start, process, details);
  if (!opened.ok()) return opened;
  process->spec.rootfs_fd = process->rootfs.get();
  return OpenStdio(start, run_as.uid, process);
}

// Stdio by reference: the caller's own files, a keeper in its pod as the
// workload's parent (keeper.h), and this call ends once it runs.
absl::Status StartByReference(const DaemonConfig& config, const Peer& peer,
                              const v1::ExecStart& start, ExecProcess* process, ExecStream* stream,
                              Details* details) {
  LaunchSpec& spec = process->spec;
  bool tty = start.tty();
  absl::StatusOr<CallerStdio> taken =
      TakeCallerStdio(peer, start.by_reference(), tty, config.socket.path);
  if (!taken.ok()) return taken.status();
  details->emplace_back("stdio", "by_reference");
  LaunchSpec::Keeper keeper;
  keeper.status_fd = taken->status.get();
  keeper.control_fd = taken->control.get();
  keeper.grace_ms = static_cast<int>(absl::ToInt64Milliseconds(config.exec_kill_grace));
  if (tty) {
    keeper.master_fd = process->stdio.pty.master.get();
    keeper.relay_in_fd = taken->in.get();
    keeper.relay_out_fd = taken->out.get();
  } else {
    spec.stdin_fd = taken->in.get();
    spec.stdout_fd = taken->out.get();
    spec.stderr_fd = taken->err.get();
  }
  spec.keeper = keeper;
  absl::StatusOr<LaunchResult> launched = Launch(spec);
  // Only the keeper and the workload hold them now.
  taken = CallerStdio{};
  process->stdio.pty = Pty{};
  if (!launched.ok()) return launched.status();
  details->emplace_back("keeper_pid", absl::StrCat(launched->keeper_pid));
  v1::ExecResponse response;
  if (launched->exec_failed) {
    ReportExecFailed(*launched, stream, details);
    return absl::OkStatus();
  }
  details->emplace_back("event", "started");
  details->emplace_back("pid", absl::StrCat(launched->host_pid));
  details->emplace_back("ns_pid", absl::StrCat(launched->ns_pid));
  response.mutable_started()->set_pid(launched->ns_pid);
  response.mutable_started()->set_by_reference(true);
  stream->Write(response);
  return absl::OkStatus();
}

// A streaming session: the process's stdio as messages, from its start to
// its exit status, with the output drained first.
absl::Status RunStreamingSession(grpc::ServerContext* context, const DaemonConfig& config,
                                 const Peer& peer, AuditLog* audit, ExecProcess* process,
                                 ExecStream* stream, Details* details) {
  absl::StatusOr<LaunchResult> launched = Launch(process->spec);
  // The child's ends: only the process may hold them, or EOF never comes.
  process->stdio.pty.slave.reset();
  process->stdio.pty.devpts.reset();
  process->stdio.in.read.reset();
  process->stdio.out.write.reset();
  process->stdio.err.write.reset();
  if (!launched.ok()) return launched.status();

  if (launched->exec_failed) {
    ReportExecFailed(*launched, stream, details);
    return absl::OkStatus();
  }

  Workload workload(launched->host_pid, std::move(launched->pidfd), std::move(launched->init));
  {
    Details started = *details;
    started.emplace_back("event", "started");
    started.emplace_back("pid", absl::StrCat(launched->host_pid));
    started.emplace_back("ns_pid", absl::StrCat(launched->ns_pid));
    audit->Write({kMethod, &peer, "", absl::OkStatus(), std::move(started)});
  }
  details->emplace_back("pid", absl::StrCat(launched->host_pid));
  {
    v1::ExecResponse response;
    response.mutable_started()->set_pid(launched->ns_pid);
    stream->Write(response);
  }

  return RelaySession(context, config.exec_kill_grace, &workload, &process->stdio, stream, details);
}

}  // namespace

void MountHelperService::ServeExecRaw() {
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          v1::MountHelper::service_full_name());
  // The generated Service registers its methods in the descriptor's order.
  int index = service->FindMethodByName("Exec")->index();
  MarkMethodStreamed(
      index, new grpc::internal::BidiStreamingHandler<MountHelperService, grpc::ByteBuffer,
                                                      grpc::ByteBuffer>(
                 [](MountHelperService* self, grpc::ServerContext* context, ExecStream::Raw* raw) {
                   return self->ExecRaw(context, raw);
                 },
                 this));
}

grpc::Status MountHelperService::ExecRaw(grpc::ServerContext* context, ExecStream::Raw* raw) {
  ExecStream wire(raw);
  ExecStream* stream = &wire;
  absl::StatusOr<std::shared_ptr<const Peer>> caller = Caller(context, kMethod);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const Peer& peer = **caller;

  if (absl::Status admitted = Admit(Method::kExec, WhoIs(peer)); !admitted.ok()) {
    return Finish(kMethod, peer, admitted);
  }
  // Limits, counted from the moment the stream is open, before its first
  // message: a stream waiting for start holds a handler thread, so a pod that
  // opens streams and never starts them is bounded like one that does.
  absl::StatusOr<std::unique_ptr<SessionSlot>> taken = SessionSlot::Take(
      &exec_mu_, &execs_total_, &execs_per_pod_, peer.pod() ? peer.pod()->pod_uid : "",
      config_.max_execs_total, config_.max_execs_per_pod);
  if (!taken.ok()) return Finish(kMethod, peer, AsDenial(taken.status()));
  std::unique_ptr<SessionSlot> slot = *std::move(taken);
  // Every return below ends the session through this Finish, which hides the
  // member of that name: it gives the slot back first and then writes the
  // session's record, so whoever has read the record (an operator, a client
  // that cancelled and watches the audit log, the hostile catalogue) may count
  // on the slot being free. With the slot freed by the destructor, after the
  // record, a busy node could show the record while the slot was still held.
  auto Finish = [this, &slot](const char* method, const Peer& who, const absl::Status& status,
                              Details details = {}) {
    slot.reset();
    return MountHelperService::Finish(method, who, status, std::move(details));
  };

  v1::ExecRequest first;
  if (absl::Status s = ReadStart(stream, &first); !s.ok()) return Finish(kMethod, peer, s);
  v1::ExecStart& start = *first.mutable_start();
  Details details = {{"argv0", start.argv(0).substr(0, 256)}, {"tty", start.tty() ? "1" : "0"}};
  absl::StatusOr<Ask::RunAs> run_as = DecideExec(peer, start);
  if (!run_as.ok()) return Finish(kMethod, peer, run_as.status(), details);

  ExecProcess process;
  if (absl::Status s = OpenProcess(config_, peer, start, *run_as, &process, &details); !s.ok()) {
    return Finish(kMethod, peer, s, details);
  }

  absl::Status ended =
      start.has_by_reference()
          ? StartByReference(config_, peer, start, &process, stream, &details)
          : RunStreamingSession(context, config_, peer, audit_, &process, stream, &details);
  return Finish(kMethod, peer, ended, details);
}

}  // namespace sc
