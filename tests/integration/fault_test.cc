// Faults against the real daemon: SIGKILL in the middle of prepares, with live
// exec sessions, and in a loop with prepares and releases in flight; a full
// upper layer; a caller that exits (its pid reused) while its call is in
// flight. After each, the node must be exactly as the mount table, the pods
// and the audit log say it should be: nothing mounted twice, no half-mounted
// instance left, every instance re-adopted, no orphan in any pod, new
// sessions working.
//
// rootfs_test.cc covers the mount states a SIGKILL leaves in one instance
// (random points, PARTIAL completed or rolled back); restart_test.cc covers
// an --entrypoint workload outliving a restart. These tests add what runs
// around them: sessions, neighbours, concurrency, disk, peers.
//
// SC_FAULT_LOOPS sets the rounds of the SIGKILL loop (default 10; soak: 100).
#include <fcntl.h>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/stress.h"

namespace sc::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Mounts at or below a rootfs: path relative to it -> how many are stacked
// there. Some are stacked by design: /dev is a recursive bind of the node's
// (whose own pts and shm may be stacked), with the instance's own devpts and
// shm on top.
using MountShape = std::map<std::string, int>;

MountShape Shape(const std::string& rootfs) {
  MountShape shape;
  for (const auto& [target, count] : StackedMounts(rootfs)) {
    shape[target.substr(rootfs.size())] = count;
  }
  return shape;
}

std::string Describe(const MountShape& shape) {
  std::string out;
  for (const auto& [path, count] : shape) out += " " + path + "=" + std::to_string(count);
  return out;
}

size_t Total(const MountShape& shape) {
  size_t n = 0;
  for (const auto& [path, count] : shape) n += static_cast<size_t>(count);
  return n;
}

// What one clean prepare mounts for an instance.
MountShape ReadyShape(InstanceNode& node) {
  v1::Instance ref;
  REQUIRE_OK(node.Prepare("reference", &ref));
  MountShape shape = Shape(node.Rootfs("reference"));
  REQUIRE(shape.count("") == 1);
  REQUIRE_OK(node.Release("reference", true));
  REQUIRE(MountsUnder(node.InstanceDir("reference")).empty());
  return shape;
}

// No mount point of any instance carries more mounts than in a clean
// prepare: nothing was mounted twice.
void CheckNothingStacked(InstanceNode& node, const MountShape& ready) {
  for (const auto& [target, count] : StackedMounts(node.base)) {
    size_t at = target.find("/rootfs", node.base.size());
    if (at == std::string::npos) continue;  // the base itself (a tmpfs)
    std::string rel = target.substr(at + 7);
    auto it = ready.find(rel);
    INFO(target << " is mounted " << count << " times, in a clean prepare "
                << (it == ready.end() ? 0 : it->second));
    CHECK((it != ready.end() && count <= it->second));
  }
}

// The instance as the restarted daemon sees it: READY with exactly the mounts
// of a clean prepare, RELEASED with none, or PARTIAL with fewer. Returns the
// state name.
std::string CheckAdopted(InstanceNode& node, const std::string& name, const MountShape& ready) {
  v1::Instance got;
  grpc::Status s = node.Get(name, &got);
  INFO(name << ": " << s.error_code() << " " << s.error_message());
  // NOT_FOUND: the kill came before the instance directory existed.
  REQUIRE((s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND));
  MountShape shape = Shape(node.Rootfs(name));
  size_t mounts = MountsUnder(node.InstanceDir(name)).size();
  INFO(name << " has " << mounts << " mounts, a clean prepare " << Total(ready));
  if (!s.ok() || got.state() == v1::Instance::RELEASED) {
    CHECK(mounts == 0);
    return "RELEASED";
  }
  if (got.state() == v1::Instance::READY) {
    CHECK(shape == ready);
    CHECK(static_cast<size_t>(got.mounts_size()) == Total(ready));
  } else {
    CHECK(got.state() == v1::Instance::PARTIAL);
    CHECK(mounts < Total(ready));
  }
  return v1::Instance::State_Name(got.state());
}

