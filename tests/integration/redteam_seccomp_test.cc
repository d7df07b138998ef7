// Red-team tests (issue 18, finding 6): the seccomp filter of a workload that
// a consumer pod starts through sc-exec is at least as strict as the
// container runtime's default profile (RuntimeDefault) its pod runs under.
// It was a denylist: io_uring_setup, an IORING_OP_OPENAT through the ring and
// personality(READ_IMPLIES_EXEC|ADDR_NO_RANDOMIZE) succeeded. The attempts
// are made by sc-escape-probe (tests/tools/escape_probe.cc) inside the
// instance's rootfs, which prints the kernel's answer to each; the rules
// themselves are checked call by call in tests/unit/seccomp_filter_test.cc.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace sc::test {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kUser = 1000;

// A node with one prepared instance whose image holds busybox and the probe,
// and one consumer pod that has the instance's rootfs at /rootfs.
struct SeccompNode {
  TempDir dir;
  std::string run = dir / "run";
  std::string image = dir / "layers/image";
  std::string instances = dir / "instances";
  std::unique_ptr<DaemonProcess> daemon;
  std::unique_ptr<SimulatedPod> pod;

  SeccompNode() {
    // uid 1000 must reach the socket and the image.
    REQUIRE(chmod(dir.path().c_str(), 0755) == 0);
    fs::create_directories(run);
    fs::create_directories(instances);
    MakeBusyboxTree(image);
    fs::copy_file(SC_ESCAPE_PROBE_BIN, image + "/bin/probe");
    daemon = std::make_unique<DaemonProcess>(
        run + "/mh.sock",
        std::vector<std::string>{"--instance_base=" + instances, "--layer_root=" + dir / "layers",
                                 "--socket_mode=0666", "--exec_kill_grace=1s"});
    REQUIRE(daemon->started());
    ProcessResult r =
        Run({TestClientBinary(), daemon->socket_path(), "PrepareRootfs",
             "instance{namespace:\"ns\" name:\"a\"} layers{paths:\"" + image + "\"}"});
    INFO(r.Describe() << r.err);
    REQUIRE(r.exit_code == 0);
    PodOptions options;
    options.rootfs_host_path = instances + "/ns/a/rootfs";
    options.binds = {run};
    pod = std::make_unique<SimulatedPod>(options);
    REQUIRE(pod->started());
  }

  // sc-exec in the pod, as its root or as `uid`.
  ProcessResult InPod(const std::vector<std::string>& args, uid_t uid = 0) {
    std::vector<std::string> argv;
    if (uid != 0) {
      argv = {"/usr/bin/setpriv", "--reuid=" + std::to_string(uid),
              "--regid=" + std::to_string(uid), "--clear-groups"};
    }
    for (const std::string& a :
         std::vector<std::string>{ScExecBinary(), "--socket", daemon->socket_path()}) {
      argv.push_back(a);
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return pod->Exec(argv);
  }
  ProcessResult Sh(const std::string& script, uid_t uid = 0) {
    return InPod({"--workdir", "/", "sh", "-c", script}, uid);
  }
};

struct Attempt {
  std::string command;  // the probe's arguments
  std::string answer;   // what the probe prints after them
};

std::string ScriptOf(const std::vector<Attempt>& attempts) {
  std::string script;
  for (const Attempt& a : attempts) script += "probe " + a.command + "; ";
  return script;
}

}  // namespace

TEST_CASE("redteam: a workload's system calls are no more than RuntimeDefault allows",
          "[redteam][seccomp]") {
  SC_REQUIRE_ROOT();
  SeccompNode node;
  // EPERM for what the list refuses; ENOSYS for clone3 (libcs fall back to
  // clone) and for calls newer than the list (mseal, Linux 6.10: ENOSYS from
  // an older kernel too).
  const std::vector<Attempt> attempts = {
      // The report's own attacks.
      {"io-uring", "setup EPERM"},
      {"personality 0x440000", "EPERM"},   // READ_IMPLIES_EXEC|ADDR_NO_RANDOMIZE
      {"personality 0x0040000", "EPERM"},  // ADDR_NO_RANDOMIZE
      {"personality 0xffffffff", "ok"},    // a query
      {"personality 0x0", "ok"},
      {"personality 0x8", "ok"},  // PER_LINUX32
      // What RuntimeDefault refuses a process without capabilities.
      {"keyctl", "EPERM"},
      {"add-key", "EPERM"},
      {"request-key", "EPERM"},
      {"bpf", "EPERM"},
      {"perf", "EPERM"},
      {"userfaultfd", "EPERM"},
      {"unshare user", "EPERM"},
      {"unshare time", "EPERM"},
      {"clone user", "EPERM"},
      {"clone net", "EPERM"},
      {"clone3 user", "ENOSYS"},
      {"clone3", "ENOSYS"},
      {"setns /proc/self/ns/net", "EPERM"},
      // vsock is not namespaced: it reaches the node's hypervisor. Also with
      // bits above the 32 the kernel reads (it would take 0x100000028 as 40).
      {"socket 40", "EPERM"},
      {"socket 0x100000028", "EPERM"},
      {"socket 1", "ok"},
      {"socket 2", "ok"},
      // cachestat (451) with a bad fd: older than the list's newest call and
      // not in it (EPERM, not the kernel's EBADF); mseal is newer (ENOSYS).
      {"raw 451 -1", "EPERM"},
      {"mseal", "ENOSYS"},
  };
  for (uid_t uid : {uid_t{0}, kUser}) {
    DYNAMIC_SECTION("as uid " << uid) {
      ProcessResult r = node.Sh(ScriptOf(attempts), uid);
      INFO(r.Describe() << "\n" << r.out << r.err);
      for (const Attempt& a : attempts) {
        INFO("expected: " << a.command << " " << a.answer);
        CHECK(Has(r.out, a.command + " " + a.answer + "\n"));
      }
      // The ring was never made, so nothing was opened through it.
      CHECK_FALSE(Has(r.out, "io-uring openat"));
    }
  }
}

