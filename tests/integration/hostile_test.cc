// The hostile-input catalogue (issue 6, item 3): a table of bad requests sent
// over the real socket to the real daemon, by an operator (root on the host)
// and by processes inside a simulated pod (its root, and uid 1000), with the
// gRPC C++ API itself, so that every field can be filled the way no client of
// ours would. Each row names the gRPC code it must get and a part of the
// message that tells a person what to fix. Afterwards the daemon must be
// SERVING and hold exactly the mounts (under the test's directory), fds and
// children it held before; the mounts are also compared after every row, so
// a row that leaves one behind is named.
#include <fcntl.h>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "daemon/rootfs/mountinfo.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mounthelper.grpc.pb.h"
#include "tests/integration/harness.h"

namespace sc::test {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::stoppablecontainer::mounthelper::v1;
using grpc::StatusCode;
using Clock = std::chrono::steady_clock;
using ExecRaw = grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>;

constexpr char kExecMethod[] = "/stoppablecontainer.mounthelper.v1.MountHelper/Exec";
// The daemon's session limits, as the test starts it.
constexpr int kPerPod = 64;
constexpr int kNodeWide = 200;
constexpr uid_t kPodUser = 1000;

grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  // Oversized messages must reach the daemon to be refused there.
  args.SetMaxSendMessageSize(-1);
  return args;
}

std::unique_ptr<grpc::ClientContext> Context(milliseconds deadline = milliseconds(30000)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + deadline);
  return context;
}

// A connection to the daemon made by a process that really is in a pod: it
// joins the pod's container cgroup and namespaces (forking once more so that
// it is inside the pod's pid namespace), optionally becomes `uid`, connects
// to the socket and hands the connected fd to the test over a socketpair.
// The daemon identifies the caller from that socket (SO_PEERCRED, pinned by
// its pidfd), so the process stays alive, doing nothing, until destruction;
// the gRPC client on the fd runs here.
class PodPeer {
 public:
  PodPeer(const SimulatedPod& pod, const std::string& socket, uid_t uid) {
    std::vector<UniqueFd> procs, namespaces;
    for (const std::string& dir : pod.cgroup_dirs()) {
      if (dir.size() < pod.container_id().size() ||
          dir.compare(dir.size() - pod.container_id().size(), std::string::npos,
                      pod.container_id()) != 0) {
        continue;
      }
      procs.emplace_back(open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
      if (!procs.back()) FAIL("open " << dir << "/cgroup.procs: " << strerror(errno));
    }
    std::string init = "/proc/" + std::to_string(pod.init_pid()) + "/ns/";
    for (const char* ns : {"ipc", "uts", "net", "pid", "mnt"}) {
      namespaces.emplace_back(open((init + ns).c_str(), O_RDONLY | O_CLOEXEC));
      if (!namespaces.back()) FAIL("open " << init << ns << ": " << strerror(errno));
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket.size() >= sizeof(addr.sun_path)) FAIL("socket path too long: " << socket);
    std::memcpy(addr.sun_path, socket.data(), socket.size());
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) FAIL("socketpair");
    UniqueFd ours(pair[0]), theirs(pair[1]);

    // The children keep only these: any other copy of a control socket's
    // end (ours, or another PodPeer's) would keep its reader from seeing EOF.
    std::vector<int> keep = {theirs.get()};
    for (const UniqueFd& fd : procs) keep.push_back(fd.get());
    for (const UniqueFd& fd : namespaces) keep.push_back(fd.get());
    std::sort(keep.begin(), keep.end());

    // Raw clones rather than fork(): no atfork handler of this (threaded)
    // process runs, and the children make system calls only.
    pid_ = static_cast<pid_t>(syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr));
    if (pid_ < 0) FAIL("clone: " << strerror(errno));
    if (pid_ == 0) {
      unsigned int next = 3;
      for (int fd : keep) {
        if (static_cast<unsigned int>(fd) > next) syscall(SYS_close_range, next, fd - 1, 0);
        next = static_cast<unsigned int>(fd) + 1;
      }
      syscall(SYS_close_range, next, ~0U, 0);
      for (const UniqueFd& fd : procs) {
        if (write(fd.get(), "0", 1) != 1) _exit(10);
      }
      for (const UniqueFd& fd : namespaces) {
        if (setns(fd.get(), 0) != 0) _exit(11);
      }
      long in_pod = syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
      if (in_pod < 0) _exit(12);
      if (in_pod == 0) {
        if (uid != 0 && (syscall(SYS_setgroups, 0, nullptr) != 0 ||
                         syscall(SYS_setresgid, uid, uid, uid) != 0 ||
                         syscall(SYS_setresuid, uid, uid, uid) != 0)) {
          _exit(13);
        }
        int conn = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (conn < 0 || connect(conn, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
          _exit(14);
        }
        if (!SendFd(theirs.get(), conn)) _exit(15);
        char byte;
        // Kept open: on kernels without SO_PEERPIDFD the daemon proves a
        // caller by the socket it holds when its first bytes arrive.
        // Until the test closes its end.
        while (read(theirs.get(), &byte, 1) > 0) {
        }
        close(conn);
        _exit(0);
      }
      int status = 0;
      while (waitpid(static_cast<pid_t>(in_pod), &status, 0) < 0 && errno == EINTR) {
      }
      _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 16);
    }
    theirs.reset();
    control_ = std::move(ours);

