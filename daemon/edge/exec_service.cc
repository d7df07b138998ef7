// The Exec RPC: the gRPC edge of a chroot exec session.
//
// Threads: the handler thread (a gRPC sync thread) launches the process and
// then pumps its output into the stream; one reader thread per session reads
// client messages and applies them (stdin, EOF, resize, signals). The sync API
// is kept on purpose: a blocking stream Write() is exactly the flow control
// the issue asks for (the pump reads the next chunk from the process only
// after gRPC took the previous one, so a slow client makes the process block
// on write), and a blocking write() into the stdin pipe back-pressures the
// client in the same way. The callback API would need an I/O thread of its
// own for the pipes anyway. The stream carries raw ByteBuffers (exec_stream.h)
// so that output is read straight into the slice gRPC sends: no copy in user
// space.
//
// Memory per session, bounded: one output slice (kOutputChunk = 1 MiB) being
// filled by the pump plus the message gRPC is sending, one stdin message (at
// most 1 MiB, refused beyond) in the reader, plus gRPC's per-stream HTTP/2
// flow-control window; nothing else grows with the amount of data. The pipes
// hold up to 1 MiB each: output charged to the pod (their writer), stdin to
// the daemon.
#include <fcntl.h>
#include <google/protobuf/descriptor.h>
#include <grpcpp/support/method_handler.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/defaults.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/paths.h"
#include "daemon/base/syscalls.h"
#include "daemon/edge/exec_stream.h"
#include "daemon/edge/service.h"
#include "daemon/edge/status_util.h"
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
#include "spdlog/spdlog.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace sc {
namespace {

constexpr const char* kMethod = "Exec";
constexpr const char* kMalformed =
    "a message does not parse as an ExecRequest (is the client built from this daemon's "
    "mounthelper.proto?)";
// Output goes out in messages of up to kOutputChunk: whatever the process
// has written when the pump wakes up, read in one go. Per-message costs (two
// thread hand-offs in gRPC's sync API, an HTTP/2 frame header, a wake-up of
// the client) then stay small against the copying; with 32 KiB messages
// they were most of the daemon's CPU time. The process's pipes are made as
// large: one read finds a full message while the previous one is being sent,
// and a 1 MiB stdin message goes in with one write.
constexpr size_t kOutputChunk = 1 << 20;
// What all sessions together may hold in output being read and sent: with
// many sessions at once each reads at most its share (not below
// kCopyBelow), so 256 busy sessions read 128 KiB each, not 1 MiB.
constexpr size_t kOutputBudget = 32 << 20;
constexpr int kPipeSize = 1 << 20;
// Output smaller than this is copied into a message of its own size.
constexpr size_t kCopyBelow = 64 * 1024;
// After the exit message, how long a client gets to half-close before the
// call is cancelled from our side (sc-exec half-closes at once).
constexpr auto kClientCloseWait = std::chrono::seconds(5);

using Details = std::vector<std::pair<std::string, std::string>>;

// A counted slot of the session limits; released on destruction.
class SessionSlot {
 public:
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

// Writes all of `data` to a non-blocking fd, waiting for room; gives up when
// `stop_fd` becomes readable. Returns errno (0 on success, ECANCELED on stop).
int WriteAll(int fd, absl::string_view data, int stop_fd) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return errno;
    pollfd pfds[2] = {{fd, POLLOUT, 0}, {stop_fd, POLLIN, 0}};
    if (poll(pfds, 2, -1) < 0 && errno != EINTR) return errno;
    if (pfds[1].revents & POLLIN) return ECANCELED;
    if (pfds[0].revents & (POLLERR | POLLHUP)) return EPIPE;
  }
  return 0;
}

size_t SlicesSize(const std::vector<grpc::Slice>& slices) {
  size_t size = 0;
  for (const grpc::Slice& s : slices) size += s.size();
  return size;
}

