// Stdio by reference (ExecStart.by_reference, issue 14 item 4): the daemon
// copies the fds a pod caller names out of that caller's own fd table
// (pidfd_getfd on the verified caller) and gives them to the workload, whose
// parent is then a keeper in the pod, not the daemon.
//
// The callers here are processes of a simulated pod that hold chosen files
// at chosen fd numbers (pipes either way round, a directory, O_PATH fds, the
// daemon's socket file, connections to the daemon, regular files, a
// socketpair), connect to the daemon and hand the connection to the test,
// which drives gRPC on it. So the daemon sees the caller it would see from
// sc-exec, and every field of the request can be filled as sc-exec never
// would. Hostile rows must each get their code and an actionable message
// and change nothing: no process, keeper or mount left, no byte written to
// the caller's pipes, the daemon's fds back where they were. Callers that
// exit before their fds are taken (a zombie, reaped, the pid reused, and a
// race of start against exit) are refused. Positive cases check the
// workload's output byte for byte in a pipe, a file and a socketpair, and the
// keeper's status record (common/keeper_wire.h) for exit N and death by
// signal.
#include <fcntl.h>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/keeper_wire.h"
#include "common/unique_fd.h"
#include "tests/integration/stress.h"

namespace sc::test {
namespace {

namespace fs = std::filesystem;
using grpc::StatusCode;
using Clock = std::chrono::steady_clock;

// Where a caller keeps its own connection to the daemon.
constexpr int kConnFd = 8;
// A number no caller here has open (checked on each caller).
constexpr int kNotOpen = 900;
constexpr int kMaxKept = 64;

std::unique_ptr<grpc::ClientContext> Context(milliseconds deadline = milliseconds(30000)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + deadline);
  return context;
}

char ProcState(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

// A process of the pod (its container cgroup, ipc, uts, net, pid and mount
// namespaces; root) holding `fds` at the given numbers and its connection to
// the daemon at kConnFd, which it hands to the test. It runs until Exit();
// its parent (outside the pod's pid namespace, in its cgroup) reaps it only
// at Reap(), so between the two it is a zombie.
class PodCaller {
 public:
  struct Fd {
    int number;
    UniqueFd fd;
  };

  PodCaller(const SimulatedPod& pod, const std::string& socket, std::vector<Fd> fds) {
    std::vector<UniqueFd> procs, namespaces;
    for (const std::string& dir : pod.cgroup_dirs()) {
      if (dir.find(pod.container_id()) == std::string::npos) continue;
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
    int pair[2], go[2], reap[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0 ||
        pipe2(go, O_CLOEXEC) != 0 || pipe2(reap, O_CLOEXEC) != 0) {
      FAIL("socketpair/pipe2: " << strerror(errno));
    }
    UniqueFd ours(pair[0]), theirs(pair[1]), go_r(go[0]), reap_r(reap[0]);
    go_w_.reset(go[1]);
    reap_w_.reset(reap[1]);

    // What the first child keeps, by index: the placed fds first, then the
    // cgroup.procs files, the namespaces, `theirs`, go_r, reap_r. Plain
    // arrays: the children make system calls only (this process has threads).
    int keep[kMaxKept];
    int targets[kMaxKept];
    int placed = 0, kept = 0;
    int high = kConnFd;
    for (const Fd& f : fds) {
      targets[placed++] = f.number;
      keep[kept++] = f.fd.get();
      high = std::max({high, f.number, f.fd.get()});
    }
    const int first_procs = kept;
    for (const UniqueFd& p : procs) keep[kept++] = p.get();
    const int first_ns = kept;
    for (const UniqueFd& n : namespaces) keep[kept++] = n.get();
    const int end_ns = kept;
    const int i_theirs = kept++, i_go = kept++, i_reap = kept++;
    keep[i_theirs] = theirs.get();
    keep[i_go] = go_r.get();
    keep[i_reap] = reap_r.get();
    for (int i = placed; i < kept; ++i) high = std::max(high, keep[i]);
    // Every copy lands at `base` or above, below kNotOpen.
    const int base = high + 1;
    REQUIRE(base + kept < kNotOpen);

    pid_ = static_cast<pid_t>(syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr));
    if (pid_ < 0) FAIL("clone: " << strerror(errno));
    if (pid_ == 0) {
      int moved[kMaxKept], sorted[kMaxKept];
      for (int i = 0; i < kept; ++i) {
        moved[i] = fcntl(keep[i], F_DUPFD, base);
        if (moved[i] < 0) _exit(20);
        sorted[i] = moved[i];
      }
      for (int i = 1; i < kept; ++i) {
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; --j)
          std::swap(sorted[j - 1], sorted[j]);
      }
      // Nothing but the copies: no other fd of the test's reaches the pod.
      syscall(SYS_close_range, 0U, static_cast<unsigned>(base - 1), 0U);
      unsigned next = static_cast<unsigned>(base);
      for (int i = 0; i < kept; ++i) {
        if (static_cast<unsigned>(sorted[i]) > next) {
          syscall(SYS_close_range, next, static_cast<unsigned>(sorted[i] - 1), 0U);
        }
        next = static_cast<unsigned>(sorted[i]) + 1;
      }
      syscall(SYS_close_range, next, ~0U, 0U);
      for (int i = 0; i < placed; ++i) {
        if (dup2(moved[i], targets[i]) != targets[i]) _exit(21);
      }
      for (int i = 0; i < placed; ++i) close(moved[i]);
      for (int i = first_procs; i < first_ns; ++i) {
        if (write(moved[i], "0", 1) != 1) _exit(22);
        close(moved[i]);
      }
      for (int i = first_ns; i < end_ns; ++i) {
        if (setns(moved[i], 0) != 0) _exit(23);
        close(moved[i]);
      }
      long caller = syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
      if (caller < 0) _exit(24);
      if (caller == 0) {
        // The caller: in the pod's pid namespace.
        close(moved[i_reap]);
        int conn = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (conn < 0 || connect(conn, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
          _exit(25);
        }
        if (conn != kConnFd) {
          if (dup3(conn, kConnFd, O_CLOEXEC) != kConnFd) _exit(26);
          close(conn);
        }
        if (!SendFd(moved[i_theirs], kConnFd)) _exit(27);
        close(moved[i_theirs]);
        char byte;
        while (read(moved[i_go], &byte, 1) != 0 && errno == EINTR) {
        }
        _exit(0);
      }
      // The parent holds none of the caller's files: only the caller may
      // keep a pipe's end open.
      for (int i = 0; i < placed; ++i) close(targets[i]);
      close(moved[i_theirs]);
      close(moved[i_go]);
      char byte;
      while (read(moved[i_reap], &byte, 1) != 0 && errno == EINTR) {
      }
      int status = 0;
      while (waitpid(static_cast<pid_t>(caller), &status, 0) < 0 && errno == EINTR) {
      }
      _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 28);
    }
    // Only the caller holds its files now.
    fds.clear();
    theirs.reset();
    go_r.reset();
    reap_r.reset();
    pollfd pfd{ours.get(), POLLIN, 0};
    if (poll(&pfd, 1, 10000) != 1) FAIL("the pod caller did not connect within 10 s");
    int conn = ReceiveFd(ours.get());
    if (conn < 0) FAIL("the pod caller did not hand over its connection");
    std::istringstream children(
        ReadFile("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children"));
    children >> caller_pid_;
    REQUIRE(caller_pid_ > 0);
    grpc::ChannelArguments args;
    channel_ = grpc::CreateCustomInsecureChannelFromFd("by-reference-caller", conn, args);
    stub_ = v1::MountHelper::NewStub(channel_);
  }

  ~PodCaller() {
    stub_.reset();
    channel_.reset();
    go_w_.reset();
    reap_w_.reset();
    if (pid_ <= 0) return;
    int status = 0;
    if (!PollUntil([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, milliseconds(10000))) {
      if (caller_pid_ > 0) kill(caller_pid_, SIGKILL);
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  PodCaller(const PodCaller&) = delete;
  PodCaller& operator=(const PodCaller&) = delete;

  v1::MountHelper::Stub* stub() const { return stub_.get(); }
  // The caller's pid in the host's (= the daemon's) pid namespace.
  pid_t pid() const { return caller_pid_; }
  // The first child, the caller's parent.
  pid_t parent_pid() const { return pid_; }

  // The caller exits and stays a zombie (its parent has not reaped it).
  void Exit() {
    go_w_.reset();
    REQUIRE(PollUntil([&] { return ProcState(caller_pid_) == 'Z'; }, milliseconds(10000)));
  }
  // Ends both and reaps them: the caller's pid is free afterwards.
  void ExitAndReap() {
    go_w_.reset();
    reap_w_.reset();
    int status = 0;
    REQUIRE(
        PollUntil([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, milliseconds(10000)));
    INFO("the caller's parent: status " << status);
    REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    pid_ = -1;
  }
  // The exit is asked for but not waited for (the race rows).
  void ExitNow() {
    go_w_.reset();
    reap_w_.reset();
  }

  // The fd numbers open in the caller.
  std::set<int> OpenFds() const {
    std::set<int> out;
    std::error_code ec;
    for (auto it = fs::directory_iterator("/proc/" + std::to_string(caller_pid_) + "/fd", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
      out.insert(std::atoi(it->path().filename().c_str()));
    }
    return out;
  }

 private:
  pid_t pid_ = -1;
  pid_t caller_pid_ = -1;
  UniqueFd go_w_, reap_w_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::MountHelper::Stub> stub_;
};

struct Pipe {
  UniqueFd read, write;
};

Pipe MakePipe() {
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

UniqueFd Connect(const std::string& socket) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket.data(), socket.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  REQUIRE(connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  return fd;
}

UniqueFd OpenOrFail(const std::string& path, int flags, mode_t mode = 0600) {
  UniqueFd fd(open(path.c_str(), flags | O_CLOEXEC, mode));
  INFO("open " << path << ": " << strerror(errno));
  REQUIRE(fd);
  return fd;
}

void SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  REQUIRE(flags >= 0);
  REQUIRE(fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0);
}

// A caller whose fds are sc-exec's (0 stdin, 1 stdout, 2 stderr, 3 status
// pipe, 4 control pipe) plus every kind of file a hostile request may name:
//   5 a directory            6 O_PATH of a regular file
//   7 O_PATH of the daemon's socket file
//   8 (kConnFd) its own connection to the daemon
//   9 another connection to the daemon
//  10 a pipe's read end (a status pipe the wrong way round)
//  11 a pipe's write end (a control pipe the wrong way round)
//  12 a regular file, read-only   13 a regular file, write-only
//  14 one end of a socketpair
// The test keeps the other end of each of 0-4 (non-blocking, so that "no
// byte came" is a read that finds nothing).
struct HostileCaller {
  std::unique_ptr<PodCaller> caller;
  UniqueFd stdin_w, stdout_r, stderr_r, status_r, control_w;
  UniqueFd socketpair_end;
  // The test's gRPC channel on fd 9's connection: one that has spoken, so
  // the daemon does not close it as silent (its end then gone, it would be
  // no connection to the daemon any more).
  std::shared_ptr<grpc::Channel> other_connection;
};

HostileCaller MakeHostileCaller(const SimulatedPod& pod, const std::string& socket,
                                const std::string& dir) {
  HostileCaller h;
  Pipe in = MakePipe(), out = MakePipe(), err = MakePipe(), status = MakePipe(),
       control = MakePipe(), wrong_status = MakePipe(), wrong_control = MakePipe();
  std::ofstream(dir + "/plain") << "a regular file\n";
  int pair[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  h.socketpair_end.reset(pair[0]);
  std::vector<PodCaller::Fd> fds;
  fds.push_back({0, std::move(in.read)});
  fds.push_back({1, std::move(out.write)});
  fds.push_back({2, std::move(err.write)});
  fds.push_back({3, std::move(status.write)});
  fds.push_back({4, std::move(control.read)});
  fds.push_back({5, OpenOrFail(dir, O_RDONLY | O_DIRECTORY)});
  fds.push_back({6, OpenOrFail(dir + "/plain", O_PATH)});
  fds.push_back({7, OpenOrFail(socket, O_PATH)});
  {
    UniqueFd conn = Connect(socket);
    UniqueFd copy(fcntl(conn.get(), F_DUPFD_CLOEXEC, 0));
    REQUIRE(copy);
    h.other_connection = grpc::CreateInsecureChannelFromFd("by-reference-other", conn.release());
    v1::PeerIdentity who;
    REQUIRE_OK(v1::MountHelper::NewStub(h.other_connection)->WhoAmI(Context().get(), {}, &who));
    REQUIRE(who.kind() == v1::PeerIdentity::OPERATOR);
    fds.push_back({9, std::move(copy)});
  }
  fds.push_back({10, std::move(wrong_status.read)});
  fds.push_back({11, std::move(wrong_control.write)});
  fds.push_back({12, OpenOrFail(dir + "/plain", O_RDONLY)});
  fds.push_back({13, OpenOrFail(dir + "/plain", O_WRONLY)});
  fds.push_back({14, UniqueFd(pair[1])});
  h.caller = std::make_unique<PodCaller>(pod, socket, std::move(fds));
  h.stdin_w = std::move(in.write);
  h.stdout_r = std::move(out.read);
  h.stderr_r = std::move(err.read);
  h.status_r = std::move(status.read);
  h.control_w = std::move(control.write);
  for (int fd : {h.stdout_r.get(), h.stderr_r.get(), h.status_r.get()}) SetNonBlocking(fd);
  std::set<int> open = h.caller->OpenFds();
  std::set<int> expected = {0, 1, 2, 3, 4, 5, 6, 7, kConnFd, 9, 10, 11, 12, 13, 14};
  INFO("open in the caller: " << [&] {
    std::string s;
    for (int fd : open) s += " " + std::to_string(fd);
    return s;
  }());
  // The rest are the caller's own (its go pipe), far from kNotOpen.
  for (int fd : expected) CHECK(open.count(fd) == 1);
  CHECK(open.count(kNotOpen) == 0);
  return h;
}

v1::StdioByReference Standard() {
  v1::StdioByReference ref;
  ref.set_stdin_fd(0);
  ref.set_stdout_fd(1);
  ref.set_stderr_fd(2);
  ref.set_status_fd(3);
  ref.set_control_fd(4);
  return ref;
}

v1::ExecRequest ByRefStart(const std::vector<std::string>& argv,
                           const std::function<void(v1::ExecStart&)>& tweak = nullptr) {
  v1::ExecRequest request;
  v1::ExecStart& start = *request.mutable_start();
  for (const std::string& a : argv) start.add_argv(a);
  *start.mutable_by_reference() = Standard();
  if (tweak) tweak(start);
  return request;
}

struct Outcome {
  grpc::Status status;
  bool started = false;
  bool by_reference = false;
  int pid = 0;
  std::string exit;  // "exited N: message" when the daemon sent one
};

// One Exec call: `messages` are written, then the half-close, then every
// response is read.
Outcome Call(v1::MountHelper::Stub* stub, const std::vector<v1::ExecRequest>& messages) {
  auto context = Context();
  auto stream = stub->Exec(context.get());
  for (const v1::ExecRequest& m : messages) {
    if (!stream->Write(m)) break;
  }
  stream->WritesDone();
  Outcome out;
  v1::ExecResponse response;
  while (stream->Read(&response)) {
    if (response.has_started()) {
      out.started = true;
      out.by_reference = response.started().by_reference();
      out.pid = response.started().pid();
    }
    if (response.has_exit()) {
      const v1::ExecExit& e = response.exit();
      out.exit = e.status_case() == v1::ExecExit::kSignal
                     ? "killed by signal " + std::to_string(e.signal())
                     : "exited " + std::to_string(e.exit_code());
      if (!e.message().empty()) out.exit += ": " + e.message();
    }
  }
  out.status = stream->Finish();
  return out;
}

// The keeper's record from the status pipe, waited for (bounded); while
// waiting, what `output` gives is appended to `collected` (a pipe or socket
// the workload writes to, whose write end the caller also holds, so its EOF
// never comes: the record is the end). Non-blocking fds.
bool ReadStatus(int status_fd, KeeperStatus* status, int output = -1,
                std::string* collected = nullptr, milliseconds timeout = milliseconds(30000)) {
  char record[sizeof(KeeperStatus)];
  size_t got = 0;
  auto drain = [&] {
    char buffer[65536];
    ssize_t n;
    while ((n = read(output, buffer, sizeof(buffer))) > 0) collected->append(buffer, n);
  };
  auto deadline = Clock::now() + timeout;
  while (got < sizeof(record)) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd fds[2] = {{status_fd, POLLIN, 0}, {output, POLLIN, 0}};
    int rc = poll(fds, output >= 0 ? 2 : 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return false;
    if (output >= 0 && fds[1].revents != 0) drain();
    if (fds[0].revents != 0) {
      ssize_t n = read(status_fd, record + got, sizeof(record) - got);
      if (n == 0) return false;  // EOF without a record
      if (n > 0) got += static_cast<size_t>(n);
    }
  }
  // Everything the workload wrote is there before the record.
  if (output >= 0) drain();
  std::memcpy(status, record, sizeof(*status));
  return status->magic == kKeeperStatusMagic;
}

std::string Describe(const KeeperStatus& s) {
  return "code " + std::to_string(s.code) + " status " + std::to_string(s.status) + " stopped " +
         std::to_string(s.stopped);
}

// Bytes a non-blocking fd has now ("" if none).
std::string Available(int fd) {
  std::string out;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) out.append(buffer, n);
  return out;
}

// Processes of the pod's container that the daemon started for it: its
// keepers and their workloads (everything but `baseline`).
std::set<pid_t> Started(const SimulatedPod& pod, const std::set<pid_t>& baseline) {
  std::set<pid_t> out;
  for (pid_t pid : PodProcesses(pod)) {
    if (baseline.count(pid) == 0) out.insert(pid);
  }
  return out;
}

// Keepers in the pod's cgroup.
std::set<pid_t> Keepers(const SimulatedPod& pod) {
  std::set<pid_t> out;
  for (pid_t pid : PodProcesses(pod)) {
    if (ReadFile("/proc/" + std::to_string(pid) + "/cmdline").find("sc-mount-helper: keeper") !=
        std::string::npos) {
      out.insert(pid);
    }
  }
  return out;
}

// Should a case fail half-way: no keeper of this test's outlives its pod
// (keepers live in the node's pid namespace, so killing the pod's pid 1
// does not end them).
struct KeeperGuard {
  const SimulatedPod* pod;
  ~KeeperGuard() {
    for (pid_t pid : Keepers(*pod)) kill(pid, SIGKILL);
  }
};

// `text` tells that the caller is gone.
bool NamesExit(const std::string& text) { return text.find("exited") != std::string::npos; }

}  // namespace

TEST_CASE(
    "by reference: hostile fds, operators and dead callers are refused with a fitting code; "
    "nothing changes",
    "[exec][by_reference][hostile]") {
  SC_REQUIRE_ROOT();
  InstanceNode node({"--exec_kill_grace=1s"});
  REQUIRE_OK(node.Prepare("web"));
  std::unique_ptr<SimulatedPod> pod = node.ConsumerPod("web");
  KeeperGuard guard{pod.get()};
  const std::string rootfs = node.Rootfs("web");
  const std::string files = node.dir / "files";
  fs::create_directories(files);

  HostileCaller h = MakeHostileCaller(*pod, node.socket(), files);
  v1::MountHelper::Stub* stub = h.caller->stub();
  {
    v1::PeerIdentity who;
    REQUIRE_OK(stub->WhoAmI(Context().get(), {}, &who));
    CHECK(who.kind() == v1::PeerIdentity::POD);
    CHECK(who.pod_uid() == pod->uid());
    CHECK(who.pid() == h.caller->pid());
  }
  auto op_stub = v1::MountHelper::NewStub(
      grpc::CreateChannel("unix:" + node.socket(), grpc::InsecureChannelCredentials()));
  {
    // Connected now, so that its connection is in the baseline.
    v1::PeerIdentity who;
    REQUIRE_OK(op_stub->WhoAmI(Context().get(), {}, &who));
    REQUIRE(who.kind() == v1::PeerIdentity::OPERATOR);
  }

  // A good session first: what is made lazily is then in the baseline, and
  // the layout works as sc-exec's does.
  {
    Outcome ok = Call(stub, {ByRefStart({"sh", "-c", "echo warm; exit 3"})});
    INFO(ok.status.error_code() << " " << ok.status.error_message());
    REQUIRE(ok.status.ok());
    REQUIRE(ok.started);
    REQUIRE(ok.by_reference);
    KeeperStatus status;
    std::string out;
    REQUIRE(ReadStatus(h.status_r.get(), &status, h.stdout_r.get(), &out));
    CHECK(status.code == CLD_EXITED);
    CHECK(status.status == 3);
    CHECK(out == "warm\n");
  }
  std::set<pid_t> baseline;
  REQUIRE(PollUntil(
      [&] {
        baseline = PodProcesses(*pod);
        return Keepers(*pod).empty();
      },
      milliseconds(10000)));
  REQUIRE(PollUntil([&] { return node.daemon().ChildCount() == 0; }, milliseconds(10000)));
  const auto mounts_before = StackedMounts(node.dir.path());
  const int fds_before = node.daemon().OpenFdCount();

  struct Row {
    std::string what;
    std::function<Outcome()> send;
    StatusCode code;
    std::string message;
  };
  int row_number = 0;
  std::string marker;
  // The workload every row asks for: if one ran, its marker is in the rootfs.
  auto command = [&] {
    marker = "by-ref-ran-" + std::to_string(++row_number);
    return std::vector<std::string>{"sh", "-c", "echo ran > /tmp/" + marker};
  };
  auto pod_row = [&](const std::function<void(v1::ExecStart&)>& tweak) {
    return [&, tweak] { return Call(stub, {ByRefStart(command(), tweak)}); };
  };
  auto field = [&](const char* name, int number) {
    return pod_row([name = std::string(name), number](v1::ExecStart& s) {
      v1::StdioByReference* r = s.mutable_by_reference();
      if (name == "stdin") r->set_stdin_fd(number);
      if (name == "stdout") r->set_stdout_fd(number);
      if (name == "stderr") r->set_stderr_fd(number);
      if (name == "status") r->set_status_fd(number);
      if (name == "control") r->set_control_fd(number);
    });
  };
  const std::string pid = std::to_string(h.caller->pid());
  const std::string own_socket = "is the mount-helper's socket or a connection to it";
  const std::vector<Row> rows = {
      // ------------------------------------------------- numbers
      {"stdin_fd not open in the caller", field("stdin", kNotOpen), StatusCode::INVALID_ARGUMENT,
       "by_reference.stdin_fd (fd 900) is not open in the caller (pid " + pid + ")"},
      {"control_fd not open in the caller", field("control", 899), StatusCode::INVALID_ARGUMENT,
       "by_reference.control_fd (fd 899) is not open in the caller"},
      {"stdout_fd -1", field("stdout", -1), StatusCode::INVALID_ARGUMENT,
       "by_reference.stdout_fd: -1 is not an fd number (0 to 1048575)"},
      {"stderr_fd INT32_MIN", field("stderr", INT32_MIN), StatusCode::INVALID_ARGUMENT,
       "by_reference.stderr_fd: -2147483648 is not an fd number"},
      {"status_fd 2^20", field("status", 1 << 20), StatusCode::INVALID_ARGUMENT,
       "by_reference.status_fd: 1048576 is not an fd number (0 to 1048575)"},
      {"control_fd INT32_MAX", field("control", INT32_MAX), StatusCode::INVALID_ARGUMENT,
       "by_reference.control_fd: 2147483647 is not an fd number"},
      {"stdin_fd 2^20-1, the highest number, not open", field("stdin", (1 << 20) - 1),
       StatusCode::INVALID_ARGUMENT,
       "by_reference.stdin_fd (fd 1048575) is not open in the caller"},
      // ------------------------------------------------- kinds
      {"stdout_fd a directory", field("stdout", 5), StatusCode::INVALID_ARGUMENT,
       "by_reference.stdout_fd (fd 5) is a directory"},
      {"stdin_fd a directory", field("stdin", 5), StatusCode::INVALID_ARGUMENT,
       "by_reference.stdin_fd (fd 5) is a directory"},
      {"stdout_fd an O_PATH fd", field("stdout", 6), StatusCode::INVALID_ARGUMENT,
       "by_reference.stdout_fd (fd 6) is an O_PATH fd, which cannot be read or written"},
      {"stdin_fd an O_PATH fd of the daemon's socket", field("stdin", 7),
       StatusCode::INVALID_ARGUMENT, "by_reference.stdin_fd (fd 7) is an O_PATH fd"},
      {"stdout_fd the caller's own connection to the daemon", field("stdout", kConnFd),
       StatusCode::PERMISSION_DENIED, "by_reference.stdout_fd (fd 8) " + own_socket},
      {"stdin_fd the caller's own connection to the daemon", field("stdin", kConnFd),
       StatusCode::PERMISSION_DENIED, "by_reference.stdin_fd (fd 8) " + own_socket},
      {"stderr_fd another connection to the daemon", field("stderr", 9),
       StatusCode::PERMISSION_DENIED, "by_reference.stderr_fd (fd 9) " + own_socket},
      {"a terminal whose stdout_fd is a connection to the daemon", pod_row([](v1::ExecStart& s) {
         s.set_tty(true);
         s.mutable_by_reference()->set_stdout_fd(9);
       }),
       StatusCode::PERMISSION_DENIED, "by_reference.stdout_fd (fd 9) " + own_socket},
      {"control_fd the caller's own connection (not a pipe)", field("control", kConnFd),
       StatusCode::INVALID_ARGUMENT, "by_reference.control_fd (fd 8) must be a pipe"},
      // ------------------------------------------------- directions
      {"status_fd a pipe's read end", field("status", 10), StatusCode::INVALID_ARGUMENT,
       "by_reference.status_fd (fd 10) is not open for writing"},
      {"status_fd the control pipe's read end", field("status", 4), StatusCode::INVALID_ARGUMENT,
       "by_reference.status_fd (fd 4) is not open for writing"},
      {"control_fd a pipe's write end", field("control", 11), StatusCode::INVALID_ARGUMENT,
       "by_reference.control_fd (fd 11) is not open for reading"},
      {"control_fd the status pipe's write end", field("control", 3), StatusCode::INVALID_ARGUMENT,
       "by_reference.control_fd (fd 3) is not open for reading"},
      {"status_fd a regular file", field("status", 13), StatusCode::INVALID_ARGUMENT,
       "by_reference.status_fd (fd 13) must be a pipe"},
      {"control_fd a socketpair end", field("control", 14), StatusCode::INVALID_ARGUMENT,
       "by_reference.control_fd (fd 14) must be a pipe"},
      {"stdout_fd a read-only file", field("stdout", 12), StatusCode::INVALID_ARGUMENT,
       "by_reference.stdout_fd (fd 12) is not open for writing"},
      {"stderr_fd a pipe's read end (the caller's stdin)", field("stderr", 0),
       StatusCode::INVALID_ARGUMENT, "by_reference.stderr_fd (fd 0) is not open for writing"},
      {"stdin_fd a write-only file", field("stdin", 13), StatusCode::INVALID_ARGUMENT,
       "by_reference.stdin_fd (fd 13) is not open for reading"},
      {"stdin_fd a pipe's write end (the caller's stdout)", field("stdin", 1),
       StatusCode::INVALID_ARGUMENT, "by_reference.stdin_fd (fd 1) is not open for reading"},
      // ------------------------------------------------- who asks
      {"a pod's by-reference start naming an instance", pod_row([](v1::ExecStart& s) {
         s.mutable_instance()->set_namespace_("ns");
         s.mutable_instance()->set_name("web");
       }),
       StatusCode::PERMISSION_DENIED,
       "a pod execs only into the rootfs mounted into it: leave instance empty"},
      {"an operator asks for stdio by reference",
       [&] {
         return Call(op_stub.get(), {ByRefStart(command(), [](v1::ExecStart& s) {
                       s.mutable_instance()->set_namespace_("ns");
                       s.mutable_instance()->set_name("web");
                     })});
       },
       StatusCode::INVALID_ARGUMENT,
       "stdio by reference is for pod callers: an operator's session streams"},
      {"an operator asks for a terminal by reference",
       [&] {
         return Call(op_stub.get(), {ByRefStart(command(), [](v1::ExecStart& s) {
                       s.set_tty(true);
                       s.mutable_instance()->set_namespace_("ns");
                       s.mutable_instance()->set_name("web");
                     })});
       },
       StatusCode::INVALID_ARGUMENT, "stdio by reference is for pod callers"},
  };

  int as_expected = 0;
  for (const Row& row : rows) {
    Outcome got = row.send();
    const std::string text = got.status.ok() ? got.exit : got.status.error_message();
    INFO("[" << row.what << "] got " << got.status.error_code() << " \"" << text << "\"");
    bool code_ok = got.status.error_code() == row.code;
    bool message_ok = text.find(row.message) != std::string::npos;
    CHECK(code_ok);
    CHECK(message_ok);
    CHECK_FALSE(got.started);
    if (code_ok && message_ok) ++as_expected;
    std::printf("sc-by-reference row: %s | %d | %s\n", row.what.c_str(),
                static_cast<int>(got.status.error_code()), text.c_str());
    // Nothing ran, nothing was started or mounted, no byte reached the
    // caller's pipes, the daemon has no child.
    CHECK_FALSE(fs::exists(rootfs + "/tmp/" + marker));
    CHECK(Started(*pod, baseline).empty());
    CHECK(StackedMounts(node.dir.path()) == mounts_before);
    CHECK(Available(h.stdout_r.get()).empty());
    CHECK(Available(h.stderr_r.get()).empty());
    CHECK(Available(h.status_r.get()).empty());
    CHECK(node.daemon().ChildCount() == 0);
  }
  CHECK(as_expected == static_cast<int>(rows.size()));

  // Messages after a by-reference start: the daemon ends the call after
  // `started` and reads none of them, so neither stdin nor the SIGKILL
  // reaches the process, which reads the caller's own stdin.
  {
    v1::ExecRequest stdin_message, resize, signal, eof;
    stdin_message.set_stdin("from the stream\n");
    resize.mutable_resize()->set_rows(10);
    resize.mutable_resize()->set_cols(10);
    signal.mutable_signal()->set_signal(SIGKILL);
    eof.mutable_stdin_eof();
    Outcome got = Call(stub, {ByRefStart({"sh", "-c", "read line; echo \"got:$line\"; exit 4"}),
                              stdin_message, resize, signal, eof});
    INFO(got.status.error_code() << " " << got.status.error_message());
    CHECK(got.status.ok());
    CHECK(got.started);
    CHECK(got.by_reference);
    std::printf(
        "sc-by-reference row: stdin, resize, signal, stdin_eof after a by-reference "
        "start | %d | started, call ended\n",
        static_cast<int>(got.status.error_code()));
    const std::string line = "from the pipe\n";
    REQUIRE(write(h.stdin_w.get(), line.data(), line.size()) == static_cast<ssize_t>(line.size()));
    KeeperStatus status;
    std::string out;
    REQUIRE(ReadStatus(h.status_r.get(), &status, h.stdout_r.get(), &out));
    INFO(Describe(status));
    CHECK(out == "got:from the pipe\n");
    CHECK(status.code == CLD_EXITED);
    CHECK(status.status == 4);
    CHECK(status.stopped == 0);
  }
  // The same connection still works for a streaming session.
  {
    v1::ExecRequest start;
    start.mutable_start()->add_argv("echo");
    start.mutable_start()->add_argv("streamed");
    v1::ExecRequest eof;
    eof.mutable_stdin_eof();
    Outcome got = Call(stub, {start, eof});
    CHECK(got.status.ok());
    CHECK(got.exit == "exited 0");
  }

  // Callers that exit before their fds are taken. The daemon pins a caller
  // by its pidfd, so a reused pid is never taken for it, and a dead caller's
  // fds are gone with it.
  struct Dead {
    const char* what;
    bool reap;
    bool reuse;
  };
  const Dead dead[] = {
      {"a caller that exited and is a zombie", false, false},
      {"a caller that exited and was reaped", true, false},
      {"a caller that exited, its pid reused by an operator-like process", true, true},
  };
  for (const Dead& d : dead) {
    HostileCaller gone = MakeHostileCaller(*pod, node.socket(), files);
    v1::PeerIdentity who;
    REQUIRE_OK(gone.caller->stub()->WhoAmI(Context().get(), {}, &who));
    REQUIRE(who.kind() == v1::PeerIdentity::POD);
    const pid_t caller_pid = gone.caller->pid();
    const std::set<pid_t> with_caller = PodProcesses(*pod);
    std::unique_ptr<ProcessWithPid> reuser;
    if (d.reap) {
      gone.caller->ExitAndReap();
      if (d.reuse) {
        reuser = std::make_unique<ProcessWithPid>(caller_pid);
        REQUIRE(reuser->pid() == caller_pid);
      }
    } else {
      gone.caller->Exit();
    }
    Outcome got = Call(gone.caller->stub(), {ByRefStart(command())});
    const std::string text = got.status.error_message();
    INFO("[" << d.what << "] got " << got.status.error_code() << " \"" << text << "\"");
    std::printf("sc-by-reference row: %s | %d | %s\n", d.what,
                static_cast<int>(got.status.error_code()), text.c_str());
    CHECK_FALSE(got.started);
    CHECK((got.status.error_code() == StatusCode::PERMISSION_DENIED ||
           got.status.error_code() == StatusCode::FAILED_PRECONDITION));
    CHECK(NamesExit(text));
    CHECK(text.find(std::to_string(caller_pid)) != std::string::npos);
    CHECK_FALSE(fs::exists(rootfs + "/tmp/" + marker));
    CHECK(Keepers(*pod).empty());
    CHECK(Available(gone.status_r.get()).empty());
    CHECK(Available(gone.stdout_r.get()).empty());
  }

  // The race: start is sent and the caller exits at once, so the daemon
  // finds it alive, a zombie or reaped at any of its steps. Each round is
  // refused naming the exit, or (exit after the fds were taken) started:
  // then the keeper runs the session and reports it on the status pipe.
  int refused = 0, started = 0;
  std::map<std::string, int> refusals;  // code and message, the pid left out
  const int rounds = static_cast<int>(EnvNumber("SC_BY_REFERENCE_RACE_ROUNDS", 20));
  for (int round = 0; round < rounds; ++round) {
    HostileCaller racer = MakeHostileCaller(*pod, node.socket(), files);
    v1::PeerIdentity who;
    REQUIRE_OK(racer.caller->stub()->WhoAmI(Context().get(), {}, &who));
    auto context = Context();
    auto stream = racer.caller->stub()->Exec(context.get());
    REQUIRE(stream->Write(ByRefStart(command())));
    racer.caller->ExitNow();
    stream->WritesDone();
    Outcome got;
    v1::ExecResponse response;
    while (stream->Read(&response)) got.started = got.started || response.has_started();
    got.status = stream->Finish();
    const std::string text = got.status.error_message();
    INFO("round " << round << ": " << got.status.error_code() << " \"" << text << "\"");
    if (got.status.ok()) {
      CHECK(got.started);
      ++started;
      // The session runs to its end: `sh -c echo` exits 0, or the keeper
      // stopped it for its caller (control pipe at EOF once the test's end
      // closes).
      racer.control_w.reset();
      KeeperStatus status;
      CHECK(ReadStatus(racer.status_r.get(), &status));
    } else {
      ++refused;
      std::string shape = std::to_string(static_cast<int>(got.status.error_code())) + " " + text;
      size_t digits = shape.find_first_of("0123456789", shape.find("pid "));
      if (digits != std::string::npos) {
        shape.erase(digits, shape.find_first_not_of("0123456789", digits) - digits);
      }
      ++refusals[shape];
      CHECK((got.status.error_code() == StatusCode::PERMISSION_DENIED ||
             got.status.error_code() == StatusCode::FAILED_PRECONDITION));
      CHECK(NamesExit(text));
      CHECK_FALSE(fs::exists(rootfs + "/tmp/" + marker));
      CHECK(Available(racer.status_r.get()).empty());
    }
  }
  std::printf("sc-by-reference race: rounds=%d refused=%d started=%d\n", rounds, refused, started);
  for (const auto& [shape, count] : refusals) {
    std::printf("sc-by-reference race refusal: %d x %s\n", count, shape.c_str());
  }

  // After every row: no keeper, no workload, no daemon child, the mounts
  // and the daemon's fds as before; sessions still work.
  CHECK(PollUntil([&] { return Keepers(*pod).empty(); }, milliseconds(10000)));
  CHECK(PollUntil([&] { return Started(*pod, baseline).empty(); }, milliseconds(10000)));
  INFO("left in the pod: " << DescribeProcesses(Started(*pod, baseline)));
  CHECK(Started(*pod, baseline).empty());
  CHECK(PollUntil([&] { return node.daemon().ChildCount() == 0; }, milliseconds(10000)));
  CHECK(StackedMounts(node.dir.path()) == mounts_before);
  CHECK(PollUntil([&] { return node.daemon().OpenFdCount() == fds_before; }, milliseconds(15000)));
  INFO("daemon fds before " << fds_before << ", after " << node.daemon().OpenFdCount());
  CHECK(node.daemon().OpenFdCount() == fds_before);
  {
    Outcome ok = Call(stub, {ByRefStart({"sh", "-c", "echo still; exit 5"})});
    REQUIRE(ok.status.ok());
    KeeperStatus status;
    std::string out;
    REQUIRE(ReadStatus(h.status_r.get(), &status, h.stdout_r.get(), &out));
    CHECK(out == "still\n");
    CHECK(status.code == CLD_EXITED);
    CHECK(status.status == 5);
  }
  ProcessResult via_sc_exec = pod->Exec(node.ScExec({"echo", "sc-exec works"}));
  INFO(via_sc_exec.Describe() << " " << via_sc_exec.err);
  CHECK(via_sc_exec.out == "sc-exec works\n");
  CHECK(via_sc_exec.exit_code == 0);
}

TEST_CASE(
    "by reference: a pod caller's pipe, file or socketpair gets the output byte for byte, and "
    "the status record tells exit N from death by signal",
    "[exec][by_reference]") {
  SC_REQUIRE_ROOT();
  InstanceNode node({"--exec_kill_grace=1s"});
  REQUIRE_OK(node.Prepare("web"));
  std::unique_ptr<SimulatedPod> pod = node.ConsumerPod("web");
  KeeperGuard guard{pod.get()};
  const std::string files = node.dir / "files";
  fs::create_directories(files);
  const std::set<pid_t> baseline = PodProcesses(*pod);

  // What `seq 1 100000` prints: 588 895 bytes, more than a pipe holds, so
  // the workload blocks until the test reads.
  std::string numbers;
  for (int i = 1; i <= 100000; ++i) numbers += std::to_string(i) + "\n";

  enum class Out { kPipe, kFile, kSocketpair };
  struct Case {
    const char* what;
    Out out;
    std::string script;
    int code;    // CLD_EXITED / CLD_KILLED
    int status;  // exit code or signal
  };
  const Case cases[] = {
      {"a pipe, exit 0", Out::kPipe, "seq 1 100000", CLD_EXITED, 0},
      {"a pipe, exit 7", Out::kPipe, "seq 1 100000; exit 7", CLD_EXITED, 7},
      {"a file, exit 255", Out::kFile, "seq 1 100000; exit 255", CLD_EXITED, 255},
      {"a socketpair end, killed by SIGKILL", Out::kSocketpair, "seq 1 100000; kill -KILL $$",
       CLD_KILLED, SIGKILL},
      {"a pipe, killed by SIGTERM", Out::kPipe, "seq 1 100000; kill -TERM $$", CLD_KILLED, SIGTERM},
      {"a file, killed by SIGUSR1", Out::kFile, "seq 1 100000; kill -USR1 $$", CLD_KILLED, SIGUSR1},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    {
      Pipe in = MakePipe(), err = MakePipe(), status = MakePipe(), control = MakePipe();
      UniqueFd out_theirs, out_ours;
      const std::string out_file = files + "/out-" + RandomHex(6);
      if (c.out == Out::kPipe) {
        Pipe out = MakePipe();
        out_theirs = std::move(out.write);
        out_ours = std::move(out.read);
      } else if (c.out == Out::kSocketpair) {
        int pair[2];
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
        out_ours.reset(pair[0]);
        out_theirs.reset(pair[1]);
      } else {
        out_theirs = OpenOrFail(out_file, O_WRONLY | O_CREAT | O_TRUNC);
      }
      std::vector<PodCaller::Fd> fds;
      fds.push_back({0, std::move(in.read)});
      fds.push_back({1, std::move(out_theirs)});
      fds.push_back({2, std::move(err.write)});
      fds.push_back({5, std::move(status.write)});
      fds.push_back({6, std::move(control.read)});
      PodCaller caller(*pod, node.socket(), std::move(fds));
      in.write.reset();  // stdin: EOF at once
      for (int fd : {err.read.get(), status.read.get()}) SetNonBlocking(fd);
      if (out_ours) SetNonBlocking(out_ours.get());

      v1::ExecRequest start = ByRefStart({"sh", "-c", c.script}, [](v1::ExecStart& s) {
        s.mutable_by_reference()->set_status_fd(5);
        s.mutable_by_reference()->set_control_fd(6);
      });
      Outcome got = Call(caller.stub(), {start});
      INFO(got.status.error_code() << " " << got.status.error_message() << " " << got.exit);
      REQUIRE(got.status.ok());
      CHECK(got.started);
      CHECK(got.by_reference);
      CHECK(got.pid > 1);  // in the pod's pid namespace
      CHECK(got.exit.empty());
      KeeperStatus record;
      std::string output;
      REQUIRE(ReadStatus(status.read.get(), &record, out_ours ? out_ours.get() : -1, &output));
      INFO(Describe(record));
      CHECK(record.code == c.code);
      CHECK(record.status == c.status);
      CHECK(record.stopped == 0);
      if (c.out == Out::kFile) output = ReadFile(out_file);
      CHECK(output.size() == numbers.size());
      CHECK(output == numbers);
      CHECK(Available(err.read.get()).empty());
      // One record only.
      CHECK(Available(status.read.get()).empty());
      CHECK(PollUntil([&] { return Keepers(*pod).empty(); }, milliseconds(10000)));
      std::printf("sc-by-reference output: %s: %zu bytes, %s\n", c.what, output.size(),
                  Describe(record).c_str());
    }
  }
  // stdin by reference too: cat copies the caller's pipe to its socketpair.
  {
    INFO("stdin from a pipe through cat to a socketpair, byte for byte");
    Pipe in = MakePipe(), err = MakePipe(), status = MakePipe(), control = MakePipe();
    int pair[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    UniqueFd out_ours(pair[0]);
    std::vector<PodCaller::Fd> fds;
    fds.push_back({0, std::move(in.read)});
    fds.push_back({1, UniqueFd(pair[1])});
    fds.push_back({2, std::move(err.write)});
    fds.push_back({3, std::move(status.write)});
    fds.push_back({4, std::move(control.read)});
    PodCaller caller(*pod, node.socket(), std::move(fds));
    for (int fd : {in.write.get(), out_ours.get(), status.read.get()}) SetNonBlocking(fd);
    std::string input(1 << 20, '\0');
    ByteStream(42).Fill(input.data(), input.size());
    Outcome got = Call(caller.stub(), {ByRefStart({"cat"})});
    REQUIRE(got.status.ok());
    REQUIRE(got.by_reference);
    std::string output;
    size_t sent = 0;
    auto deadline = Clock::now() + std::chrono::seconds(30);
    while (output.size() < input.size() && Clock::now() < deadline) {
      pollfd p[2] = {{out_ours.get(), POLLIN, 0}, {in.write.get(), POLLOUT, 0}};
      int n = in.write ? 2 : 1;
      if (poll(p, n, 1000) <= 0) continue;
      if (n == 2 && (p[1].revents & POLLOUT)) {
        ssize_t w = write(in.write.get(), input.data() + sent, input.size() - sent);
        if (w > 0) sent += static_cast<size_t>(w);
        if (sent == input.size()) in.write.reset();  // EOF: cat ends
      }
      if (p[0].revents & POLLIN) output += Available(out_ours.get());
    }
    KeeperStatus record;
    REQUIRE(ReadStatus(status.read.get(), &record, out_ours.get(), &output));
    INFO(Describe(record));
    CHECK(record.code == CLD_EXITED);
    CHECK(record.status == 0);
    CHECK(output.size() == input.size());
    CHECK(output == input);
  }
  // Nothing of the sessions is left: no keeper, no workload, no daemon child.
  CHECK(PollUntil([&] { return Keepers(*pod).empty(); }, milliseconds(10000)));
  CHECK(PollUntil([&] { return Started(*pod, baseline).empty(); }, milliseconds(10000)));
  CHECK(PollUntil([&] { return node.daemon().ChildCount() == 0; }, milliseconds(10000)));
}

}  // namespace sc::test