    pollfd pfd{control_.get(), POLLIN, 0};
    if (poll(&pfd, 1, 10000) != 1) FAIL("the pod process did not connect within 10 s");
    int fd = ReceiveFd(control_.get());
    if (fd < 0)
      FAIL("the pod process did not hand over its connection (it exited: see its status)");
    grpc::ChannelArguments args = ChannelArgs();
    channel_ = grpc::CreateCustomInsecureChannelFromFd("pod", fd, args);
  }
  ~PodPeer() {
    channel_.reset();
    control_.reset();
    if (pid_ <= 0) return;
    int status = 0;
    bool gone =
        PollUntil([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, milliseconds(10000));
    if (!gone) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  PodPeer(const PodPeer&) = delete;
  PodPeer& operator=(const PodPeer&) = delete;

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  pid_t pid_ = -1;
  UniqueFd control_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Who sends a row's request.
struct Caller {
  std::string name;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::MountHelper::Stub> stub;
};

// What came back: the status, and for an Exec that ran, how it ended.
struct Outcome {
  grpc::Status status;
  std::string exit;  // "exited 127: <message>", "killed by signal 9"; empty if none
};

Outcome FromStatus(grpc::Status status) { return {std::move(status), ""}; }

// Exec streams the test has opened: each ends with exactly one Exec record
// in the daemon's audit log, so their count tells when the daemon is done
// with all of them (and has given back their session slots).
int g_exec_streams = 0;

int EndedExecs(const DaemonProcess& daemon) {
  std::istringstream audit(daemon.AuditLog());
  std::string line;
  int ended = 0;
  while (std::getline(audit, line)) {
    if (line.find("\"method\":\"Exec\"") != std::string::npos &&
        line.find("\"event\":\"started\"") == std::string::npos) {
      ++ended;
    }
  }
  return ended;
}

bool WaitForExecsEnded(const DaemonProcess& daemon) {
  bool done = PollUntil([&] { return EndedExecs(daemon) == g_exec_streams; }, milliseconds(30000));
  INFO("exec streams opened " << g_exec_streams << ", ended in the audit log "
                              << EndedExecs(daemon));
  CHECK(done);
  return done;
}

std::string DescribeExit(const v1::ExecExit& exit) {
  std::string out = exit.status_case() == v1::ExecExit::kSignal
                        ? "killed by signal " + std::to_string(exit.signal())
                        : "exited " + std::to_string(exit.exit_code());
  if (!exit.message().empty()) out += ": " + exit.message();
  return out;
}

// One bad request.
struct Case {
  std::string what;
  Caller* caller;
  std::function<Outcome(Caller&)> send;
  StatusCode code;
  // A part of the status message (of the exit message when the code is OK)
  // that tells the caller what to fix.
  std::string message;
};

v1::InstanceRef Ref(const std::string& ns, const std::string& name) {
  v1::InstanceRef ref;
  ref.set_namespace_(ns);
  ref.set_name(name);
  return ref;
}

std::string Nul(const std::string& a, const std::string& b) { return a + std::string(1, '\0') + b; }

Outcome Prepare(Caller& c, const v1::InstanceRef& ref, const std::vector<std::string>& layers,
                bool set_layers = true) {
  v1::PrepareRootfsRequest request;
  *request.mutable_instance() = ref;
  if (set_layers) request.mutable_layers();
  for (const std::string& l : layers) request.mutable_layers()->add_paths(l);
  v1::Instance response;
  return FromStatus(c.stub->PrepareRootfs(Context().get(), request, &response));
}

Outcome Release(Caller& c, const v1::InstanceRef& ref) {
  v1::ReleaseRootfsRequest request;
  *request.mutable_instance() = ref;
  v1::ReleaseRootfsResponse response;
  return FromStatus(c.stub->ReleaseRootfs(Context().get(), request, &response));
}

Outcome Bind(Caller& c, const v1::InstanceRef& ref, const std::string& source,
             const std::string& target) {
  v1::BindMountRequest request;
  *request.mutable_instance() = ref;
  request.set_source(source);
  request.set_target(target);
  v1::BindMountResponse response;
  return FromStatus(c.stub->BindMount(Context().get(), request, &response));
}

Outcome Get(Caller& c, const v1::InstanceRef& ref) {
  v1::GetInstanceRequest request;
  *request.mutable_instance() = ref;
  v1::Instance response;
  return FromStatus(c.stub->GetInstance(Context().get(), request, &response));
}

Outcome Check(Caller& c, const v1::InstanceRef& ref, const std::string& rootfs_path) {
  v1::CheckRootfsRequest request;
  *request.mutable_instance() = ref;
  request.set_rootfs_path(rootfs_path);
  v1::CheckRootfsResponse response;
  return FromStatus(c.stub->CheckRootfs(Context().get(), request, &response));
}

// Sends `messages` on one Exec stream, half-closes, reads to the end.
Outcome Exec(Caller& c, const std::vector<v1::ExecRequest>& messages,
             milliseconds deadline = milliseconds(30000)) {
  auto context = Context(deadline);
  ++g_exec_streams;
  auto stream = c.stub->Exec(context.get());
  for (const v1::ExecRequest& m : messages) {
    if (!stream->Write(m)) break;
  }
  stream->WritesDone();
  Outcome outcome;
  v1::ExecResponse response;
  while (stream->Read(&response)) {
    if (response.has_exit()) outcome.exit = DescribeExit(response.exit());
  }
  outcome.status = stream->Finish();
  return outcome;
}

// The same with raw bytes as messages: what no generated client would send.
Outcome ExecBytes(Caller& c, const std::vector<std::string>& messages) {
  auto context = Context();
  grpc::internal::RpcMethod method(kExecMethod, grpc::internal::RpcMethod::BIDI_STREAMING,
                                   c.channel);
  ++g_exec_streams;
  std::unique_ptr<ExecRaw> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          c.channel.get(), method, context.get()));
  for (const std::string& m : messages) {
    grpc::Slice slice(m);
    grpc::ByteBuffer buffer(&slice, 1);
    if (!stream->Write(buffer)) break;
  }
  stream->WritesDone();
  Outcome outcome;
  grpc::ByteBuffer buffer;
  while (stream->Read(&buffer)) {
    v1::ExecResponse response;
    std::vector<grpc::Slice> slices;
    std::string bytes;
    if (buffer.Dump(&slices).ok()) {
      for (const grpc::Slice& s : slices) bytes.append(s.begin(), s.end());
    }
    if (response.ParseFromString(bytes) && response.has_exit()) {
      outcome.exit = DescribeExit(response.exit());
    }
  }
  outcome.status = stream->Finish();
  return outcome;
}

std::string Serialized(const v1::ExecRequest& request) { return request.SerializeAsString(); }

v1::ExecRequest Start(const std::vector<std::string>& argv, const v1::InstanceRef& instance,
                      const std::function<void(v1::ExecStart&)>& tweak = nullptr) {
  v1::ExecRequest request;
  v1::ExecStart& start = *request.mutable_start();
  for (const std::string& a : argv) start.add_argv(a);
  if (!instance.namespace_().empty() || !instance.name().empty()) {
    *start.mutable_instance() = instance;
  }
  if (tweak) tweak(start);
  return request;
}

v1::ExecRequest Stdin(const std::string& data) {
  v1::ExecRequest request;
  request.set_stdin(data);
  return request;
}

v1::ExecRequest Eof() {
  v1::ExecRequest request;
  request.mutable_stdin_eof();
  return request;
}

v1::ExecRequest Resize(uint32_t rows, uint32_t cols) {
  v1::ExecRequest request;
  request.mutable_resize()->set_rows(rows);
  request.mutable_resize()->set_cols(cols);
  return request;
}

v1::ExecRequest Signal(int sig) {
  v1::ExecRequest request;
  request.mutable_signal()->set_signal(sig);
  return request;
}

// Mount points (and their types) at or below `dir` in the host's table.
std::vector<std::string> MountLines(const std::string& dir) {
  std::vector<std::string> out;
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return {"<cannot read mountinfo>"};
  for (const MountInfoEntry& e : *table) {
    if (PathAtOrBelow(e.target, dir)) out.push_back(e.target + " " + e.fstype);
  }
  return out;
}

long StatusNumber(pid_t pid, const std::string& key) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
  }
  return -1;
}

// The daemon's child whose command line contains `marker`, or 0.
pid_t ChildWith(pid_t daemon, const std::string& marker) {
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(daemon) + "/task", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::istringstream children(ReadFile(it->path().string() + "/children"));
    pid_t child;
    while (children >> child) {
      if (ReadFile("/proc/" + std::to_string(child) + "/cmdline").find(marker) !=
          std::string::npos) {
        return child;
      }
    }
  }
  return 0;
}

long IoCounter(pid_t pid, const std::string& key) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/io"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
  }
  return -1;
}

// Opens `count` Exec streams at once on one connection (asynchronously: one
// thread), each sending `start` unless it is null. Counts the streams that
// got `started` and those the daemon answered with a status; once `settled`
// says the daemon has answered everything it is going to, cancels the rest
// and drains. Returns one refusal's status (the first), or OK if none.
struct ManyStreamsResult {
  int started = 0;
  int refused = 0;  // finished with RESOURCE_EXHAUSTED
  int other = 0;    // finished otherwise before the cancel
  grpc::Status first_refusal;
};

ManyStreamsResult OpenManyStreams(Caller& c, int count, const v1::ExecRequest* start,
                                  int expect_answered) {
  struct Stream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::ExecRequest, v1::ExecResponse>> rw;
    v1::ExecResponse response;
    grpc::Status status;
    int pending = 0;  // operations not yet completed
    bool finished = false;
  };
  enum Op : intptr_t { kStartCall = 0, kWrite = 1, kRead = 2, kFinish = 3 };
  auto tag = [](int i, Op op) { return reinterpret_cast<void*>((intptr_t(i) << 2) | op); };
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Stream>> streams;
  int pending = 0;
  for (int i = 0; i < count; ++i) {
    auto s = std::make_unique<Stream>();
    s->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    s->rw = c.stub->PrepareAsyncExec(&s->context, &cq);
    ++g_exec_streams;
    s->rw->StartCall(tag(i, kStartCall));
    s->rw->Finish(&s->status, tag(i, kFinish));
    s->pending = 2;
    pending += 2;
    streams.push_back(std::move(s));
  }
  ManyStreamsResult result;
  auto answered = [&] { return result.started + result.refused + result.other; };
  bool cancelled = false;
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (pending > 0) {
    if (!cancelled && (answered() >= expect_answered || Clock::now() > deadline)) {
      for (auto& s : streams) s->context.TryCancel();
      cancelled = true;
    }
    void* got = nullptr;
    bool ok = false;
    auto status = cq.AsyncNext(&got, &ok, std::chrono::system_clock::now() + milliseconds(200));
    if (status != grpc::CompletionQueue::GOT_EVENT) continue;
    int i = static_cast<int>(reinterpret_cast<intptr_t>(got) >> 2);
    Op op = static_cast<Op>(reinterpret_cast<intptr_t>(got) & 3);
    Stream& s = *streams[i];
    --s.pending;
    --pending;
    if (op == kStartCall && ok && start != nullptr) {
      s.rw->Write(*start, tag(i, kWrite));
      ++s.pending;
      ++pending;
    } else if (op == kWrite && ok) {
      s.rw->Read(&s.response, tag(i, kRead));
      ++s.pending;
      ++pending;
    } else if (op == kRead && ok && !cancelled) {
      if (s.response.has_started()) ++result.started;
    } else if (op == kFinish) {
      s.finished = true;
      if (!cancelled) {
        if (s.status.error_code() == StatusCode::RESOURCE_EXHAUSTED) {
          if (result.refused++ == 0) result.first_refusal = s.status;
        } else {
          ++result.other;
          UNSCOPED_INFO("stream " << i << " ended with " << s.status.error_code() << " "
                                  << s.status.error_message());
        }
      }
    }
  }
  cq.Shutdown();
  void* got = nullptr;
  bool ok = false;
  while (cq.Next(&got, &ok)) {
  }
  return result;
}

}  // namespace