// WriteAll for the pieces of a message as gRPC delivered them (writev).
int WriteAllSlices(int fd, std::vector<grpc::Slice>* slices, int stop_fd) {
  std::vector<iovec> iov;
  for (const grpc::Slice& s : *slices) {
    if (s.size() > 0) iov.push_back({const_cast<uint8_t*>(s.begin()), s.size()});
  }
  size_t first = 0;
  while (first < iov.size()) {
    int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = writev(fd, iov.data() + first, count);
    if (n > 0) {
      size_t done = static_cast<size_t>(n);
      while (first < iov.size() && done >= iov[first].iov_len) {
        done -= iov[first].iov_len;
        ++first;
      }
      if (done > 0) {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + done;
        iov[first].iov_len -= done;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return errno;
    pollfd pfds[2] = {{fd, POLLOUT, 0}, {stop_fd, POLLIN, 0}};
    if (poll(pfds, 2, -1) < 0 && errno != EINTR) return errno;
    if (pfds[1].revents & POLLIN) return ECANCELED;
    if (pfds[0].revents & (POLLERR | POLLHUP)) return EPIPE;
  }
  return 0;
}

void Notify(int eventfd_fd) {
  uint64_t one = 1;
  ssize_t n = write(eventfd_fd, &one, sizeof(one));
  (void)n;
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

absl::StatusOr<Pipe> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

absl::Status SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, "fcntl(O_NONBLOCK)");
  }
  return absl::OkStatus();
}

// Counts the sessions pumping output, for their share of kOutputBudget.
class ActivePumps {
 public:
  ActivePumps() { active_.fetch_add(1); }
  ~ActivePumps() { active_.fetch_sub(1); }
  size_t count() const { return static_cast<size_t>(std::max(1, active_.load())); }

 private:
  static std::atomic<int> active_;
};
std::atomic<int> ActivePumps::active_{0};

// The running process, shared by the pump and the reader: signals go to its
// process group only while the leader is unreaped (its pid, and so the group
// id, cannot have been reused until then).
class Workload {
 public:
  Workload(pid_t pid, UniqueFd pidfd, PidNamespaceInit init)
      : pid_(pid), pidfd_(std::move(pidfd)), init_(std::move(init)) {}
  int pidfd() const { return pidfd_.get(); }