// ListInstances agrees with GetInstance for every instance it lists.
void CheckListAgrees(InstanceNode& node) {
  v1::ListInstancesResponse list;
  REQUIRE_OK(node.List(&list));
  for (const v1::Instance& listed : list.instances()) {
    v1::Instance got;
    REQUIRE_OK(node.Get(listed.ref().name(), &got));
    INFO(listed.ref().name());
    CHECK(listed.state() == got.state());
    CHECK(listed.mounts_size() == got.mounts_size());
  }
}

// A session kept alive in a pod: a command that prints "ready" and then runs
// until stopped, marked so that its processes can be found.
struct LiveSession {
  std::string marker;
  std::unique_ptr<PipedProcess> client;
};

// Streamed (--stream): a daemon restart drops such a session, and its
// sc-exec must stop what it started. By-reference sessions live on through
// a restart (restart_test.cc).
LiveSession StartSession(InstanceNode& node, const SimulatedPod& pod, int kind) {
  LiveSession s;
  s.marker = "sc-fault-" + RandomHex(12);
  std::vector<std::string> sc;
  switch (kind % 5) {
    case 0:  // a plain long-running process
      sc = node.ScExec({"--stream", "sh", "-c", "echo ready; exec sleep 1000", s.marker});
      break;
    case 1:  // a background child in the session's process group
      sc = node.ScExec({"--stream", "sh", "-c", "sleep 1000 & echo ready; wait", s.marker});
      break;
    case 2:  // deaf to SIGHUP and SIGTERM: only SIGKILL ends it
      sc = node.ScExec({"--stream", "sh", "-c",
                        "trap '' HUP TERM; echo ready; while :; do sleep 1; done", s.marker});
      break;
    case 3:  // reads stdin, which stays open
      sc = node.ScExec({"--stream", "sh", "-c", "echo ready; exec cat", s.marker});
      break;
    default:  // on a terminal
      sc = node.ScExec({"--stream", "--tty", "sh", "-c", "echo ready; sleep 1000", s.marker});
      break;
  }
  std::vector<std::string> argv = pod.ExecPrefix();
  argv.insert(argv.end(), sc.begin(), sc.end());
  s.client = std::make_unique<PipedProcess>(argv);
  return s;
}

// Every process the daemon started for a dropped session is gone, and the
// pod holds again exactly what it held before the sessions.
void CheckNoOrphans(const std::vector<std::unique_ptr<SimulatedPod>>& pods,
                    const std::vector<std::set<pid_t>>& before,
                    const std::vector<LiveSession>& sessions) {
  for (size_t i = 0; i < pods.size(); ++i) {
    bool clean =
        PollUntil([&] { return PodProcesses(*pods[i]) == before[i]; }, milliseconds(20000));
    INFO("pod " << i << " before:\n"
                << DescribeProcesses(before[i]) << "now:\n"
                << DescribeProcesses(PodProcesses(*pods[i])));
    CHECK(clean);
  }
  for (const LiveSession& s : sessions) {
    INFO(s.marker);
    CHECK(ProcessesWith(s.marker).empty());
  }
}

}  // namespace