TEST_CASE(
    "hostile catalogue: each bad request gets its code and an actionable message; nothing changes",
    "[hostile]") {
  SC_REQUIRE_ROOT();
  g_exec_streams = 0;  // this daemon's
  TempDir dir;
  // uid 1000 must reach the socket.
  REQUIRE(chmod(dir.path().c_str(), 0755) == 0);
  const std::string layers = dir / "layers";
  const std::string layer = layers + "/busybox";
  const std::string other_layer = layers + "/other";
  const std::string binds = dir / "binds";
  const std::string instances = dir / "instances";
  MakeBusyboxTree(layer);
  fs::create_directories(other_layer);
  fs::create_directories(binds + "/dir");
  fs::create_directories(instances);
  std::ofstream(binds + "/file") << "bind me\n";
  std::ofstream(layers + "/a-file") << "not a directory\n";
  REQUIRE(mkfifo((binds + "/fifo").c_str(), 0600) == 0);
  fs::create_symlink("/etc", layers + "/escape");
  fs::create_symlink("/etc/passwd", binds + "/link");
  // Instances are prepared on a mount of their own that propagates nothing:
  // one prepared after the pod started is then not mounted in the pod, on
  // any host (as on a node where the pod has no hostPath covering it).
  REQUIRE(mount(instances.c_str(), instances.c_str(), nullptr, MS_BIND, nullptr) == 0);
  REQUIRE(mount(nullptr, instances.c_str(), nullptr, MS_PRIVATE, nullptr) == 0);

  DaemonProcess daemon(
      dir / "mh.sock",
      {"--instance_base=" + instances, "--layer_root=" + layers, "--bind_root=" + binds,
       "--socket_mode=0666", "--exec_kill_grace=1s", "--max_execs=" + std::to_string(kNodeWide),
       "--max_execs_per_pod=" + std::to_string(kPerPod)});
  REQUIRE(daemon.started());

  Caller op{"operator",
            grpc::CreateCustomChannel("unix:" + daemon.socket_path(),
                                      grpc::InsecureChannelCredentials(), ChannelArgs()),
            nullptr};
  op.stub = v1::MountHelper::NewStub(op.channel);
  const v1::InstanceRef box = Ref("ns", "box");
  const v1::InstanceRef victim = Ref("ns", "victim");
  const v1::InstanceRef nobody = Ref("ns", "nobody");
  const v1::InstanceRef none;
  {
    Outcome prepared = Prepare(op, box, {layer});
    INFO(prepared.status.error_message());
    REQUIRE(prepared.status.ok());
  }
  const std::string box_rootfs = instances + "/ns/box/rootfs";
  fs::create_symlink("/etc", box_rootfs + "/evil");

  // A consumer pod of `box`; `victim` is prepared after it started, so the
  // pod has not mounted it.
  PodOptions options;
  options.rootfs_host_path = box_rootfs;
  options.binds = {dir.path()};
  SimulatedPod pod(options);
  REQUIRE(pod.started());
  {
    Outcome prepared = Prepare(op, victim, {layer});
    INFO(prepared.status.error_message());
    REQUIRE(prepared.status.ok());
  }
  REQUIRE(ReadFile("/proc/" + std::to_string(pod.init_pid()) + "/mountinfo")
              .find("/ns/victim/rootfs") == std::string::npos);
  PodPeer pod_root_peer(pod, daemon.socket_path(), 0);
  PodPeer pod_user_peer(pod, daemon.socket_path(), kPodUser);
  Caller in_pod{"pod (uid 0)", pod_root_peer.channel(), nullptr};
  in_pod.stub = v1::MountHelper::NewStub(in_pod.channel);
  Caller pod_user{"pod (uid 1000)", pod_user_peer.channel(), nullptr};
  pod_user.stub = v1::MountHelper::NewStub(pod_user.channel);

  // Each caller is who it should be, and one good exec each first: what is
  // made lazily (gRPC's threads, the seccomp program, the pod's /proc) is
  // then part of the baseline.
  for (Caller* c : {&op, &in_pod, &pod_user}) {
    v1::PeerIdentity who;
    grpc::Status s = c->stub->WhoAmI(Context().get(), {}, &who);
    INFO(c->name << ": " << s.error_message());
    REQUIRE(s.ok());
    CHECK(who.kind() == (c == &op ? v1::PeerIdentity::OPERATOR : v1::PeerIdentity::POD));
    CHECK(who.uid() == (c == &pod_user ? kPodUser : 0));
    Outcome ran = Exec(*c, {Start({"true"}, c == &op ? box : none), Eof()});
    INFO(ran.status.error_message() << " " << ran.exit);
    REQUIRE(ran.status.ok());
    REQUIRE(ran.exit == "exited 0");
  }
  REQUIRE(PollUntil([&] { return daemon.ChildCount() == 0; }, milliseconds(10000)));
  REQUIRE(WaitForExecsEnded(daemon));
  const std::vector<std::string> mounts_before = MountLines(dir.path());
  const int fds_before = daemon.OpenFdCount();
  const long threads_before = StatusNumber(daemon.pid(), "Threads");
  const long rss_before = StatusNumber(daemon.pid(), "VmRSS");
  long rss_stalled = 0;

  const std::string long_name(64, 'a');
  const std::string mib(1 << 20, 'e');
  const std::string five_mib(5 << 20, 'x');

  const std::vector<Case> cases = {
      // ------------------------------------------------------------ names
      {"prepare without an instance", &op, [&](Caller& c) { return Prepare(c, none, {layer}); },
       StatusCode::INVALID_ARGUMENT, "namespace: must not be empty"},
      {"a name in upper case", &op,
       [&](Caller& c) { return Prepare(c, Ref("ns", "Box"), {layer}); },
       StatusCode::INVALID_ARGUMENT, "must consist of lowercase letters, digits and '-'"},
      {"a NUL byte in a name", &op,
       [&](Caller& c) { return Prepare(c, Ref("ns", Nul("bo", "x")), {layer}); },
       StatusCode::INVALID_ARGUMENT, "name: \"bo\\x00x\""},
      {"a name of 64 characters", &op,
       [&](Caller& c) { return Prepare(c, Ref("ns", long_name), {layer}); },
       StatusCode::INVALID_ARGUMENT, "is longer than 63 characters"},
      {"namespace ..", &op, [&](Caller& c) { return Prepare(c, Ref("..", "box"), {layer}); },
       StatusCode::INVALID_ARGUMENT, "namespace: \"..\" must consist"},
      {"name ../x", &op, [&](Caller& c) { return Prepare(c, Ref("ns", "../x"), {layer}); },
       StatusCode::INVALID_ARGUMENT, "name: \"../x\" must consist"},
      {"a name starting with -", &op,
       [&](Caller& c) { return Prepare(c, Ref("ns", "-box"), {layer}); },
       StatusCode::INVALID_ARGUMENT, "must start and end with a letter or digit"},
      {"a name in UTF-8", &op,
       [&](Caller& c) { return Prepare(c, Ref("ns", "b\xc3\xb8x"), {layer}); },
       StatusCode::INVALID_ARGUMENT, "\"b\\xc3\\xb8x\" must consist"},
      // ----------------------------------------------------------- layers
      {"no lower layers at all", &op, [&](Caller& c) { return Prepare(c, nobody, {}, false); },
       StatusCode::INVALID_ARGUMENT, "give the lower layers: `layers` or `provider`"},
      {"an empty layer list", &op, [&](Caller& c) { return Prepare(c, nobody, {}); },
       StatusCode::INVALID_ARGUMENT, "give 1 to 128 paths, not 0"},
      {"129 layers", &op,
       [&](Caller& c) { return Prepare(c, nobody, std::vector<std::string>(129, layer)); },
       StatusCode::INVALID_ARGUMENT, "give 1 to 128 paths, not 129"},
      {"a relative layer path", &op,
       [&](Caller& c) { return Prepare(c, nobody, {"layers/busybox"}); },
       StatusCode::INVALID_ARGUMENT, "layers.paths[0] must be an absolute path"},
      {"a layer path with ..", &op,
       [&](Caller& c) { return Prepare(c, nobody, {layer + "/../../../etc"}); },
       StatusCode::INVALID_ARGUMENT, "layers.paths[0] must not contain \"..\""},
      {"a layer outside every layer root", &op,
       [&](Caller& c) { return Prepare(c, nobody, {"/etc"}); }, StatusCode::PERMISSION_DENIED,
       "\"/etc\" is not inside an allow-listed root"},
      {"a layer through a symlink out of its root", &op,
       [&](Caller& c) { return Prepare(c, nobody, {layers + "/escape"}); },
       StatusCode::INVALID_ARGUMENT, "a component is a symlink, which is refused"},
      {"a layer that does not exist", &op,
       [&](Caller& c) { return Prepare(c, nobody, {layers + "/missing"}); },
       StatusCode::NOT_FOUND, "resolve \"missing\": No such file or directory"},
      {"a NUL byte in a layer path", &op,
       [&](Caller& c) { return Prepare(c, nobody, {Nul(layer, "/x")}); },
       StatusCode::INVALID_ARGUMENT, "layers.paths[0] contains a NUL byte"},
      {"a layer path of 5000 bytes", &op,
       [&](Caller& c) { return Prepare(c, nobody, {layers + "/" + std::string(5000, 'l')}); },
       StatusCode::INVALID_ARGUMENT, "is longer than 4096 bytes"},
      {"a layer that is a file", &op,
       [&](Caller& c) { return Prepare(c, nobody, {layers + "/a-file"}); },
       StatusCode::INVALID_ARGUMENT, "Not a directory"},
      {"provider layers asked for by an operator", &op,
       [&](Caller& c) {
         v1::PrepareRootfsRequest request;
         *request.mutable_instance() = nobody;
         request.mutable_provider()->set_wait_ms(1);
         v1::Instance response;
         return FromStatus(c.stub->PrepareRootfs(Context().get(), request, &response));
       },
       StatusCode::INVALID_ARGUMENT, "an operator has no pod and must give explicit `layers`"},
      {"a prepared instance with other layers", &op,
       [&](Caller& c) { return Prepare(c, box, {other_layer}); }, StatusCode::FAILED_PRECONDITION,
       "release it before changing its layers"},
      // ----------------------------------------------------- bind mounts
      {"bind into an unknown instance", &op,
       [&](Caller& c) { return Bind(c, nobody, binds + "/file", "/etc/file"); },
       StatusCode::NOT_FOUND, "instance ns/nobody"},
      {"a bind target with ..", &op,
       [&](Caller& c) { return Bind(c, box, binds + "/file", "/../../../etc/passwd"); },
       StatusCode::INVALID_ARGUMENT, "target must not contain \"..\""},
      {"a relative bind target", &op,
       [&](Caller& c) { return Bind(c, box, binds + "/file", "etc/file"); },
       StatusCode::INVALID_ARGUMENT, "target must be an absolute path"},
      {"the rootfs itself as bind target", &op,
       [&](Caller& c) { return Bind(c, box, binds + "/dir", "/"); },
       StatusCode::INVALID_ARGUMENT, "target must not be the rootfs itself"},
      {"a bind source outside every bind root", &op,
       [&](Caller& c) { return Bind(c, box, "/etc/shadow", "/etc/shadow-copy"); },
       StatusCode::PERMISSION_DENIED, "\"/etc/shadow\" is not inside an allow-listed root"},
      {"a bind source that is a symlink", &op,
       [&](Caller& c) { return Bind(c, box, binds + "/link", "/etc/link"); },
       StatusCode::INVALID_ARGUMENT, "a component is a symlink, which is refused"},
      {"a bind target through a symlink planted in the rootfs", &op,
       [&](Caller& c) { return Bind(c, box, binds + "/file", "/evil/passwd"); },
       StatusCode::INVALID_ARGUMENT, "target: resolve \"evil\": a component is a symlink"},
      {"a bind target inside the rootfs's /proc", &op,
       [&](Caller& c) { return Bind(c, box, binds + "/file", "/proc/sysrq-trigger"); },
       StatusCode::INVALID_ARGUMENT, "crosses a mount point or leaves its root"},
      {"a FIFO as bind source", &op,
       [&](Caller& c) { return Bind(c, box, binds + "/fifo", "/etc/fifo"); },
       StatusCode::INVALID_ARGUMENT, "source must be a regular file or a directory"},
      {"a directory bound onto a file", &op,
       [&](Caller& c) { return Bind(c, box, binds + "/dir", "/etc/passwd"); },
       StatusCode::INVALID_ARGUMENT, "target exists as a non-directory but the source is a dir"},
      {"a NUL byte in a bind target", &op,
       [&](Caller& c) { return Bind(c, box, binds + "/file", Nul("/etc/file", "x")); },
       StatusCode::INVALID_ARGUMENT, "target contains a NUL byte"},
      {"an empty bind source", &op, [&](Caller& c) { return Bind(c, box, "", "/etc/file"); },
       StatusCode::INVALID_ARGUMENT, "source is empty"},
      // ------------------------------------------------------- instances
      {"get an unknown instance", &op, [&](Caller& c) { return Get(c, nobody); },
       StatusCode::NOT_FOUND, "no instance ns/nobody on this node"},
      {"release with a bad name", &op, [&](Caller& c) { return Release(c, Ref("ns", "a_b")); },
       StatusCode::INVALID_ARGUMENT, "name: \"a_b\" must consist"},
      {"an operator's check without an instance", &op,
       [&](Caller& c) { return Check(c, none, ""); }, StatusCode::INVALID_ARGUMENT,
       "namespace: must not be empty"},
      // ---------------------------------------------- exec: the start
      {"exec with an empty argv", &op, [&](Caller& c) { return Exec(c, {Start({}, box)}); },
       StatusCode::INVALID_ARGUMENT, "argv is empty: give the command to run"},
      {"exec with an empty command name", &op,
       [&](Caller& c) { return Exec(c, {Start({"", "x"}, box)}); }, StatusCode::INVALID_ARGUMENT,
       "argv is empty: give the command to run"},
      {"exec with 5000 arguments", &op,
       [&](Caller& c) { return Exec(c, {Start(std::vector<std::string>(5000, "a"), box)}); },
       StatusCode::INVALID_ARGUMENT, "too many arguments and environment entries (at most 4096)"},
      {"a NUL byte in an argument", &op,
       [&](Caller& c) { return Exec(c, {Start({"echo", Nul("a", "b")}, box)}); },
       StatusCode::INVALID_ARGUMENT, "an argument contains a NUL byte"},
      {"a NUL byte in the environment", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box, [](v1::ExecStart& s) { s.add_env(Nul("A=b", "c")); })});
       },
       StatusCode::INVALID_ARGUMENT, "an environment entry contains a NUL byte"},
      {"an environment entry without =", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box, [](v1::ExecStart& s) { s.add_env("NOVALUE"); })});
       },
       StatusCode::INVALID_ARGUMENT, "environment entry is not KEY=VALUE: NOVALUE"},
      {"an environment entry with an empty key", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box, [](v1::ExecStart& s) { s.add_env("=value"); })});
       },
       StatusCode::INVALID_ARGUMENT, "environment entry is not KEY=VALUE"},
      {"a 1 MiB environment", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box, [&](v1::ExecStart& s) { s.add_env("BIG=" + mib); })});
       },
       StatusCode::INVALID_ARGUMENT, "arguments and environment exceed 1048576 bytes"},
      {"a command name of 5000 bytes", &op,
       [&](Caller& c) { return Exec(c, {Start({std::string(5000, 'c')}, box)}); },
       StatusCode::INVALID_ARGUMENT, "the command name is too long"},
      {"a relative working directory", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box, [](v1::ExecStart& s) { s.set_working_dir("tmp"); })});
       },
       StatusCode::INVALID_ARGUMENT, "working_dir must be absolute: tmp"},
      {"a working directory that does not exist", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box,
                               [](v1::ExecStart& s) { s.set_working_dir("/no/such/dir"); })});
       },
       StatusCode::NOT_FOUND, "working directory /no/such/dir in the rootfs"},
      {"a working directory that is a file", &op,
       [&](Caller& c) {
         return Exec(
             c, {Start({"true"}, box, [](v1::ExecStart& s) { s.set_working_dir("/etc/passwd"); })});
       },
       StatusCode::INVALID_ARGUMENT, "working directory /etc/passwd in the rootfs: Not a directory"},
      {"a NUL byte in the working directory", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box,
                               [](v1::ExecStart& s) { s.set_working_dir(Nul("/tmp", "x")); })});
       },
       StatusCode::INVALID_ARGUMENT, "working_dir is too long or contains a NUL byte"},
      {"an operator's exec without an instance", &op,
       [&](Caller& c) { return Exec(c, {Start({"true"}, none)}); }, StatusCode::INVALID_ARGUMENT,
       "operators must name the instance to exec into"},
      {"an operator's exec with a rootfs_path", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box, [](v1::ExecStart& s) { s.set_rootfs_path("/"); })});
       },
       StatusCode::INVALID_ARGUMENT, "rootfs_path is for pod callers; operators name an instance"},
      {"exec into an unknown instance", &op,
       [&](Caller& c) { return Exec(c, {Start({"true"}, nobody)}); }, StatusCode::NOT_FOUND,
       "instance ns/nobody is not prepared on this node"},
      {"exec into an instance with a bad name", &op,
       [&](Caller& c) { return Exec(c, {Start({"true"}, Ref("ns", "x/../../y"))}); },
       StatusCode::INVALID_ARGUMENT, "name: \"x/../../y\" must consist"},
      {"65 supplementary groups", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box, [](v1::ExecStart& s) {
                           for (int i = 0; i < 65; ++i) s.mutable_user()->add_groups(1000 + i);
                         })});
       },
       StatusCode::INVALID_ARGUMENT, "at most 64 supplementary groups"},
      {"a window of 70000 rows", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box, [](v1::ExecStart& s) {
                           s.set_tty(true);
                           s.mutable_window_size()->set_rows(70000);
                           s.mutable_window_size()->set_cols(80);
                         })});
       },
       StatusCode::INVALID_ARGUMENT, "window size out of range (at most 65535)"},
      {"a command that is not in the rootfs", &op,
       [&](Caller& c) { return Exec(c, {Start({"no-such-command"}, box), Eof()}); },
       StatusCode::OK, "exited 127: sc-exec: no-such-command: command not found"},
      {"a command that is not executable", &op,
       [&](Caller& c) { return Exec(c, {Start({"/etc/passwd"}, box), Eof()}); }, StatusCode::OK,
       "exited 126: sc-exec: /etc/passwd: cannot execute: Permission denied"},
      // -------------------------------------- exec: the stream's order
      {"a stream that ends before start", &op, [&](Caller& c) { return Exec(c, {}); },
       StatusCode::INVALID_ARGUMENT, "the stream ended before start"},
      {"stdin before start", &op, [&](Caller& c) { return Exec(c, {Stdin("x")}); },
       StatusCode::INVALID_ARGUMENT, "the first message of Exec must be start"},
      {"resize before start", &op, [&](Caller& c) { return Exec(c, {Resize(24, 80)}); },
       StatusCode::INVALID_ARGUMENT, "the first message of Exec must be start"},
      {"a signal before start", &op, [&](Caller& c) { return Exec(c, {Signal(SIGTERM)}); },
       StatusCode::INVALID_ARGUMENT, "the first message of Exec must be start"},
      {"an empty first message", &op, [&](Caller& c) { return Exec(c, {v1::ExecRequest()}); },
       StatusCode::INVALID_ARGUMENT, "the first message of Exec must be start"},
      {"a first message that is not an ExecRequest", &op,
       [&](Caller& c) { return ExecBytes(c, {"\x0a\xff\xff\xff\xff\xff"}); },
       StatusCode::INVALID_ARGUMENT, "does not parse as an ExecRequest"},
      {"a second start on one stream", &op,
       [&](Caller& c) { return Exec(c, {Start({"cat"}, box), Start({"cat"}, box)}); },
       StatusCode::INVALID_ARGUMENT, "start sent twice: it must be the first message only"},
      {"resize without a terminal", &op,
       [&](Caller& c) { return Exec(c, {Start({"cat"}, box), Resize(24, 80)}); },
       StatusCode::INVALID_ARGUMENT, "resize without a terminal (start.tty unset)"},
      {"a resize out of range", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"cat"}, box, [](v1::ExecStart& s) { s.set_tty(true); }),
                         Resize(24, 100000)});
       },
       StatusCode::INVALID_ARGUMENT, "window size out of range (at most 65535)"},
      {"signal 0", &op, [&](Caller& c) { return Exec(c, {Start({"cat"}, box), Signal(0)}); },
       StatusCode::INVALID_ARGUMENT, "signal 0 is not in 1..64"},
      {"signal 65", &op, [&](Caller& c) { return Exec(c, {Start({"cat"}, box), Signal(65)}); },
       StatusCode::INVALID_ARGUMENT, "signal 65 is not in 1..64"},
      {"signal -9", &op, [&](Caller& c) { return Exec(c, {Start({"cat"}, box), Signal(-9)}); },
       StatusCode::INVALID_ARGUMENT, "signal -9 is not in 1..64"},
      {"stdin after stdin_eof", &op,
       [&](Caller& c) { return Exec(c, {Start({"cat"}, box), Eof(), Stdin("late")}); },
       StatusCode::INVALID_ARGUMENT, "stdin data after stdin_eof"},
      {"an empty message after start", &op,
       [&](Caller& c) { return Exec(c, {Start({"cat"}, box), v1::ExecRequest()}); },
       StatusCode::INVALID_ARGUMENT, "empty or unknown ExecRequest"},
      {"a message after start that is not an ExecRequest", &op,
       [&](Caller& c) {
         return ExecBytes(c, {Serialized(Start({"cat"}, box)), "\x12\x80\x80\x80\x80\x10"});
       },
       StatusCode::INVALID_ARGUMENT, "does not parse as an ExecRequest"},
      // ------------------------------------------------------------ sizes
      {"a stdin message over the daemon's 1 MiB", &op,
       [&](Caller& c) { return Exec(c, {Start({"cat"}, box), Stdin(mib + "+")}); },
       StatusCode::INVALID_ARGUMENT, "stdin message larger than 1048576 bytes"},
      {"a stdin message over the 4 MiB message limit", &op,
       [&](Caller& c) { return Exec(c, {Start({"cat"}, box), Stdin(five_mib)}); },
       StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
      {"a start message over the 4 MiB message limit", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box, [&](v1::ExecStart& s) { s.add_argv(five_mib); })});
       },
       StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
      {"a unary request over the 4 MiB message limit", &op,
       [&](Caller& c) { return Prepare(c, Ref("ns", five_mib), {layer}); },
       StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
      // ---------------------------------------------- signal tricks
      {"SIGKILL to the first process of the exec's own pid namespace", &op,
       [&](Caller& c) {
         // sh is pid 2 there (pid 1 is the daemon's reaper). The node's
         // pid 1 and the daemon are untouched (checked after the table).
         return Exec(c, {Start({"sh", "-c", "[ $$ = 2 ] && exec cat"}, box), Signal(SIGKILL)});
       },
       StatusCode::OK, "killed by signal 9"},
      {"SIGSTOP, then the client leaves", &op,
       [&](Caller& c) {
         // A stopped process still goes away: SIGCONT comes with the SIGTERM
         // and SIGKILL follows the grace.
         return Exec(c, {Start({"cat"}, box), Signal(SIGSTOP)}, milliseconds(1500));
       },
       StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded"},
      {"a client that never reads", &op,
       [&](Caller& c) {
         auto context = Context();
         ++g_exec_streams;
         auto stream = c.stub->Exec(context.get());
         stream->Write(Start({"yes", "never read"}, box));
         // Nothing is read: the process must stall on flow control. Its
         // write count stops moving; the daemon's memory is sampled then.
         pid_t yes = 0;
         PollUntil([&] { return (yes = ChildWith(daemon.pid(), "never")) > 0; },
                   milliseconds(15000));
         long last = -1;
         auto since = Clock::now();
         bool stalled = yes > 0 && PollUntil(
                                       [&] {
                                         long now = IoCounter(yes, "wchar");
                                         if (now != last) {
                                           last = now;
                                           since = Clock::now();
                                           return false;
                                         }
                                         return now > 0 && Clock::now() - since > milliseconds(500);
                                       },
                                       milliseconds(20000));
         INFO("the workload (pid " << yes << ") wrote " << last << " bytes");
         CHECK(stalled);
         rss_stalled = StatusNumber(daemon.pid(), "VmRSS");
         context->TryCancel();
         v1::ExecResponse ignored;
         while (stream->Read(&ignored)) {
         }
         return FromStatus(stream->Finish());
       },
       StatusCode::CANCELLED, "CANCELLED"},
      // ------------------------------------------ a pod, as root in it
      {"a pod prepares an instance it has not mounted", &in_pod,
       [&](Caller& c) { return Prepare(c, victim, {layer}); }, StatusCode::PERMISSION_DENIED,
       "has not mounted " + instances + "/ns/victim"},
      {"a pod releases an instance it has not mounted", &in_pod,
       [&](Caller& c) { return Release(c, victim); }, StatusCode::PERMISSION_DENIED,
       "has not mounted " + instances + "/ns/victim"},
      {"a pod binds into an instance it has not mounted", &in_pod,
       [&](Caller& c) { return Bind(c, victim, binds + "/file", "/etc/file"); },
       StatusCode::PERMISSION_DENIED, "has not mounted " + instances + "/ns/victim"},
      {"a pod inspects an instance it has not mounted", &in_pod,
       [&](Caller& c) { return Get(c, victim); }, StatusCode::PERMISSION_DENIED,
       "has not mounted instance ns/victim"},
      {"a pod names an instance to exec into", &in_pod,
       [&](Caller& c) { return Exec(c, {Start({"true"}, victim)}); },
       StatusCode::PERMISSION_DENIED,
       "a pod execs only into the rootfs mounted into it: leave instance empty"},
      // ----------------------- exec: stdio by reference (by_reference_test.cc
      // has the rows that need files at known numbers in the caller)
      {"a pod's by-reference start naming an fd it does not have open", &in_pod,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, none, [](v1::ExecStart& s) {
                           v1::StdioByReference* r = s.mutable_by_reference();
                           r->set_stdin_fd(1000);
                           r->set_stdout_fd(1);
                           r->set_stderr_fd(2);
                         })});
       },
       StatusCode::INVALID_ARGUMENT, "by_reference.stdin_fd (fd 1000) is not open in the caller"},
      {"a pod's by-reference start with a negative fd number", &pod_user,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, none, [](v1::ExecStart& s) {
                           s.mutable_by_reference()->set_stdout_fd(-1);
                         })});
       },
       StatusCode::INVALID_ARGUMENT, "by_reference.stdout_fd: -1 is not an fd number (0 to 1048575)"},
      {"a pod's by-reference start with an fd number past any fd table", &in_pod,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, none, [](v1::ExecStart& s) {
                           s.mutable_by_reference()->set_status_fd(1 << 20);
                         })});
       },
       StatusCode::INVALID_ARGUMENT, "by_reference.status_fd: 1048576 is not an fd number"},
      {"an operator asks for stdio by reference", &op,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, box, [](v1::ExecStart& s) { s.mutable_by_reference(); })});
       },
       StatusCode::INVALID_ARGUMENT,
       "stdio by reference is for pod callers: an operator's session streams"},
      {"a pod's rootfs_path that it has not mounted", &in_pod,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, none, [](v1::ExecStart& s) { s.set_rootfs_path("/nope"); })});
       },
       StatusCode::FAILED_PRECONDITION, "is the rootfs hostPath mounted into this pod?"},
      {"a pod's rootfs_path through a magic link", &in_pod,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, none,
                               [](v1::ExecStart& s) { s.set_rootfs_path("/proc/1/root"); })});
       },
       StatusCode::INVALID_ARGUMENT, "open /proc/1/root in the caller's mount namespace"},
      {"a relative rootfs_path", &in_pod,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, none, [](v1::ExecStart& s) { s.set_rootfs_path("rootfs"); })});
       },
       StatusCode::INVALID_ARGUMENT, "rootfs_path must be absolute: rootfs"},
      {"a pod's check with .. in rootfs_path", &in_pod,
       [&](Caller& c) { return Check(c, none, "/rootfs/../etc"); }, StatusCode::INVALID_ARGUMENT,
       "rootfs_path must not contain \"..\""},
      {"a pod's working directory through a symlink out of the rootfs", &in_pod,
       [&](Caller& c) {
         // /evil -> /etc resolves inside the chroot: the rootfs's own /etc.
         return Exec(c, {Start({"sh", "-c", "[ \"$(pwd -P)\" = /etc ] && [ -e /etc/passwd ]"},
                               none, [](v1::ExecStart& s) { s.set_working_dir("/evil"); }),
                         Eof()});
       },
       StatusCode::OK, "exited 0"},
      {"1000 streams from an operator that never send start", &op,
       [&](Caller& c) {
         WaitForExecsEnded(daemon);
         ManyStreamsResult r = OpenManyStreams(c, 1000, nullptr, 1000 - kNodeWide);
         // Its streams were cancelled on this side; the next row needs the
         // slots they held, so it starts once the daemon has ended each one
         // (its record is written once its slot is free). Found in CI on a
         // busy machine: the SIGRTMAX row got "the node runs 200 exec
         // sessions" while the daemon was still ending them.
         WaitForExecsEnded(daemon);
         INFO("refused " << r.refused << ", other " << r.other);
         CHECK(r.refused == 1000 - kNodeWide);
         CHECK(r.other == 0);
         return FromStatus(r.first_refusal);
       },
       StatusCode::RESOURCE_EXHAUSTED,
       "the node runs 200 exec sessions, its maximum (--max_execs); retry later"},
      {"signal 64 (SIGRTMAX), the highest one", &in_pod,
       [&](Caller& c) { return Exec(c, {Start({"cat"}, none), Signal(64)}); }, StatusCode::OK,
       "killed by signal 64"},
      {"1000 streams from one pod that never send start", &in_pod,
       [&](Caller& c) {
         WaitForExecsEnded(daemon);
         ManyStreamsResult r = OpenManyStreams(c, 1000, nullptr, 1000 - kPerPod);
         WaitForExecsEnded(daemon);  // as above: the pod's slots are needed next
         INFO("refused " << r.refused << ", other " << r.other);
         CHECK(r.refused == 1000 - kPerPod);
         CHECK(r.other == 0);
         return FromStatus(r.first_refusal);
       },
       StatusCode::RESOURCE_EXHAUSTED,
       "this pod runs 64 exec sessions, its maximum (--max_execs_per_pod)"},
      {"1000 streams from one pod, each starting cat", &in_pod,
       [&](Caller& c) {
         WaitForExecsEnded(daemon);
         v1::ExecRequest start = Start({"cat"}, none);
         ManyStreamsResult r = OpenManyStreams(c, 1000, &start, 1000);
         WaitForExecsEnded(daemon);  // the pod's 64 cats, until each is ended
         INFO("started " << r.started << ", refused " << r.refused << ", other " << r.other);
         CHECK(r.started == kPerPod);
         CHECK(r.refused == 1000 - kPerPod);
         CHECK(r.other == 0);
         return FromStatus(r.first_refusal);
       },
       StatusCode::RESOURCE_EXHAUSTED,
       "this pod runs 64 exec sessions, its maximum (--max_execs_per_pod)"},
      // ------------------------------------------- a pod, as uid 1000
      {"a non-root pod process asks to run as root", &pod_user,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, none, [](v1::ExecStart& s) { s.mutable_user(); })});
       },
       StatusCode::PERMISSION_DENIED,
       "a caller with uid 1000 may only run as itself (its own uid, gid and groups)"},
      {"a non-root pod process asks for a group it has not", &pod_user,
       [&](Caller& c) {
         return Exec(c, {Start({"true"}, none, [](v1::ExecStart& s) {
                           s.mutable_user()->set_uid(kPodUser);
                           s.mutable_user()->set_gid(kPodUser);
                           s.mutable_user()->add_groups(0);
                         })});
       },
       StatusCode::PERMISSION_DENIED, "may only run as itself"},
      {"a non-root pod process prepares an instance it has not mounted", &pod_user,
       [&](Caller& c) { return Prepare(c, victim, {layer}); }, StatusCode::PERMISSION_DENIED,
       "has not mounted " + instances + "/ns/victim"},
  };

  int tried = 0;
  int as_expected = 0;
  for (const Case& c : cases) {
    auto t0 = Clock::now();
    Outcome got = c.send(*c.caller);
    ++tried;
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    const std::string& text = got.status.ok() ? got.exit : got.status.error_message();
    INFO("[" << c.caller->name << "] " << c.what << ": got " << got.status.error_code() << " \""
             << text.substr(0, 300) << "\" in " << ms << " ms");
    bool code_ok = got.status.error_code() == c.code;
    bool message_ok = text.find(c.message) != std::string::npos;
    CHECK(code_ok);
    CHECK(message_ok);
    // Nothing of a refused request stays mounted, row by row.
    CHECK(MountLines(dir.path()) == mounts_before);
    if (code_ok && message_ok) ++as_expected;
  }
  REQUIRE(tried >= 40);

  // The daemon is up and serving, on a fresh connection too.
  auto fresh =
      grpc::CreateChannel("unix:" + daemon.socket_path(), grpc::InsecureChannelCredentials());
  for (const auto& channel : {op.channel, fresh}) {
    grpc::health::v1::HealthCheckResponse health;
    grpc::Status s =
        grpc::health::v1::Health::NewStub(channel)->Check(Context().get(), {}, &health);
    INFO(s.error_message());
    REQUIRE(s.ok());
    CHECK(health.status() == grpc::health::v1::HealthCheckResponse::SERVING);
  }
  fresh.reset();
  // Every session has ended, every workload is gone, every fd is back.
  CHECK(WaitForExecsEnded(daemon));
  CHECK(PollUntil([&] { return daemon.ChildCount() == 0; }, milliseconds(15000)));
  CHECK(PollUntil([&] { return daemon.OpenFdCount() == fds_before; }, milliseconds(15000)));
  INFO("daemon fds before " << fds_before << ", after " << daemon.OpenFdCount());
  CHECK(daemon.OpenFdCount() == fds_before);
  CHECK(MountLines(dir.path()) == mounts_before);
  // Nothing was created for the refused instances.
  CHECK_FALSE(fs::exists(instances + "/ns/nobody"));
  CHECK_FALSE(fs::exists(box_rootfs + "/etc/shadow-copy"));
  // The reader that never read held only what flow control allows.
  INFO("daemon VmRSS before " << rss_before << " KiB, with the stalled session " << rss_stalled
                              << " KiB");
  CHECK(rss_stalled - rss_before < 64 * 1024);
  // Sessions the client left were stopped for that reason.
  std::string audit = daemon.AuditLog();
  CHECK(audit.find("the client went away") != std::string::npos);
  // Both pod connections still serve: no row broke them.
  for (Caller* c : {&in_pod, &pod_user}) {
    v1::PeerIdentity who;
    grpc::Status s = c->stub->WhoAmI(Context().get(), {}, &who);
    INFO(c->name << ": " << s.error_message());
    CHECK(s.ok());
  }
  INFO("daemon threads before " << threads_before << ", after "
                                << StatusNumber(daemon.pid(), "Threads"));
  WARN("hostile inputs: " << tried << " bad requests tried, " << as_expected
                          << " answered with the expected code and message");
  std::printf("sc-hostile: tried=%d as_expected=%d\n", tried, as_expected);
  CHECK(as_expected == tried);
}

}  // namespace sc::test