  void SignalGroup(int sig) {
    std::lock_guard<std::mutex> lock(mu_);
    if (reaped_) return;
    if (kill(-pid_, sig) != 0) PidfdSendSignal(pidfd_.get(), sig, nullptr, 0);
  }
  // Reaps the exited leader; with `kill_group`, first SIGKILLs what is left
  // of its group (a cancelled session leaves nothing behind).
  bool Reap(bool kill_group, siginfo_t* info) {
    std::lock_guard<std::mutex> lock(mu_);
    if (reaped_) return true;
    if (kill_group) kill(-pid_, SIGKILL);
    *info = {};
    if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), info,
               WEXITED | WNOHANG) != 0) {
      return false;
    }
    if (info->si_pid == 0) return false;  // not yet
    reaped_ = true;
    // An operator's exec: its pid namespace ends with its command, and with
    // it whatever the command left there holding the output open.
    init_.Stop();
    return true;
  }
  // Last resort when the session ends abnormally: kill and reap.
  void KillAndReap() {
    siginfo_t info;
    SignalGroup(SIGKILL);
    PidfdSendSignal(pidfd_.get(), SIGKILL, nullptr, 0);
    pollfd pfd{pidfd_.get(), POLLIN, 0};
    poll(&pfd, 1, 10000);
    Reap(true, &info);
  }
  bool reaped() {
    std::lock_guard<std::mutex> lock(mu_);
    return reaped_;
  }

 private:
  std::mutex mu_;
  pid_t pid_;
  UniqueFd pidfd_;
  PidNamespaceInit init_;
  bool reaped_ = false;
};

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
  std::string pod_key = peer.pod() ? peer.pod()->pod_uid : "";
  std::unique_ptr<SessionSlot> slot;
  {
    std::lock_guard<std::mutex> lock(exec_mu_);
    if (execs_total_ >= config_.max_execs_total) {
      return Finish(kMethod, peer,
                    absl::ResourceExhaustedError(absl::StrCat("the node runs ", execs_total_,
                                                              " exec sessions, its maximum "
                                                              "(--max_execs); retry later")),
                    {}, true);
    }
    if (!pod_key.empty() && execs_per_pod_[pod_key] >= config_.max_execs_per_pod) {
      return Finish(
          kMethod, peer,
          absl::ResourceExhaustedError(absl::StrCat("this pod runs ", execs_per_pod_[pod_key],
                                                    " exec sessions, its maximum "
                                                    "(--max_execs_per_pod); retry later")),
          {}, true);
    }
    ++execs_total_;
    if (!pod_key.empty()) ++execs_per_pod_[pod_key];
    slot = std::make_unique<SessionSlot>(&exec_mu_, &execs_total_, &execs_per_pod_, pod_key);
  }
  // Every return below ends the session through this Finish, which hides the
  // member of that name: it gives the slot back first and then writes the
  // session's record, so whoever has read the record (an operator, a client
  // that cancelled and watches the audit log, the hostile catalogue) may count
  // on the slot being free. With the slot freed by the destructor, after the
  // record, a busy node could show the record while the slot was still held.
  auto Finish = [this, &slot](const char* method, const Peer& who, const absl::Status& status,
                              Details details = {}, bool refused = false) {
    slot.reset();
    return MountHelperService::Finish(method, who, status, std::move(details), refused);
  };

  v1::ExecRequest first;
  if (!stream->Read(&first)) {
    return Finish(kMethod, peer,
                  absl::InvalidArgumentError(
                      stream->malformed() ? kMalformed : "the stream ended before start"));
  }
  if (!first.has_start()) {
    return Finish(kMethod, peer,
                  absl::InvalidArgumentError("the first message of Exec must be start"));
  }
  v1::ExecStart& start = *first.mutable_start();
  if (absl::Status s = ValidateExecStart(start); !s.ok()) return Finish(kMethod, peer, s);
  Details details = {{"argv0", start.argv(0).substr(0, 256)}, {"tty", start.tty() ? "1" : "0"}};

  // The policy, with what it looks at.
  Who who = WhoIs(peer);
  Ask ask(Method::kExec);
  ask.names_instance = !start.instance().namespace_().empty() || !start.instance().name().empty();
  ask.rootfs_path = !start.rootfs_path().empty();
  ask.by_reference = start.has_by_reference();
  uid_t uid = peer.uid();
  gid_t gid = peer.gid();
  std::vector<gid_t> groups;
  if (start.has_user()) {
    uid = start.user().uid();
    gid = start.user().gid();
    groups.assign(start.user().groups().begin(), start.user().groups().end());
    ask.user = Ask::RunAs{uid, gid, groups};
    who.groups = PeerGroups(peer);
  }
  if (absl::Status decided = Decide(who, ask); !decided.ok()) {
    return Finish(kMethod, peer, decided, details);
  }

  // Every handle before any fork.
  absl::StatusOr<const SeccompProgram*> seccomp = DefaultSeccompProgram();
  if (!seccomp.ok()) return Finish(kMethod, peer, seccomp.status(), details);
  LaunchSpec spec;
  spec.seccomp = *seccomp;
  spec.argv.assign(start.argv().begin(), start.argv().end());
  spec.env.assign(start.env().begin(), start.env().end());
  spec.working_dir = start.working_dir().empty() ? "/" : start.working_dir();
  spec.working_dir_fallback = start.working_dir_inherited();
  spec.uid = uid;
  spec.gid = gid;
  spec.groups = groups;

  NamespaceHandles namespaces;
  CgroupHandles cgroups;
  UniqueFd rootfs;
  if (peer.kind() == PeerKind::kPod) {
    std::string path = start.rootfs_path();
    if (path.empty()) {
      path = config_.pod_rootfs_path.empty() ? kDefaultPodRootfsPath : config_.pod_rootfs_path;
    }
    details.emplace_back("rootfs", path);
    absl::StatusOr<std::pair<UniqueFd, UniqueFd>> opened = OpenPodRootfs(
        peer, path, config_.instance_base.empty() ? kDefaultInstanceBase : config_.instance_base);
    if (!opened.ok()) return Finish(kMethod, peer, opened.status(), details);
    rootfs = std::move(opened->first);
    absl::StatusOr<NamespaceHandles> ns = OpenPeerNamespaces(peer);
    if (!ns.ok()) return Finish(kMethod, peer, ns.status(), details);
    namespaces = *std::move(ns);
    absl::StatusOr<CgroupHandles> cg = OpenPeerCgroups(peer);
    if (!cg.ok()) return Finish(kMethod, peer, cg.status(), details);
    cgroups = *std::move(cg);
    spec.namespaces = &namespaces;
    spec.cgroups = &cgroups;
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
    if (absl::Status alive = peer.CheckAlive(); !alive.ok()) {
      return Finish(kMethod, peer, alive, details);
    }
  } else {
    details.emplace_back("instance", absl::StrCat(start.instance().namespace_().substr(0, 63), "/",
                                                  start.instance().name().substr(0, 63)));
    absl::StatusOr<UniqueFd> opened = OpenInstanceRootfs(config_, start.instance());
    if (!opened.ok()) return Finish(kMethod, peer, opened.status(), details);
    rootfs = *std::move(opened);
    // A cgroup of its own, with device and pids limits (operator_cgroup.h).
    absl::StatusOr<CgroupHandles> cg =
        OpenOperatorExecCgroups(OperatorCgroupOptions{config_.operator_exec_pids_max});
    if (!cg.ok()) return Finish(kMethod, peer, cg.status(), details);
    cgroups = *std::move(cg);
    spec.cgroups = &cgroups;
    // Not the daemon's raised fd limit.
    rlimit nofile{};
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = std::min<rlim_t>(nofile.rlim_max, 1024);
    spec.rlimits.emplace_back(RLIMIT_NOFILE, nofile);
  }
  spec.rootfs_fd = rootfs.get();

  // stdio.
  bool tty = start.tty();
  Pty pty;
  Pipe in, out, err;
  if (tty) {
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
    if (!opened.ok()) return Finish(kMethod, peer, opened.status(), details);
    pty = *std::move(opened);
    spec.tty_fd = pty.slave.get();
    spec.devpts_fd = pty.devpts.get();
    bool has_term = false;
    for (const std::string& e : spec.env) has_term = has_term || e.rfind("TERM=", 0) == 0;
    if (!has_term) spec.env.push_back("TERM=xterm");
  } else if (!start.has_by_reference()) {
    for (Pipe* p : {&in, &out, &err}) {
      absl::StatusOr<Pipe> made = MakePipe();
      if (!made.ok()) return Finish(kMethod, peer, made.status(), details);
      *p = *std::move(made);
    }
    for (int fd : {in.write.get(), out.read.get(), err.read.get()}) {
      if (absl::Status s = SetNonBlocking(fd); !s.ok()) return Finish(kMethod, peer, s, details);
    }
    // Best effort: pipe-max-size or the per-user pipe limits may refuse it,
    // and the default size works, only slower.
    for (int fd : {in.write.get(), out.read.get(), err.read.get()}) {
      fcntl(fd, F_SETPIPE_SZ, kPipeSize);
    }
    spec.stdin_fd = in.read.get();
    spec.stdout_fd = out.write.get();
    spec.stderr_fd = err.write.get();
  }

  if (start.has_by_reference()) {
    // Stdio by reference: the caller's own files, a keeper in its pod as the
    // workload's parent (keeper.h), and this call ends once it runs.
    absl::StatusOr<CallerStdio> taken =
        TakeCallerStdio(peer, start.by_reference(), tty, config_.socket.path);
    if (!taken.ok()) return Finish(kMethod, peer, taken.status(), details);
    details.emplace_back("stdio", "by_reference");
    LaunchSpec::Keeper keeper;
    keeper.status_fd = taken->status.get();
    keeper.control_fd = taken->control.get();
    keeper.grace_ms = static_cast<int>(absl::ToInt64Milliseconds(config_.exec_kill_grace));
    if (tty) {
      keeper.master_fd = pty.master.get();
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
    pty = Pty{};
    if (!launched.ok()) return Finish(kMethod, peer, launched.status(), details);
    details.emplace_back("keeper_pid", absl::StrCat(launched->keeper_pid));
    v1::ExecResponse response;
    if (launched->exec_failed) {
      ReportExecFailed(*launched, stream, &details);
      return Finish(kMethod, peer, absl::OkStatus(), details);
    }
    details.emplace_back("event", "started");
    details.emplace_back("pid", absl::StrCat(launched->host_pid));
    details.emplace_back("ns_pid", absl::StrCat(launched->ns_pid));
    response.mutable_started()->set_pid(launched->ns_pid);
    response.mutable_started()->set_by_reference(true);
    stream->Write(response);
    return Finish(kMethod, peer, absl::OkStatus(), details);
  }

  absl::StatusOr<LaunchResult> launched = Launch(spec);
  // The child's ends: only the process may hold them, or EOF never comes.
  pty.slave.reset();
  pty.devpts.reset();
  in.read.reset();
  out.write.reset();
  err.write.reset();
  if (!launched.ok()) return Finish(kMethod, peer, launched.status(), details);

  if (launched->exec_failed) {
    ReportExecFailed(*launched, stream, &details);
    return Finish(kMethod, peer, absl::OkStatus(), details);
  }

  Workload workload(launched->host_pid, std::move(launched->pidfd), std::move(launched->init));
  {
    Details started = details;
    started.emplace_back("event", "started");
    started.emplace_back("pid", absl::StrCat(launched->host_pid));
    started.emplace_back("ns_pid", absl::StrCat(launched->ns_pid));
    audit_->Write({kMethod, &peer, "", absl::OkStatus(), "allow", std::move(started)});
  }
  details.emplace_back("pid", absl::StrCat(launched->host_pid));
  {
    v1::ExecResponse response;
    response.mutable_started()->set_pid(launched->ns_pid);
    stream->Write(response);
  }

  UniqueFd pump_wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  UniqueFd reader_stop(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!pump_wake || !reader_stop) {
    workload.KillAndReap();
    return Finish(kMethod, peer, ErrnoStatus(errno, "eventfd"), details);
  }
  std::atomic<bool> client_gone{false};  // cancelled or disconnected
  std::atomic<bool> reader_done{false};
  absl::Status protocol_error;  // written by the reader before protocol_failed
  std::atomic<bool> protocol_failed{false};
  int tty_fd = pty.master.get();

  std::thread reader([&] {
    ExecInput input(tty);
    UniqueFd stdin_fd = std::move(in.write);
    bool stdin_dead = false;  // the process closed its stdin: discard
    v1::ExecRequest request;
    auto close_stdin = [&] {
      if (tty) {
        // A terminal has no half-close: EOF is the VEOF character at the
        // start of a line, as a person would type it.
        termios t{};
        char eof = tcgetattr(tty_fd, &t) == 0 ? static_cast<char>(t.c_cc[VEOF]) : '\x04';
        WriteAll(tty_fd, absl::string_view(&eof, 1), reader_stop.get());
      } else {
        stdin_fd.reset();
      }
    };
    std::vector<grpc::Slice> stdin_data;  // a stdin message, as it arrived
    while (true) {
      ExecStream::Got got = stream->ReadInput(&request, &stdin_data);
      if (got == ExecStream::Got::kEnd) {
        // Garbage is a protocol error, not a half-close.
        if (stream->malformed()) {
          protocol_error = absl::InvalidArgumentError(kMalformed);
          protocol_failed = true;
          Notify(pump_wake.get());
        }
        break;
      }
      absl::StatusOr<ExecInput::Action> action = got == ExecStream::Got::kStdin
                                                     ? input.OnStdin(SlicesSize(stdin_data))
                                                     : input.OnMessage(&request);
      if (!action.ok()) {
        protocol_error = action.status();
        protocol_failed = true;
        Notify(pump_wake.get());
        break;
      }
      switch (action->kind) {
        case ExecInput::Kind::kStdin: {
          if (stdin_dead) break;
          int target = tty ? tty_fd : stdin_fd.get();
          int rc = got == ExecStream::Got::kStdin
                       ? WriteAllSlices(target, &stdin_data, reader_stop.get())
                       : WriteAll(target, action->data, reader_stop.get());
          if (rc != 0) stdin_dead = true;
          break;
        }
        case ExecInput::Kind::kStdinEof:
          close_stdin();
          break;
        case ExecInput::Kind::kResize:
          ioctl(tty_fd, TIOCSWINSZ, &action->size);
          break;
        case ExecInput::Kind::kSignal:
          workload.SignalGroup(action->signal);
          break;
        case ExecInput::Kind::kNone:
          break;
      }
    }
    if (protocol_error.ok()) {
      if (context->IsCancelled()) {
        client_gone = true;
      } else if (input.OnHalfClose().kind == ExecInput::Kind::kStdinEof) {
        close_stdin();
      }
    }
    reader_done = true;
    Notify(pump_wake.get());
  });

  // The pump.
  ExecOutput output(tty);
  int out_fd = tty ? pty.master.get() : out.read.get();
  int err_fd = tty ? -1 : err.read.get();
  bool discard = false;  // nobody to send to any more
  bool stopping = false;
  std::string stop_reason;
  std::chrono::steady_clock::time_point kill_at{};
  bool killed = false;
  // The slice output is read into. A large read leaves in it as it is (gRPC
  // holds it until sent; the next read gets a new one), a small one is copied
  // out and the slice reused: a keystroke's echo does not pin 1 MiB.
  grpc::Slice buffer;

  ActivePumps pumps;

  // Reads what the process has written, up to a chunk, and sends it as one
  // message; false once the fd is at EOF (EIO: a pty whose slave side is
  // gone), after sending what came before it.
  auto read_into_stream = [&](int fd, bool is_stderr) {
    size_t chunk = std::clamp(kOutputBudget / pumps.count(), kCopyBelow, kOutputChunk);
    if (buffer.size() < chunk) buffer = grpc::Slice(chunk);
    uint8_t* data = const_cast<uint8_t*>(buffer.begin());
    size_t got = 0;
    bool eof = false;
    while (got < chunk) {
      ssize_t n = read(fd, data + got, chunk - got);
      if (n > 0) {
        got += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      eof = n == 0 || errno != EAGAIN;
      break;
    }
    if (got == 0 || discard) return !eof;
    grpc::Slice message;
    if (got >= kCopyBelow) {
      message = buffer.sub(0, got);
      buffer = grpc::Slice();
    } else {
      message = grpc::Slice(data, got);
    }
    // Blocks while the client's flow-control window is closed: this is what
    // keeps the process from producing faster than the client consumes.
    if (!stream->WriteOutput(is_stderr, std::move(message))) {
      discard = true;
      client_gone = true;
    }
    return !eof;
  };

  while (!output.Done()) {
    if (!client_gone && context->IsCancelled()) client_gone = true;
    if ((client_gone || protocol_failed) && !stopping) {
      stopping = true;
      discard = true;
      stop_reason = client_gone ? "the client went away" : "protocol error";
      Notify(reader_stop.get());
      workload.SignalGroup(SIGHUP);
      workload.SignalGroup(SIGCONT);
      workload.SignalGroup(SIGTERM);
      kill_at =
          std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(config_.exec_kill_grace);
    }
    // Cancelled and reaped: whoever still holds the pipes (a process that
    // left the group) gets no more waiting.
    if (stopping && output.exited()) break;
    // Wakes up at least once a second to notice a cancelled call even when
    // neither the process nor the client does anything.
    int timeout = 1000;
    if (stopping && !killed) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          kill_at - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        killed = true;
        workload.SignalGroup(SIGKILL);
        continue;
      }
      timeout = std::min<int>(timeout, static_cast<int>(left.count()) + 1);
    }
    pollfd pfds[4];
    int n = 0;
    int i_out = -1, i_err = -1, i_pid = -1;
    if (out_fd >= 0) {
      i_out = n;
      pfds[n++] = {out_fd, POLLIN, 0};
    }
    if (err_fd >= 0) {
      i_err = n;
      pfds[n++] = {err_fd, POLLIN, 0};
    }
    if (!output.exited()) {
      i_pid = n;
      pfds[n++] = {workload.pidfd(), POLLIN, 0};
    }
    int i_wake = n;
    pfds[n++] = {pump_wake.get(), POLLIN, 0};
    int rc = poll(pfds, n, timeout);
    if (rc < 0 && errno != EINTR) break;
    if (rc <= 0) continue;
    if (pfds[i_wake].revents & POLLIN) {
      uint64_t v;
      ssize_t r = read(pump_wake.get(), &v, sizeof(v));
      (void)r;
    }
    if (i_out >= 0 && pfds[i_out].revents != 0 && !read_into_stream(out_fd, false)) {
      output.OnStdoutEof();
      out_fd = -1;
    }
    if (i_err >= 0 && pfds[i_err].revents != 0 && !read_into_stream(err_fd, true)) {
      output.OnStderrEof();
      err_fd = -1;
    }
    if (i_pid >= 0 && (pfds[i_pid].revents & POLLIN)) {
      siginfo_t info;
      if (workload.Reap(stopping, &info)) output.OnExit(info.si_code, info.si_status);
    }
  }
  if (!workload.reaped()) workload.KillAndReap();

  if (!discard && !protocol_failed) {
    v1::ExecResponse response;
    *response.mutable_exit() = output.ExitMessage("");
    stream->Write(response);
  }
  // Stop the stdin writer, then give the client a moment to half-close.
  Notify(reader_stop.get());
  {
    pollfd pfd{pump_wake.get(), POLLIN, 0};
    auto deadline = std::chrono::steady_clock::now() + kClientCloseWait;
    while (!reader_done) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      poll(&pfd, 1, static_cast<int>(left.count()));
      uint64_t v;
      ssize_t r = read(pump_wake.get(), &v, sizeof(v));
      (void)r;
    }
    if (!reader_done) context->TryCancel();
  }
  reader.join();

  details.emplace_back("exit", output.Describe());
  if (stopping) details.emplace_back("stopped", stop_reason);
  if (!protocol_error.ok()) return Finish(kMethod, peer, protocol_error, details);
  if (client_gone) {
    return Finish(kMethod, peer, absl::CancelledError("the client went away"), details);
  }
  return Finish(kMethod, peer, absl::OkStatus(), details);
}

}  // namespace sc