TEST_CASE("fault: SIGKILL with 20 live streamed sessions leaves no orphan in any pod", "[fault]") {
  SC_REQUIRE_ROOT();
  InstanceNode node;
  REQUIRE_OK(node.Prepare("web"));
  const auto mounts_before = StackedMounts(node.base);
  std::vector<std::unique_ptr<SimulatedPod>> pods;
  std::vector<std::set<pid_t>> baseline;
  for (int i = 0; i < 4; ++i) {
    pods.push_back(node.ConsumerPod("web"));
    baseline.push_back(PodProcesses(*pods.back()));
  }
  // One more pod whose entrypoint must outlive the restart (restart_test.cc):
  // the contrast that shows the other workloads are stopped on purpose.
  std::unique_ptr<SimulatedPod> entry_pod = node.ConsumerPod("web");
  std::vector<std::string> entry_argv = entry_pod->ExecPrefix();
  for (const std::string& a :
       node.ScExec({"--entrypoint", "sh", "-c", "echo ready; exec sleep 1000"})) {
    entry_argv.push_back(a);
  }
  PipedProcess entrypoint(entry_argv);

  std::vector<LiveSession> sessions;
  for (int i = 0; i < 20; ++i) sessions.push_back(StartSession(node, *pods[i % 4], i));
  for (LiveSession& s : sessions) {
    INFO(s.marker << " stderr: " << s.client->err());
    REQUIRE(s.client->WaitForOutput("ready", milliseconds(30000)));
    REQUIRE_FALSE(ProcessesWith(s.marker).empty());
  }
  REQUIRE(entrypoint.WaitForOutput("ready", milliseconds(30000)));

  node.Kill();
  // Every client notices, stops its workload, and says so.
  for (LiveSession& s : sessions) {
    int code = s.client->Wait(milliseconds(30000));
    INFO(s.marker << " exit " << code << " stderr: " << s.client->err());
    CHECK(code == 124);
    CHECK(s.client->err().find("lost the mount-helper") != std::string::npos);
  }
  CheckNoOrphans(pods, baseline, sessions);
  CHECK(kill(entrypoint.pid(), 0) == 0);

  node.Start();
  CHECK(StackedMounts(node.base) == mounts_before);
  v1::Instance web;
  REQUIRE_OK(node.Get("web", &web));
  CHECK(web.state() == v1::Instance::READY);
  CheckListAgrees(node);
  v1::Instance again;
  REQUIRE_OK(node.Prepare("web", &again));
  CHECK_FALSE(again.created());
  CHECK(StackedMounts(node.base) == mounts_before);
  // New sessions work in every pod; the entrypoint's workload lives on.
  for (auto& pod : pods) {
    ProcessResult r = pod->Exec(node.ScExec({"sh", "-c", "echo $0", "after"}));
    INFO(r.Describe());
    CHECK(r.exit_code == 0);
    CHECK(r.out == "after\n");
  }
  CHECK(kill(entrypoint.pid(), 0) == 0);
  CHECK(PollUntil([&] { return node.daemon().ChildCount() == 0; }, milliseconds(10000)));
  std::cout << "SOAK fault=live_sessions kills=1 sessions=20\n";
}

TEST_CASE("fault: SIGKILL in the middle of a prepare, next to an instance in use", "[fault]") {
  SC_REQUIRE_ROOT();
  InstanceNode node;
  const MountShape ready = ReadyShape(node);
  REQUIRE_OK(node.Prepare("busy"));
  const auto busy_mounts = StackedMounts(node.Rootfs("busy"));
  std::vector<std::unique_ptr<SimulatedPod>> pods;
  pods.push_back(node.ConsumerPod("busy"));
  std::vector<std::set<pid_t>> baseline = {PodProcesses(*pods[0])};
  int kills = 0;
  for (int round = 0; round < 3; ++round) {
    DYNAMIC_SECTION("round " << round) {
      // The neighbour streams through the daemon while it dies.
      std::vector<LiveSession> sessions;
      sessions.push_back(StartSession(node, *pods[0], 3));
      REQUIRE(sessions[0].client->WaitForOutput("ready", milliseconds(30000)));

      const std::string victim = "victim" + std::to_string(round);
      std::thread caller([&] { node.Prepare(victim); });
      // Killed as the prepare's overlay, then its proc, then its dev shows
      // up (a mount changes the directory's device): the rest of a prepare
      // takes well under a millisecond, so these land in its middle or
      // just after it.
      const std::string dir = node.InstanceDir(victim);
      const std::string rootfs = node.Rootfs(victim);
      const std::string trigger = round == 0 ? rootfs : rootfs + (round == 1 ? "/proc" : "/dev");
      const std::string parent = round == 0 ? dir : rootfs;
      auto mounted = [&] {
        struct stat a {
        }, b{};
        return stat(parent.c_str(), &a) == 0 && stat(trigger.c_str(), &b) == 0 &&
               a.st_dev != b.st_dev;
      };
      auto deadline = Clock::now() + std::chrono::seconds(20);
      while (Clock::now() < deadline && !mounted()) {
      }
      node.Kill();
      ++kills;
      caller.join();
      INFO("client stderr: " << sessions[0].client->err());
      CHECK(sessions[0].client->Wait(milliseconds(30000)) == 124);
      CheckNoOrphans(pods, baseline, sessions);

      node.Start();
      CheckNothingStacked(node, ready);
      std::string state = CheckAdopted(node, victim, ready);
      WARN("round " << round << ": SIGKILL left " << victim << " " << state);
      CHECK(StackedMounts(node.Rootfs("busy")) == busy_mounts);
      CheckListAgrees(node);
      // The half-done instance converges: prepared completely, usable by a
      // consumer, released completely.
      v1::Instance done;
      REQUIRE_OK(node.Prepare(victim, &done));
      CHECK(done.state() == v1::Instance::READY);
      CHECK(Shape(rootfs) == ready);
      CheckNothingStacked(node, ready);
      std::unique_ptr<SimulatedPod> consumer = node.ConsumerPod(victim);
      ProcessResult r = consumer->Exec(node.ScExec({"cat", "/etc/passwd"}));
      INFO(r.Describe());
      CHECK(r.exit_code == 0);
      CHECK(r.out.find("root:x:0:0") != std::string::npos);
      ProcessResult n = pods[0]->Exec(node.ScExec({"echo", "neighbour"}));
      CHECK(n.out == "neighbour\n");
      consumer.reset();
      REQUIRE_OK(node.Release(victim, true));
      CHECK(MountsUnder(dir).empty());
    }
  }
  std::cout << "SOAK fault=mid_prepare kills=" << kills << "\n";
}