namespace sc::test {

// Found by the catalogue: an operator's exec ran its workload as pid 1 of its
// pid namespace, and the kernel drops every signal but SIGKILL and SIGSTOP
// that a pid 1 has no handler for, also from the daemon outside: Ctrl-C,
// sc-exec's forwarded SIGTERM and a dropped session's SIGHUP and SIGTERM did
// nothing to `cat`. Now pid 1 is the daemon's reaper (pid_init.h).
TEST_CASE("hostile: a signal reaches an operator's exec", "[hostile]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  const std::string layer = dir / "layers/busybox";
  MakeBusyboxTree(layer);
  fs::create_directories(dir / "instances");
  DaemonProcess daemon(dir / "mh.sock", {"--instance_base=" + (dir / "instances"),
                                         "--layer_root=" + (dir / "layers")});
  REQUIRE(daemon.started());
  Caller op{"operator",
            grpc::CreateChannel("unix:" + daemon.socket_path(), grpc::InsecureChannelCredentials()),
            nullptr};
  op.stub = v1::MountHelper::NewStub(op.channel);
  const v1::InstanceRef box = Ref("ns", "box");
  REQUIRE(Prepare(op, box, {layer}).status.ok());
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    // cat, if the signal is dropped, ends at the half-close that follows.
    Outcome got = Exec(op, {Start({"sh", "-c", "[ $$ = 2 ] && exec cat"}, box), Signal(sig)});
    INFO("signal " << sig << ": " << got.status.error_message() << " " << got.exit);
    REQUIRE(got.status.ok());
    CHECK(got.exit == "killed by signal " + std::to_string(sig));
  }
}

}  // namespace sc::test