TEST_CASE("redteam: the 32-bit entry points get the same rules", "[redteam][seccomp]") {
  SC_REQUIRE_ROOT();
  SeccompNode node;
  // int 0x80 from the 64-bit probe reaches the i386 table (i386 numbers).
  // A kernel without IA32 emulation kills the probe: nothing to bypass then.
  ProcessResult probe = node.Sh("probe int80 20");  // getpid
  INFO(probe.Describe() << "\n" << probe.out << probe.err);
  if (!Has(probe.out, "int80 20 ok\n")) {
    WARN("int 0x80 does not work on this kernel (no IA32 emulation): skipped");
    return;
  }
  const std::vector<Attempt> attempts = {
      {"int80 136 0x440000", "EPERM"},    // personality
      {"int80 136 0xffffffff", "ok"},     // personality (query)
      {"int80 425 4 0", "EPERM"},         // io_uring_setup
      {"int80 310 0x10000000", "EPERM"},  // unshare(CLONE_NEWUSER)
      {"int80 120 0x10000011", "EPERM"},  // clone(CLONE_NEWUSER|SIGCHLD)
      {"int80 359 40 1 0", "EPERM"},      // socket(AF_VSOCK)
      {"int80 288 0 -3 0", "EPERM"},      // keyctl
      {"int80 435 0 0", "ENOSYS"},        // clone3
      {"int80 462 0 0 0", "ENOSYS"},      // mseal: newer than the list
      // x32 numbers (__X32_SYSCALL_BIT): personality and io_uring_setup.
      {"raw 0x40000087 0x440000", "EPERM"},
      {"raw 0x400001a9 4 0", "EPERM"},
  };
  ProcessResult r = node.Sh(ScriptOf(attempts), kUser);
  INFO(r.Describe() << "\n" << r.out << r.err);
  for (const Attempt& a : attempts) {
    INFO("expected: " << a.command << " " << a.answer);
    CHECK(Has(r.out, a.command + " " + a.answer + "\n"));
  }
}

TEST_CASE("redteam: ordinary work runs under the workload's seccomp filter", "[redteam][seccomp]") {
  SC_REQUIRE_ROOT();
  SeccompNode node;

  SECTION("a shell with pipes, fork, exec, files and the probe's system calls") {
    ProcessResult r = node.Sh(
        "set -e; echo abc | tr b x | cat; ls / | grep -qx bin && echo has-bin; mkdir -p /tmp/w; "
        "echo data > /tmp/w/f; mv /tmp/w/f /tmp/w/g; chmod 600 /tmp/w/g; ln -s g /tmp/w/l; "
        "cat /tmp/w/l; rm -r /tmp/w; sleep 0.01; date +%Y >/dev/null; id -u; "
        "ps >/dev/null; probe work",
        kUser);
    INFO(r.Describe() << "\n" << r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.rfind("axc\nhas-bin\ndata\n1000\n", 0) == 0);
    CHECK(Has(r.out, "work done\n"));
    CHECK_FALSE(Has(r.out, "FAILED"));
  }
  SECTION("signals: a trap, a child killed and waited for") {
    ProcessResult r = node.Sh(
        "trap 'echo got-usr1' USR1; kill -USR1 $$; sleep 30 & kill -TERM $!; wait $!; "
        "echo sleep=$?");
    INFO(r.Describe() << "\n" << r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "got-usr1\nsleep=143\n");
  }
  SECTION("a terminal session") {
    ProcessResult r = node.InPod({"--tty", "--workdir", "/", "sh", "-c", "tty; probe work"});
    INFO(r.Describe() << "\n" << r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(Has(r.out, "/dev/pts/"));
    CHECK(Has(r.out, "work done"));
  }
}

}  // namespace sc::test