TEST_CASE("fault: SIGKILL loop with prepares and releases in flight", "[fault]") {
  SC_REQUIRE_ROOT();
  const int loops = static_cast<int>(EnvNumber("SC_FAULT_LOOPS", 10));
  InstanceNode node;
  const MountShape ready = ReadyShape(node);
  REQUIRE_OK(node.Prepare("stable"));
  const auto stable_mounts = StackedMounts(node.Rootfs("stable"));
  std::vector<std::unique_ptr<SimulatedPod>> pods;
  pods.push_back(node.ConsumerPod("stable"));
  std::vector<std::set<pid_t>> baseline = {PodProcesses(*pods[0])};
  const std::vector<std::string> churn = {"churn0", "churn1", "churn2", "churn3"};
  const uint32_t seed = static_cast<uint32_t>(EnvNumber("SC_FAULT_SEED", 20240611));
  std::mt19937 rng(seed);
  std::map<std::string, int> seen;  // states found after the kills
  int kills = 0;

  for (int loop = 0; loop < loops; ++loop) {
    INFO("loop " << loop << " (SC_FAULT_SEED=" << seed << ")");
    std::vector<LiveSession> sessions;
    sessions.push_back(StartSession(node, *pods[0], loop));
    REQUIRE(sessions[0].client->WaitForOutput("ready", milliseconds(30000)));
    // Each thread prepares and releases its instance until the daemon dies.
    std::atomic<bool> stop{false};
    std::atomic<int> calls{0};
    std::vector<std::thread> workers;
    for (const std::string& name : churn) {
      workers.emplace_back([&, name] {
        for (int i = 0; !stop; ++i) {
          grpc::Status s = i % 2 == 0 ? node.Prepare(name) : node.Release(name);
          if (s.error_code() == grpc::StatusCode::UNAVAILABLE) break;
          ++calls;
        }
      });
    }
    // Killed at a random point once calls are flowing.
    PollUntil([&] { return calls.load() >= 2; }, milliseconds(20000));
    auto until = Clock::now() + std::chrono::microseconds(rng() % 40000);
    while (Clock::now() < until) {
    }
    node.Kill();
    ++kills;
    stop = true;
    for (std::thread& t : workers) t.join();
    CHECK(sessions[0].client->Wait(milliseconds(30000)) == 124);
    CheckNoOrphans(pods, baseline, sessions);

    node.Start();
    CheckNothingStacked(node, ready);
    CHECK(StackedMounts(node.Rootfs("stable")) == stable_mounts);
    for (const std::string& name : churn) seen[CheckAdopted(node, name, ready)]++;
    CheckListAgrees(node);
    ProcessResult r = pods[0]->Exec(node.ScExec({"echo", "alive"}));
    INFO(r.Describe());
    CHECK(r.out == "alive\n");
    // Whatever the kill left converges: some prepared, some released.
    for (const std::string& name : churn) {
      if (rng() % 2 == 0) {
        v1::Instance done;
        REQUIRE_OK(node.Prepare(name, &done));
        CHECK(done.state() == v1::Instance::READY);
        INFO("now:" << Describe(Shape(node.Rootfs(name))) << "\nclean:" << Describe(ready));
        CHECK(Shape(node.Rootfs(name)) == ready);
      } else {
        REQUIRE_OK(node.Release(name));
        CHECK(MountsUnder(node.InstanceDir(name)).empty());
      }
    }
    CheckNothingStacked(node, ready);
  }
  for (const std::string& name : churn) REQUIRE_OK(node.Release(name, true));
  REQUIRE_OK(node.Release("stable"));
  CHECK(MountsUnder(node.base).empty());
  CHECK(PollUntil([&] { return node.daemon().ChildCount() == 0; }, milliseconds(10000)));
  std::string states;
  for (const auto& [state, n] : seen) states += " " + state + "=" + std::to_string(n);
  WARN(kills << " SIGKILLs; instance states found after them:" << states);
  std::cout << "SOAK fault=kill_loop kills=" << kills << " states=" << states.substr(1) << "\n";
}