namespace sc::test {
namespace {

// The times of the audit records that contain `marker` ("ts" is UTC with
// microseconds: 2026-12-01T22:15:28.123456Z), in the log's order.
std::vector<std::chrono::system_clock::time_point> RecordTimes(const std::string& audit,
                                                               const std::string& marker) {
  std::vector<std::chrono::system_clock::time_point> times;
  std::istringstream in(audit);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(marker) == std::string::npos) continue;
    std::tm tm{};
    int micros = 0;
    if (std::sscanf(line.c_str(), "{\"ts\":\"%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
                    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &micros) != 7) {
      continue;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    times.push_back(std::chrono::system_clock::from_time_t(timegm(&tm)) +
                    std::chrono::microseconds(micros));
  }
  return times;
}

double Millis(std::chrono::system_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

constexpr char kEndedBeforeStart[] = "the stream ended before start";

// A probe that starts nothing: admitted, it is refused for its instance (none
// is prepared); with every slot taken, for the node's limit.
grpc::Status Probe(Caller& op) {
  return Exec(op, {Start({"true"}, Ref("ns", "none")), Eof()}).status;
}

struct CancelFigures {
  std::vector<double> ms;  // cancel to slot freed, per stream, sorted
  double cancelling = 0;   // ms from the first cancel to the last
  double all_freed = 0;    // ms from the first cancel to the last record
};

// Opens `count` Exec streams that never send start, on `op`'s connection to a
// daemon whose --max_execs is `count`; once they hold every slot (a probe is
// refused for the limit) cancels them all, waits for their records and checks
// that the next caller is admitted at once (one probe, no retry). Returns for
// each stream the time from a cancel to a record (the k-th record against the
// k-th cancel: which stream a record is of is not known), sorted.
CancelFigures CancelBeforeStart(const DaemonProcess& daemon, Caller& op, int count) {
  const size_t records_before = RecordTimes(daemon.AuditLog(), kEndedBeforeStart).size();
  struct Stream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::ExecRequest, v1::ExecResponse>> rw;
    grpc::Status status;
    bool finished = false;
  };
  enum Op : intptr_t { kStartCall = 0, kFinish = 1 };
  auto tag = [](size_t i, Op op) { return reinterpret_cast<void*>((intptr_t(i) << 1) | op); };
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Stream>> streams;
  auto open = [&] {
    auto s = std::make_unique<Stream>();
    s->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    s->rw = op.stub->PrepareAsyncExec(&s->context, &cq);
    ++g_exec_streams;
    s->rw->StartCall(tag(streams.size(), kStartCall));
    s->rw->Finish(&s->status, tag(streams.size(), kFinish));
    streams.push_back(std::move(s));
  };
  int pending = 0;  // operations not yet completed
  // Takes what has completed (`wait`: for up to that long); a stream that
  // ended while the slots were being filled was refused: a probe took the
  // slot first. Another is opened in its place.
  bool filling = true;
  auto take = [&](milliseconds wait) {
    void* got = nullptr;
    bool ok = false;
    while (cq.AsyncNext(&got, &ok, std::chrono::system_clock::now() + wait) ==
           grpc::CompletionQueue::GOT_EVENT) {
      --pending;
      auto i = static_cast<size_t>(reinterpret_cast<intptr_t>(got) >> 1);
      if ((reinterpret_cast<intptr_t>(got) & 1) != kFinish) continue;
      streams[i]->finished = true;
      if (filling) {
        open();
        pending += 2;
      }
      wait = milliseconds(0);
    }
  };
  for (int i = 0; i < count; ++i) {
    open();
    pending += 2;
  }
  grpc::Status refused;
  bool full = PollUntil(
      [&] {
        take(milliseconds(0));
        return (refused = Probe(op)).error_code() == StatusCode::RESOURCE_EXHAUSTED;
      },
      milliseconds(60000));
  filling = false;
  INFO("the last probe: " << refused.error_code() << " " << refused.error_message());
  CHECK(full);
  CHECK(refused.error_message().find("the node runs " + std::to_string(count)) !=
        std::string::npos);

  // Every slot is held by a stream now, and only the refused ones end
  // without a cancel.
  std::vector<std::chrono::system_clock::time_point> cancelled;
  for (auto& s : streams) {
    if (s->finished) continue;
    cancelled.push_back(std::chrono::system_clock::now());
    s->context.TryCancel();
  }
  auto drain_deadline = Clock::now() + std::chrono::seconds(60);
  while (pending > 0 && Clock::now() < drain_deadline) take(milliseconds(200));
  CHECK(pending == 0);
  cq.Shutdown();
  {
    void* got = nullptr;
    bool ok = false;
    while (cq.Next(&got, &ok)) {
    }
  }
  int cancelled_streams = 0;
  for (auto& s : streams) {
    if (s->status.error_code() == StatusCode::CANCELLED) ++cancelled_streams;
  }
  CHECK(cancelled_streams == count);

  std::vector<std::chrono::system_clock::time_point> freed;
  bool recorded = PollUntil(
      [&] {
        freed = RecordTimes(daemon.AuditLog(), kEndedBeforeStart);
        return freed.size() == records_before + count;
      },
      milliseconds(60000));
  INFO("records of streams that ended before start: " << freed.size() - records_before << " of "
                                                      << count);
  REQUIRE(recorded);
  {
    grpc::Status s = Probe(op);
    INFO("the probe after the cancels: " << s.error_code() << " " << s.error_message());
    CHECK(s.error_code() == StatusCode::NOT_FOUND);
  }
  freed.erase(freed.begin(), freed.begin() + static_cast<long>(records_before));
  std::sort(freed.begin(), freed.end());
  CancelFigures figures;
  for (int i = 0; i < count && i < static_cast<int>(cancelled.size()); ++i) {
    figures.ms.push_back(Millis(freed[i] - cancelled[i]));
  }
  std::sort(figures.ms.begin(), figures.ms.end());
  if (!cancelled.empty() && !freed.empty()) {
    figures.cancelling = Millis(cancelled.back() - cancelled.front());
    figures.all_freed = Millis(freed.back() - cancelled.front());
  }
  return figures;
}

}  // namespace

