// Peer identity without SO_PEERPIDFD (Linux < 6.5), forced here with
// --peer_pidfd=pidfd_open: the daemon pins the caller with pidfd_open() of
// the pid SO_PEERCRED names, which may have been reused since connect(). It
// must prove that the process it pinned holds the connection's other end.
#include <fcntl.h>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "mounthelper.grpc.pb.h"
#include "tests/integration/harness.h"

namespace sc::test {
namespace {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

const std::vector<std::string> kFallback = {"--peer_pidfd=pidfd_open"};

std::unique_ptr<grpc::ClientContext> Deadline() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return ctx;
}

// Parses sc-exec --whoami's "key=value ..." line.
std::string Field(const std::string& line, const std::string& key) {
  size_t at = line.find(key + "=");
  if (at == std::string::npos) return "<missing>";
  size_t start = at + key.size() + 1;
  size_t end = line.find_first_of(" \n", start);
  return line.substr(start, end - start);
}

// A child that connects to the daemon (in `pod`'s cgroup and namespaces, or
// in the test's own as an operator), hands the connected socket to the test
// and exits at once; reaped here, so its pid is free. Nothing has been sent
// on the connection: the daemon identifies it when its first bytes arrive.
struct HandedConnection {
  UniqueFd conn;
  pid_t caller_pid = -1;
};

HandedConnection ConnectInChildAndExit(const std::string& socket_path, const SimulatedPod* pod) {
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
  int pair[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  UniqueFd mine(pair[0]), theirs(pair[1]);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(socket_path.size() < sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Only system calls from here on (the test is threaded).
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
    _exit(0);
  }
  theirs.reset();
  HandedConnection out;
  out.conn.reset(ReceiveFd(mine.get()));
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  INFO("the connecting child: status " << status);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(out.conn);
  out.caller_pid = pid;
  return out;
}

}  // namespace

TEST_CASE("peer identity without SO_PEERPIDFD: operators and pods are still identified",
          "[peer][redteam]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  DaemonProcess daemon(dir / "mh.sock", kFallback);
  REQUIRE(daemon.started());
  // The start-up log names the path peer identity takes.
  CHECK(daemon.Log().find("peer identity pidfd_open + sock_diag proof") != std::string::npos);

  SECTION("an operator") {
    auto stub = v1::MountHelper::NewStub(
        grpc::CreateChannel("unix:" + daemon.socket_path(), grpc::InsecureChannelCredentials()));
    v1::PeerIdentity me;
    REQUIRE_OK(stub->WhoAmI(Deadline().get(), {}, &me));
    CHECK(me.kind() == v1::PeerIdentity::OPERATOR);
    CHECK(me.pid() == getpid());
    CHECK(me.uid() == 0);
    CHECK_FALSE(me.pinned_by_socket());  // pinned by pidfd_open, as before 6.5
    v1::ListInstancesResponse list;
    REQUIRE_OK(stub->ListInstances(Deadline().get(), {}, &list));
  }
  SECTION("a pod (its own network namespace: the daemon asks sock_diag in that one)") {
    PodOptions options;
    options.binds = {dir.path()};
    SimulatedPod pod(options);
    REQUIRE(pod.started());
    ProcessResult r = pod.Exec({ScExecBinary(), "--socket", daemon.socket_path(), "--whoami"});
    INFO(r.Describe() << "\n" << daemon.Log());
    REQUIRE(r.exit_code == 0);
    CHECK(Field(r.out, "kind") == "POD");
    CHECK(Field(r.out, "pod_uid") == pod.uid());
    CHECK(Field(r.out, "container_id") == pod.container_id());
  }
  SECTION("a caller that handed its connection to a child of its own and exited") {
    // The child holds the connection, but it is not the process that
    // connected: with SO_PEERPIDFD it would be refused as exited, and so it
    // is here (the connecting pid is gone, not reused).
    HandedConnection handed = ConnectInChildAndExit(daemon.socket_path(), nullptr);
    auto stub = v1::MountHelper::NewStub(
        grpc::CreateInsecureChannelFromFd("sc-test-peer-exited", handed.conn.release()));
    v1::PeerIdentity id;
    grpc::Status s = stub->WhoAmI(Deadline().get(), {}, &id);
    INFO(s.error_code() << ": " << s.error_message());
    if (s.ok()) {
      CHECK(id.kind() == v1::PeerIdentity::UNKNOWN);
    } else {
      CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    }
  }
}

TEST_CASE("peer identity without SO_PEERPIDFD: a caller's reused pid is not taken for the caller",
          "[peer][redteam]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  DaemonProcess daemon(dir / "mh.sock", kFallback);
  REQUIRE(daemon.started());
  PodOptions options;
  options.binds = {dir.path()};
  SimulatedPod pod(options);
  REQUIRE(pod.started());

  for (bool in_pod : {false, true}) {
    DYNAMIC_SECTION((in_pod ? "a pod's root process" : "a root process in the node's namespaces")
                    << " connects, hands the connection on and exits; an operator-like "
                       "process gets its pid") {
      HandedConnection handed =
          ConnectInChildAndExit(daemon.socket_path(), in_pod ? &pod : nullptr);
      // The caller's pid, free since it was reaped, now names a root process
      // in the daemon's namespaces that does not hold the connection: an
      // operator, if the daemon took it for the caller.
      ProcessWithPid reuser(handed.caller_pid);
      REQUIRE(reuser.pid() == handed.caller_pid);

      // The first bytes: the daemon identifies the connection now.
      auto stub = v1::MountHelper::NewStub(
          grpc::CreateInsecureChannelFromFd("sc-test-peer-reuse", handed.conn.release()));
      v1::PeerIdentity id;
      grpc::Status whoami = stub->WhoAmI(Deadline().get(), {}, &id);
      INFO("WhoAmI: " << whoami.error_code() << ": " << whoami.error_message() << "; kind "
                      << id.kind() << " pid " << id.pid() << "\n"
                      << daemon.Log());
      REQUIRE(whoami.ok());
      CHECK(id.kind() == v1::PeerIdentity::UNKNOWN);
      CHECK(id.pid() == handed.caller_pid);

      v1::ListInstancesResponse list;
      grpc::Status listed = stub->ListInstances(Deadline().get(), {}, &list);
      INFO("ListInstances: " << listed.error_code() << ": " << listed.error_message());
      CHECK(listed.error_code() == grpc::StatusCode::PERMISSION_DENIED);
      const std::string reason = "the process with pid " + std::to_string(handed.caller_pid) +
                                 " does not hold the connecting socket (its pid was reused?)";
      CHECK(listed.error_message().find(reason) != std::string::npos);
      // The audit log says why, and never names the caller an operator.
      std::string audit = daemon.AuditLog();
      CHECK(audit.find(reason) != std::string::npos);
      std::istringstream lines(audit);
      std::string line;
      while (std::getline(lines, line)) {
        if (line.find("\"peer_pid\":" + std::to_string(handed.caller_pid) + ",") ==
            std::string::npos) {
          continue;
        }
        INFO(line);
        CHECK(line.find("\"peer_kind\":\"unknown\"") != std::string::npos);
      }
    }
  }
}

TEST_CASE("peer identity without SO_PEERPIDFD: callers with 10000 and 17000 fds", "[peer]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  std::vector<std::string> args = kFallback;
  args.push_back("--log_level=debug");  // the daemon logs each proof's cost
  DaemonProcess daemon(dir / "mh.sock", args);
  REQUIRE(daemon.started());
  // The test itself is the caller (an operator). Its connection is its
  // highest fd, so the daemon's scan of /proc/<pid>/fd, in fd order, finds
  // it last. Returns the median time of a fresh connection's first WhoAmI.
  auto first_calls = [&](v1::PeerIdentity::Kind expected, std::string* refusal) {
    std::vector<double> us;
    for (int i = 0; i < 7; ++i) {
      auto stub = v1::MountHelper::NewStub(
          grpc::CreateChannel("unix:" + daemon.socket_path(), grpc::InsecureChannelCredentials()));
      auto start = std::chrono::steady_clock::now();
      v1::PeerIdentity me;
      grpc::Status s = stub->WhoAmI(Deadline().get(), {}, &me);
      us.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
              .count());
      INFO(s.error_code() << ": " << s.error_message());
      REQUIRE(s.ok());
      REQUIRE(me.kind() == expected);
      if (refusal != nullptr && i == 0) {
        v1::ListInstancesResponse list;
        grpc::Status listed = stub->ListInstances(Deadline().get(), {}, &list);
        CHECK(listed.error_code() == grpc::StatusCode::PERMISSION_DENIED);
        *refusal = listed.error_message();
      }
    }
    std::sort(us.begin(), us.end());
    return us[us.size() / 2];
  };
  // The daemon's own figure: the median of its proofs that looked at >= `fds`.
  auto daemon_proof_us = [&](int fds) {
    std::vector<long> us;
    std::istringstream log(daemon.Log());
    std::string line;
    while (std::getline(log, line)) {
      size_t at = line.find("holds the connecting socket (its fd ");
      if (at == std::string::npos) continue;
      at = line.find("): ", at);
      long looked = 0, took = 0;
      if (at != std::string::npos &&
          std::sscanf(line.c_str() + at, "): %ld fds looked at in %ld us", &looked, &took) == 2 &&
          looked >= fds) {
        us.push_back(took);
      }
    }
    std::sort(us.begin(), us.end());
    return us.empty() ? -1L : us[us.size() / 2];
  };
  auto with_fds = [&](int count, const std::function<void()>& body) {
    rlimit lim{};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &lim) == 0);
    const rlimit saved = lim;
    const rlim_t want = static_cast<rlim_t>(count) + 1024;
    if (lim.rlim_cur < want) {
      // Raising the hard limit needs CAP_SYS_RESOURCE; without, up to it.
      rlimit raised{want, std::max(want, lim.rlim_max)};
      if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
        raised = {lim.rlim_max, lim.rlim_max};
        REQUIRE(setrlimit(RLIMIT_NOFILE, &raised) == 0);
      }
      INFO("RLIMIT_NOFILE " << raised.rlim_cur);
      REQUIRE(raised.rlim_cur >= static_cast<rlim_t>(count) + 256);
    }
    {
      std::vector<UniqueFd> fds;
      UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
      REQUIRE(null);
      for (int i = 0; i < count; ++i) {
        fds.emplace_back(fcntl(null.get(), F_DUPFD_CLOEXEC, 0));
        REQUIRE(fds.back());
      }
      body();
    }
    setrlimit(RLIMIT_NOFILE, &saved);
  };

  const double few = first_calls(v1::PeerIdentity::OPERATOR, nullptr);
  double many = 0;
  with_fds(10000, [&] { many = first_calls(v1::PeerIdentity::OPERATOR, nullptr); });
  const long proof_us = daemon_proof_us(10000);
  std::cout << "PEER-SCAN first WhoAmI of a new connection, median of 7: " << few
            << " us with a few fds, " << many << " us with 10000 more; the daemon's proof with "
            << "10000 fds: " << proof_us << " us\n";
  CHECK(proof_us >= 0);
  // Not a benchmark gate, a bound: the accept thread must not stall for long.
  CHECK(many < 1e6);

  // The daemon looks at no more than 16384 fds: a caller whose connection
  // comes later is refused, with a reason that says what to do.
  std::string refusal;
  with_fds(17000, [&] { first_calls(v1::PeerIdentity::UNKNOWN, &refusal); });
  INFO(refusal);
  CHECK(refusal.find("holds more than 16384 fds") != std::string::npos);
}

}  // namespace sc::test