TEST_CASE("fault: a full upper layer gives the process ENOSPC, the daemon stays healthy",
          "[fault]") {
  SC_REQUIRE_ROOT();
  // Upper layers on a 16 MiB tmpfs.
  InstanceNode node({}, "16m");
  const MountShape ready = ReadyShape(node);
  REQUIRE_OK(node.Prepare("full"));
  std::unique_ptr<SimulatedPod> pod = node.ConsumerPod("full");
  REQUIRE(pod->Exec(node.ScExec({"true"})).exit_code == 0);
  const int fds = node.daemon().OpenFdCount();

  // busybox dd reports the failing write's errno.
  ProcessResult fill = pod->Exec(
      node.ScExec({"sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=65536 count=1024; echo rc=$?"}),
      RunOptions{"", true, {}, milliseconds(60000)});
  INFO(fill.Describe() << " out=" << fill.out);
  CHECK(fill.exit_code == 0);
  CHECK(fill.err.find("No space left on device") != std::string::npos);
  CHECK(fill.out.find("rc=1") != std::string::npos);
  // A copy-up of a lower file fails the same way; the process sees it.
  ProcessResult copy_up =
      pod->Exec(node.ScExec({"sh", "-c", "cat /bin/busybox >> /bin/busybox2 || echo failed"}));
  INFO(copy_up.Describe() << " out=" << copy_up.out);
  CHECK(copy_up.out.find("failed") != std::string::npos);

  // The daemon: serving, sessions work (output needs no disk), the instance
  // is READY, nothing leaked.
  ProcessResult health = Run(node.ScExec({"--health"}));
  CHECK(health.out == "SERVING\n");
  ProcessResult echo = pod->Exec(node.ScExec({"echo", "still-here"}));
  CHECK(echo.out == "still-here\n");
  v1::Instance got;
  REQUIRE_OK(node.Get("full", &got));
  CHECK(got.state() == v1::Instance::READY);
  // A second instance on the full disk: prepared completely, or refused
  // with nothing mounted.
  v1::Instance second;
  grpc::Status s = node.Prepare("second", &second);
  INFO("prepare on a full disk: " << s.error_code() << " " << s.error_message());
  if (s.ok()) {
    CHECK(second.state() == v1::Instance::READY);
    REQUIRE_OK(node.Release("second", true));
  } else {
    CHECK(MountsUnder(node.InstanceDir("second")).empty());
  }
  CheckNothingStacked(node, ready);

  // Space freed, writes work again.
  ProcessResult freed = pod->Exec(node.ScExec(
      {"sh", "-c",
       "rm -f /tmp/fill /bin/busybox2 && echo written > /tmp/after && cat /tmp/after"}));
  INFO(freed.Describe());
  CHECK(freed.out == "written\n");
  CHECK(PollUntil([&] { return node.daemon().ChildCount() == 0; }, milliseconds(10000)));
  CHECK(PollUntil([&] { return node.daemon().OpenFdCount() <= fds; }, milliseconds(10000)));
  pod.reset();
  REQUIRE_OK(node.Release("full", true));
  std::cout << "SOAK fault=disk_full ok=1\n";
}