// A stream cancelled before it sent start gives its session slot back at
// once, alone or in a burst of 1000: the node's capacity is the next caller's.
// And the slot is free by the time the stream's Exec record is written, so
// whoever read the record (an operator, the catalogue's WaitForExecsEnded)
// may count on it. The figures (cancel to record) are printed, not gated.
TEST_CASE("hostile: streams cancelled before start give their session slots back at once",
          "[hostile][slots]") {
  SC_REQUIRE_ROOT();
  constexpr int kBurst = 1000;
  constexpr int kAlone = 100;
  TempDir dir;
  fs::create_directories(dir / "instances");
  auto caller = [](const DaemonProcess& daemon) {
    Caller op{"operator",
              grpc::CreateCustomChannel("unix:" + daemon.socket_path(),
                                        grpc::InsecureChannelCredentials(), ChannelArgs()),
              nullptr};
    op.stub = v1::MountHelper::NewStub(op.channel);
    return op;
  };
  auto figures = [](const std::vector<double>& ms) {
    char line[128];
    std::snprintf(line, sizeof(line), "median %.3f ms, max %.3f ms", ms[ms.size() / 2], ms.back());
    return std::string(line);
  };

  SECTION("a burst of 1000 cancelled at once") {
    g_exec_streams = 0;
    DaemonProcess daemon(dir / "mh.sock", {"--instance_base=" + (dir / "instances"),
                                           "--max_execs=" + std::to_string(kBurst)});
    REQUIRE(daemon.started());
    Caller op = caller(daemon);
    REQUIRE(Probe(op).error_code() == StatusCode::NOT_FOUND);
    CancelFigures got = CancelBeforeStart(daemon, op, kBurst);
    const std::vector<double>& ms = got.ms;
    REQUIRE(ms.size() == kBurst);
    WARN(kBurst << " streams cancelled at once before start, cancel to slot freed: " << figures(ms)
                << "; the cancels took " << got.cancelling << " ms, the last slot was freed "
                << got.all_freed << " ms after the first cancel");
    std::printf(
        "sc-slots: burst=%d median_ms=%.3f max_ms=%.3f cancelling_ms=%.3f all_freed_ms=%.3f\n",
        kBurst, ms[kBurst / 2], ms.back(), got.cancelling, got.all_freed);
    CHECK(WaitForExecsEnded(daemon));
  }
  SECTION("100 cancelled one at a time") {
    g_exec_streams = 0;
    DaemonProcess daemon(dir / "mh.sock",
                         {"--instance_base=" + (dir / "instances"), "--max_execs=1"});
    REQUIRE(daemon.started());
    Caller op = caller(daemon);
    REQUIRE(Probe(op).error_code() == StatusCode::NOT_FOUND);
    std::vector<double> ms;
    for (int i = 0; i < kAlone; ++i) {
      CancelFigures one = CancelBeforeStart(daemon, op, 1);
      REQUIRE(one.ms.size() == 1);
      ms.push_back(one.ms[0]);
    }
    std::sort(ms.begin(), ms.end());
    WARN(kAlone << " streams cancelled one at a time before start, cancel to slot freed: "
                << figures(ms));
    std::printf("sc-slots: alone=%d median_ms=%.3f max_ms=%.3f\n", kAlone, ms[kAlone / 2],
                ms.back());
    CHECK(WaitForExecsEnded(daemon));
  }
}

}  // namespace sc::test
