// Peer identity of real connecting processes: the daemon's view, as WhoAmI
// reports it, against what the test knows about the process.
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>

#include "common/unique_fd.h"
#include "mounthelper.grpc.pb.h"
#include "tests/integration/harness.h"

namespace sc::test {
namespace {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

// Whether the daemon under test pins its callers by SO_PEERPIDFD: the kernel
// has it and SC_TEST_DAEMON_ARGS does not force the older path.
bool DaemonUsesPeerPidfd() {
  const char* forced = std::getenv("SC_TEST_DAEMON_ARGS");
  if (forced != nullptr && std::strstr(forced, "--peer_pidfd=pidfd_open") != nullptr) return false;
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return false;
  UniqueFd a(fds[0]), b(fds[1]);
  int pidfd = -1;
  socklen_t len = sizeof(pidfd);
  bool ok = getsockopt(a.get(), SOL_SOCKET, 77 /* SO_PEERPIDFD */, &pidfd, &len) == 0;
  UniqueFd owned(pidfd);
  return ok;
}

// Parses sc-exec --whoami's "key=value ..." line.
std::string Field(const std::string& line, const std::string& key) {
  size_t at = line.find(key + "=");
  if (at == std::string::npos) return "<missing>";
  size_t start = at + key.size() + 1;
  size_t end = line.find_first_of(" \n", start);
  return line.substr(start, end - start);
}

}  // namespace

TEST_CASE("a root process in the daemon's namespaces is an operator", "[peer]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  DaemonProcess daemon(dir / "mh.sock");
  REQUIRE(daemon.started());
  auto stub = v1::MountHelper::NewStub(
      grpc::CreateChannel("unix:" + daemon.socket_path(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::PeerIdentity me;
  REQUIRE(stub->WhoAmI(&context, {}, &me).ok());
  CHECK(me.kind() == v1::PeerIdentity::OPERATOR);
  CHECK(me.pid() == getpid());  // from the socket, not from anything we sent
  CHECK(me.uid() == 0);
  CHECK(me.pinned_by_socket() == DaemonUsesPeerPidfd());
  CHECK(me.pod_uid().empty());
}

TEST_CASE("a process in a pod is identified by its kubelet cgroup", "[peer]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  DaemonProcess daemon(dir / "mh.sock");
  REQUIRE(daemon.started());
  for (const char* qos : {"besteffort", "burstable", "guaranteed"}) {
    DYNAMIC_SECTION("qos " << qos) {
      PodOptions options;
      options.qos = qos;
      options.binds = {dir.path()};
      SimulatedPod pod(options);
      REQUIRE(pod.started());
      ProcessResult r = pod.Exec({ScExecBinary(), "--socket", daemon.socket_path(), "--whoami"});
      INFO(r.Describe());
      REQUIRE(r.exit_code == 0);
      CHECK(Field(r.out, "kind") == "POD");
      CHECK(Field(r.out, "pod_uid") == pod.uid());
      CHECK(Field(r.out, "container_id") == pod.container_id());
      CHECK(Field(r.out, "qos") == qos);
      CHECK(Field(r.out, "driver") == "cgroupfs");
      // The pid is the one the daemon sees (the host's), not the pod's own.
      CHECK(Field(r.out, "pid") != "1");
      CHECK(daemon.AuditLog().find("\"pod_uid\":\"" + pod.uid() + "\"") != std::string::npos);
    }
  }
}

TEST_CASE("a non-root process outside any pod is unknown", "[peer]") {
  SC_REQUIRE_ROOT();
  TempDir dir;
  REQUIRE(chmod(dir.path().c_str(), 0755) == 0);  // mkdtemp's 0700 would stop uid 65534
  DaemonProcess daemon(dir / "mh.sock", {"--socket_mode=0666"});
  REQUIRE(daemon.started());
  ProcessResult r = Run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         ScExecBinary(), "--socket", daemon.socket_path(), "--whoami"});
  INFO(r.Describe());
  REQUIRE(r.exit_code == 0);
  CHECK(Field(r.out, "kind") == "UNKNOWN");
  CHECK(Field(r.out, "uid") == "65534");
  CHECK(daemon.AuditLog().find("\"peer_kind\":\"unknown\"") != std::string::npos);
}

}  // namespace sc::test