// ----------------------------------------------------------- peer exits

namespace {

// A caller that connects to the daemon and hands its connection to the test,
// then exits when told to. In a pod (its cgroup, mount, net, uts and ipc
// namespaces) or, without one, as an operator.
class Handoff {
 public:
  Handoff(const std::string& socket_path, const SimulatedPod* pod) {
    std::vector<UniqueFd> procs, namespaces;
    if (pod != nullptr) {
      for (const std::string& d : pod->cgroup_dirs()) {
        if (d.find(pod->container_id()) == std::string::npos) continue;
        procs.emplace_back(open((d + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
        REQUIRE(procs.back());
      }
      for (const char* ns : {"ipc", "uts", "net", "mnt"}) {
        std::string path = "/proc/" + std::to_string(pod->init_pid()) + "/ns/" + ns;
        namespaces.emplace_back(open(path.c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(namespaces.back());
      }
    }
    int pair[2], go[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    REQUIRE(pipe2(go, O_CLOEXEC) == 0);
    UniqueFd mine(pair[0]), theirs(pair[1]), go_r(go[0]);
    go_.reset(go[1]);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(socket_path.size() < sizeof(addr.sun_path));
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      // Only system calls from here on. The write end of `go` is the test's
      // alone: its closing is the signal to exit.
      close(go[1]);
      for (const UniqueFd& p : procs) {
        if (write(p.get(), "0", 1) != 1) _exit(10);
      }
      for (const UniqueFd& ns : namespaces) {
        if (setns(ns.get(), 0) != 0) _exit(11);
      }
      int conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (conn < 0 || connect(conn, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        _exit(12);
      }
      if (!SendFd(theirs.get(), conn)) _exit(13);
      char wait;
      while (read(go_r.get(), &wait, 1) < 0 && errno == EINTR) {
      }
      _exit(0);
    }
    theirs.reset();
    go_r.reset();
    int fd = ReceiveFd(mine.get());
    if (fd < 0) {
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = -1;
      FAIL("the caller did not hand over its connection (exit " << WEXITSTATUS(status) << ")");
    }
    conn_ = fd;
  }
  ~Handoff() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (conn_ >= 0) close(conn_);
  }
  pid_t pid() const { return pid_; }
  // The connection as a channel of the test's (gRPC takes the fd).
  std::shared_ptr<grpc::Channel> Channel() {
    int fd = conn_;
    conn_ = -1;
    return grpc::CreateInsecureChannelFromFd("sc-test-handoff", fd);
  }
  // The caller exits; reaped, so that its pid is free.
  pid_t ExitAndReap() {
    go_.reset();
    int status = 0;
    REQUIRE(waitpid(pid_, &status, 0) == pid_);
    pid_t was = pid_;
    pid_ = -1;
    return was;
  }

 private:
  pid_t pid_ = -1;
  int conn_ = -1;
  UniqueFd go_;
};

std::unique_ptr<grpc::ClientContext> Deadline() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return ctx;
}

// The calls a dead caller's connection must not get through: each would be
// allowed for the caller while it lived (it is in the pod that mounted both
// instances) and for an operator. Returns the statuses.
struct DeadCallerCalls {
  grpc::Status whoami, prepare, release, exec;
  v1::PeerIdentity identity;
};

DeadCallerCalls CallAsDeadCaller(v1::MountHelper::Stub* stub, const std::string& layer,
                                 const std::string& exec_marker) {
  DeadCallerCalls out;
  out.whoami = stub->WhoAmI(Deadline().get(), v1::WhoAmIRequest(), &out.identity);
  v1::PrepareRootfsRequest prepare;
  prepare.mutable_instance()->set_namespace_("ns");
  prepare.mutable_instance()->set_name("victim");
  prepare.mutable_layers()->add_paths(layer);
  v1::Instance instance;
  out.prepare = stub->PrepareRootfs(Deadline().get(), prepare, &instance);
  v1::ReleaseRootfsRequest release;
  release.mutable_instance()->set_namespace_("ns");
  release.mutable_instance()->set_name("web");
  v1::ReleaseRootfsResponse released;
  out.release = stub->ReleaseRootfs(Deadline().get(), release, &released);
  auto ctx = Deadline();
  auto stream = stub->Exec(ctx.get());
  v1::ExecRequest start;
  start.mutable_start()->add_argv("sh");
  start.mutable_start()->add_argv("-c");
  start.mutable_start()->add_argv("echo ran > /tmp/" + exec_marker);
  stream->Write(start);
  stream->WritesDone();
  v1::ExecResponse response;
  bool started = false;
  while (stream->Read(&response)) started = started || response.has_started();
  out.exec = stream->Finish();
  if (out.exec.ok() && !started) out.exec = grpc::Status(grpc::StatusCode::UNKNOWN, "no start");
  return out;
}

// Every thread of the process is stopped (SIGSTOP has taken effect).
bool Stopped(pid_t pid) {
  std::error_code ec;
  std::string task = "/proc/" + std::to_string(pid) + "/task";
  int threads = 0;
  for (auto it = fs::directory_iterator(task, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string stat = ReadFile(it->path().string() + "/stat");
    size_t close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'T') {
      return false;
    }
    ++threads;
  }
  return threads > 0;
}

// Audit lines of `method` for peer `pid`.
std::vector<std::string> AuditLines(const std::string& audit, const std::string& method,
                                    pid_t pid) {
  std::vector<std::string> out;
  std::istringstream in(audit);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"method\":\"" + method + "\"") != std::string::npos &&
        line.find("\"peer_pid\":" + std::to_string(pid) + ",") != std::string::npos) {
      out.push_back(line);
    }
  }
  return out;
}

// Why a dead caller is refused: it "has exited" (its socket's pidfd, Linux
// 6.5+, or a pidfd taken while it lived), or, on kernels without
// SO_PEERPIDFD when it was gone before the daemon looked, whoever has its pid
// now "does not hold the connecting socket".
bool NamesDeadCaller(const std::string& text) {
  return text.find("exited") != std::string::npos ||
         text.find("does not hold the connecting socket") != std::string::npos;
}

void CheckRefused(const grpc::Status& s, const char* what) {
  INFO(what << ": " << s.error_code() << " " << s.error_message());
  CHECK_FALSE(s.ok());
  CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(NamesDeadCaller(s.error_message()));
}

}  // namespace

TEST_CASE("fault: a caller that exits with its call in flight is refused, its pid reused or not",
          "[fault][peer]") {
  SC_REQUIRE_ROOT();
  InstanceNode node;
  REQUIRE_OK(node.Prepare("web"));
  fs::create_directories(node.InstanceDir("victim"));
  // The pod has mounted web's rootfs (at /rootfs) and victim's directory: a
  // live process of it may prepare victim, release web and exec.
  PodOptions options;
  options.rootfs_host_path = node.Rootfs("web");
  options.binds = {node.dir.path(), node.InstanceDir("victim")};
  SimulatedPod pod(options);
  REQUIRE(pod.started());
  const auto mounts_before = StackedMounts(node.base);

  struct Case {
    const char* name;
    bool in_pod;
    bool accept_after_exit;  // the daemon accepts only after the caller is gone
    bool reuse_pid;
  };
  const Case cases[] = {
      {"pod caller exits after accept", true, false, false},
      {"pod caller exits after accept, its pid taken by an operator-like process", true, false,
       true},
      {"pod caller exits before accept, its pid taken by an operator-like process", true, true,
       true},
      {"operator caller exits after accept", false, false, false},
      {"operator caller exits before accept, its pid reused", false, true, true},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.name) {
      const std::string marker = "sc-exec-ran-" + RandomHex(8);
      // SIGSTOP holds the daemon's accept; SIGCONT whatever happens.
      struct Resume {
        pid_t pid = -1;
        ~Resume() {
          if (pid > 0) kill(pid, SIGCONT);
        }
      } resume;
      if (c.accept_after_exit) {
        REQUIRE(kill(node.daemon().pid(), SIGSTOP) == 0);
        resume.pid = node.daemon().pid();
        REQUIRE(PollUntil([&] { return Stopped(resume.pid); }, milliseconds(10000)));
      }
      Handoff caller(node.socket(), c.in_pod ? &pod : nullptr);
      const pid_t caller_pid = caller.pid();
      auto stub = v1::MountHelper::NewStub(caller.Channel());
      if (!c.accept_after_exit) {
        // The daemon has identified the caller while it lived.
        v1::PeerIdentity id;
        REQUIRE_OK(stub->WhoAmI(Deadline().get(), v1::WhoAmIRequest(), &id));
        CHECK(id.pid() == caller_pid);
        CHECK(id.kind() == (c.in_pod ? v1::PeerIdentity::POD : v1::PeerIdentity::OPERATOR));
        if (c.in_pod) CHECK(id.pod_uid() == pod.uid());
      }
      caller.ExitAndReap();
      std::unique_ptr<ProcessWithPid> reuser;
      if (c.reuse_pid) {
        reuser = std::make_unique<ProcessWithPid>(caller_pid);
        REQUIRE(reuser->pid() == caller_pid);
      }
      if (resume.pid > 0) {
        kill(resume.pid, SIGCONT);
        resume.pid = -1;
      }

      DeadCallerCalls calls = CallAsDeadCaller(stub.get(), node.busybox, marker);
      // WhoAmI answers whoever asks what the daemon sees: with SO_PEERPIDFD
      // (Linux 6.5) the daemon knows the caller exited and refuses; without
      // it, a caller gone before the daemon looked is UNKNOWN (whoever has
      // its pid now does not hold the socket). Never the operator or the pod.
      if (node.daemon().Log().find("peer identity SO_PEERPIDFD") != std::string::npos ||
          !calls.whoami.ok()) {
        CheckRefused(calls.whoami, "WhoAmI");
      } else {
        CHECK(calls.identity.kind() == v1::PeerIdentity::UNKNOWN);
      }
      CheckRefused(calls.prepare, "PrepareRootfs");
      CheckRefused(calls.release, "ReleaseRootfs");
      CheckRefused(calls.exec, "Exec");
      // Nothing was mounted, unmounted or run.
      CHECK(StackedMounts(node.base) == mounts_before);
      CHECK_FALSE(fs::exists(node.Rootfs("web") + "/tmp/" + marker));
      CHECK(PollUntil([&] { return node.daemon().ChildCount() == 0; }, milliseconds(5000)));
      // The audit log names the caller and the refusal of each call.
      std::string audit = node.daemon().AuditLog();
      for (const char* method : {"PrepareRootfs", "ReleaseRootfs", "Exec"}) {
        std::vector<std::string> lines = AuditLines(audit, method, caller_pid);
        INFO(method << " audit lines for pid " << caller_pid << ":\n" << audit.substr(0, 4000));
        REQUIRE(lines.size() == 1);
        CHECK(lines[0].find("\"decision\":\"deny\"") != std::string::npos);
        CHECK(NamesDeadCaller(lines[0]));
      }
    }
  }

  // Control: a live process of the same pod gets what the dead one did not.
  const std::string marker = "sc-exec-ran-" + RandomHex(8);
  ProcessResult prepared = pod.Exec(
      {TestClientBinary(), node.socket(), "PrepareRootfs",
       "instance{namespace:\"ns\" name:\"victim\"} layers{paths:\"" + node.busybox + "\"}"});
  INFO(prepared.Describe());
  CHECK(prepared.exit_code == 0);
  ProcessResult ran = pod.Exec(node.ScExec({"sh", "-c", "echo ran > /tmp/" + marker}));
  INFO(ran.Describe());
  CHECK(ran.exit_code == 0);
  CHECK(fs::exists(node.Rootfs("web") + "/tmp/" + marker));
  REQUIRE_OK(node.Release("victim", true));
  std::cout << "SOAK fault=dead_caller cases=5\n";
}

}  // namespace sc::test
