// Peer identity of real connecting processes: the daemon's view, as WhoAmI
// reports it, against what the test knows about the process.
#include "daemon/identity/peer.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

// The bench's session ramp saw "PERMISSION_DENIED: only pods and operators
// may exec: open cgroup: Too many open files": a daemon out of fds told an
// entitled caller it was not entitled. Identified with no fd to spare, the
// peer is refused as RESOURCE_EXHAUSTED (retry), and identified normally once
// fds are free. Runs Peer::FromSocket in a child whose fd table is full.
TEST_CASE("a caller identified while the daemon has no fd to spare is told to retry", "[peer]") {
  SC_REQUIRE_ROOT();
  int report[2];
  REQUIRE(pipe2(report, O_CLOEXEC) == 0);
  UniqueFd report_read(report[0]), report_write(report[1]);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto say = [&](const std::string& line) {
      std::string out = line + "\n";
      (void)!write(report_write.get(), out.data(), out.size());
    };
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) _exit(2);
    // Once with fds to spare first: UBSan's vptr check of a type it has not
    // seen opens a pipe, which a full fd table would turn into a false report.
    (void)Peer::FromSocket(pair[0]);
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = 256;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(3);
    std::vector<int> filler;
    for (int fd; (fd = dup(pair[1])) >= 0;) filler.push_back(fd);
    say(std::string("filled ") + (errno == EMFILE ? "EMFILE" : strerror(errno)));
    absl::StatusOr<std::shared_ptr<const Peer>> full = Peer::FromSocket(pair[0]);
    if (!full.ok()) {
      say("full: error " + full.status().ToString());
    } else {
      absl::Status refusal = (*full)->RefuseUnknown("only pods and operators may exec");
      say(std::string("full: ") + PeerKindName((*full)->kind()) + " " + refusal.ToString());
    }
    for (int i = 0; i < 16 && !filler.empty(); ++i) {
      close(filler.back());
      filler.pop_back();
    }
    absl::StatusOr<std::shared_ptr<const Peer>> spare = Peer::FromSocket(pair[0]);
    say(std::string("spare: ") +
        (spare.ok() ? PeerKindName((*spare)->kind()) : spare.status().ToString()));
    _exit(0);
  }
  report_write.reset();
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(report_read.get(), buf, sizeof(buf))) > 0;) out.append(buf, n);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  INFO(out);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(Has(out, "filled EMFILE\n"));
  CHECK(Has(out,
            "full: unknown RESOURCE_EXHAUSTED: the daemon ran short while it identified the "
            "caller ("));
  CHECK(Has(out, "Too many open files"));
  CHECK(Has(out, "retry later"));
  // A root process in the daemon's namespaces, as this test is.
  CHECK(Has(out, "spare: operator\n"));
}

}  // namespace sc::test
