// The workload's seccomp filter (daemon/exec/seccomp_filter.h), loaded into a
// forked child of this test, call by call: what RuntimeDefault allows still
// works, what it refuses answers EPERM (ENOSYS for clone3 and for calls newer
// than the list), on the 64-bit and the 32-bit entry points. Every refused
// call is made with arguments that would do no harm should the filter let it
// through (the tests may run as root).
#include "daemon/exec/seccomp_filter.h"

#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace sc {
namespace {

struct Answer {
  long rc = 0;
  int err = 0;
  bool exited = false;  // false: the child died (a signal) before answering
  std::string Describe() const {
    if (!exited) return "died";
    if (rc >= 0) return "ok";
    const char* name = strerrorname_np(err);
    return name ? name : std::to_string(err);
  }
};

// Runs `call` in a child under the filter (or without it) and tells what it
// returned. The child leaves with _exit: no sanitizer work at exit under the
// filter.
Answer InChild(const std::function<long()>& call, bool filtered = true) {
  absl::StatusOr<const SeccompProgram*> program = DefaultSeccompProgram();
  REQUIRE(program.ok());
  sock_fprog fprog = (*program)->Fprog();
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    if (filtered && (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
                     syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0)) {
      _exit(3);
    }
    errno = 0;
    long answer[2] = {call(), errno};
    _exit(write(fds[1], answer, sizeof(answer)) == sizeof(answer) ? 0 : 4);
  }
  close(fds[1]);
  long answer[2] = {0, 0};
  ssize_t n = read(fds[0], answer, sizeof(answer));
  close(fds[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  Answer a;
  a.exited = n == sizeof(answer) && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  a.rc = answer[0];
  a.err = static_cast<int>(answer[1]);
  return a;
}

std::string Under(const std::function<long()>& call) { return InChild(call).Describe(); }

// A raw call through int 0x80 (the i386 table), integer arguments only.
long Int80(long nr, long a0 = 0, long a1 = 0, long a2 = 0) {
  long ret;
  asm volatile("int $0x80"
               : "=a"(ret)
               : "a"(nr), "b"(a0), "c"(a1), "d"(a2)
               : "memory", "cc", "r8", "r9", "r10", "r11");
  ret = static_cast<int>(ret);
  if (ret < 0 && ret > -4096) {
    errno = static_cast<int>(-ret);
    return -1;
  }
  return ret;
}

// clone(flags) through the raw call; a child that would be made exits at once.
long RawClone(unsigned long flags) {
  long pid = syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
  return pid;
}

void* SetFlag(void* flag) {
  *static_cast<int*>(flag) = 1;
  return nullptr;
}

constexpr long kNrCachestat = 451;
constexpr long kNrMseal = 462;
constexpr long kX32 = 0x40000000;

}  // namespace

TEST_CASE("seccomp: the allowlist fits the kernel's limit and is built once", "[seccomp]") {
  absl::StatusOr<SeccompProgram> p = BuildSeccompProgram();
  REQUIRE(p.ok());
  // An allowlist of three ABIs: about 1,300 instructions (the denylist was
  // 157), within the kernel's limit.
  CHECK(p->instructions.size() > 500);
  CHECK(p->instructions.size() <= BPF_MAXINSNS);
  absl::StatusOr<const SeccompProgram*> a = DefaultSeccompProgram();
  absl::StatusOr<const SeccompProgram*> b = DefaultSeccompProgram();
  REQUIRE(a.ok());
  CHECK(*a == *b);
  CHECK((*a)->instructions.size() == p->instructions.size());
  // Every name of the list is a system call this libseccomp knows.
  CHECK(UnknownSeccompNames() == std::vector<std::string>{});
}

TEST_CASE("seccomp: what a process without capabilities needs still works", "[seccomp]") {
  CHECK(Under([] { return syscall(SYS_getpid); }) == "ok");
  CHECK(Under([] {
          void* m = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
          if (m == MAP_FAILED) return -1L;
          return static_cast<long>(mprotect(m, 4096, PROT_READ) | munmap(m, 8192));
        }) == "ok");
  CHECK(Under([] {
          int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
          int ep = epoll_create1(EPOLL_CLOEXEC);
          epoll_event ev{};
          ev.events = EPOLLIN;
          return static_cast<long>(fd < 0 || ep < 0 ? -1 : epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
        }) == "ok");
  // fork (clone without namespace flags) and a thread (glibc tries clone3,
  // gets ENOSYS, uses clone).
  CHECK(Under([] { return RawClone(0); }) == "ok");
  CHECK(Under([] {
          int flag = 0;
          pthread_t t;
          if (pthread_create(&t, nullptr, SetFlag, &flag) != 0) return -1L;
          pthread_join(t, nullptr);
          return flag == 1 ? 0L : -1L;
        }) == "ok");
  CHECK(Under([] { return syscall(SYS_unshare, CLONE_FS | CLONE_FILES); }) == "ok");
  CHECK(Under([] { return syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0); }) == "ok");
  CHECK(Under([] { return syscall(SYS_socket, AF_INET6, SOCK_DGRAM, 0); }) != "EPERM");
  CHECK(Under([] { return syscall(SYS_socket, AF_NETLINK, SOCK_RAW, 0); }) == "ok");
  // Families the kernel may not have reach the kernel (EAFNOSUPPORT).
  CHECK(Under([] { return syscall(SYS_socket, 41, SOCK_STREAM, 0); }) != "EPERM");
  CHECK(Under([] { return syscall(SYS_socket, 63, SOCK_STREAM, 0); }) == "EAFNOSUPPORT");
  for (unsigned long persona : {0x0UL, 0x8UL, 0x20000UL, 0x20008UL, 0xffffffffUL}) {
    INFO("personality " << persona);
    CHECK(Under([persona] { return syscall(SYS_personality, persona); }) == "ok");
  }
  CHECK(Under([] { return syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, nullptr); }) !=
        "EPERM");
}

TEST_CASE("seccomp: what RuntimeDefault refuses is refused", "[seccomp]") {
  // The report's calls.
  CHECK(Under([] { return syscall(SYS_io_uring_setup, 4, nullptr); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_io_uring_register, -1, 0, nullptr, 0); }) == "EPERM");
  for (unsigned long persona :
       {0x0400000UL /* READ_IMPLIES_EXEC */, 0x0040000UL /* ADDR_NO_RANDOMIZE */, 0x0440000UL,
        0x100000000UL /* 0 with a high bit: not a value */}) {
    INFO("personality " << persona);
    CHECK(Under([persona] { return syscall(SYS_personality, persona); }) == "EPERM");
  }
  // Namespaces: none may be made; clone3's flags are out of reach (ENOSYS).
  for (unsigned long ns : {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWUTS,
                           CLONE_NEWIPC, CLONE_NEWCGROUP}) {
    INFO("namespace flag " << ns);
    CHECK(Under([ns] { return syscall(SYS_unshare, ns); }) == "EPERM");
    CHECK(Under([ns] { return RawClone(ns); }) == "EPERM");
  }
  CHECK(Under([] { return syscall(SYS_unshare, CLONE_NEWTIME); }) == "EPERM");
  CHECK(Under([] {
          clone_args args{};
          args.flags = CLONE_NEWUSER;
          args.exit_signal = SIGCHLD;
          long pid = syscall(SYS_clone3, &args, sizeof(args));
          if (pid == 0) _exit(0);
          return pid;
        }) == "ENOSYS");
  CHECK(Under([] { return syscall(SYS_setns, -1, 0); }) == "EPERM");
  // vsock, also with high bits the kernel drops (it reads an int).
  CHECK(Under([] { return syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_socket, 0x100000028L, SOCK_STREAM, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_socket, 0x100000001L, SOCK_STREAM, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_socket, 64, SOCK_STREAM, 0); }) == "EPERM");
  // The kernel's own interfaces a container has no business with.
  CHECK(Under([] {
          return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
        }) == "EPERM");
  CHECK(Under([] {
          return syscall(SYS_add_key, "user", "sc-test", "x", 1, KEY_SPEC_PROCESS_KEYRING);
        }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_request_key, "user", "sc-none", nullptr, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_bpf, -1, nullptr, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_userfaultfd, O_CLOEXEC); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_process_vm_readv, getppid(), nullptr, 0, nullptr, 0, 0); }) ==
        "EPERM");
  CHECK(Under([] { return syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_fanotify_init, 0, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_mount, "none", "/nonexistent-sc", "tmpfs", 0, nullptr); }) ==
        "EPERM");
  CHECK(Under([] { return syscall(SYS_umount2, "/nonexistent-sc", 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_fsopen, "tmpfs", 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_open_tree, AT_FDCWD, "/nonexistent-sc", 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_pivot_root, "/nonexistent-sc", "/nonexistent-sc"); }) ==
        "EPERM");
  CHECK(Under([] { return syscall(SYS_chroot, "/nonexistent-sc"); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_open_by_handle_at, -1, nullptr, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_name_to_handle_at, -1, "", nullptr, nullptr, 0); }) ==
        "EPERM");
  CHECK(Under([] { return syscall(SYS_finit_module, -1, "", 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_delete_module, "sc-none", O_NONBLOCK); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_kexec_load, 0, 1000000, nullptr, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_reboot, 0, 0, 0, nullptr); }) == "EPERM");  // bad magic
  CHECK(Under([] { return syscall(SYS_swapon, "/nonexistent-sc", 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_acct, "/nonexistent-sc"); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_syslog, 10 /* SIZE_BUFFER */, nullptr, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_iopl, 4); }) == "EPERM");                // bad level
  CHECK(Under([] { return syscall(SYS_sethostname, "x", -1L); }) == "EPERM");  // bad length
  CHECK(Under([] { return syscall(SYS_clock_settime, CLOCK_REALTIME, nullptr); }) == "EPERM");
  CHECK(Under([] { return syscall(SYS_mbind, nullptr, 0, 0, nullptr, 0, 0); }) == "EPERM");
  // Not in the list but older than its newest call: EPERM (not the kernel's
  // EBADF); newer than the list: ENOSYS (as from an older kernel).
  CHECK(Under([] { return syscall(kNrCachestat, -1, nullptr, nullptr, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(kNrMseal, nullptr, 0, 0); }) == "ENOSYS");
  CHECK(Under([] { return syscall(999); }) == "ENOSYS");
}

TEST_CASE("seccomp: the 32-bit entry points get the same rules", "[seccomp]") {
  // Without IA32 emulation int 0x80 kills the process: nothing to bypass.
  // The probe dies of the SIGSEGV itself, not in ASan's handler (whose
  // report would fail the run).
  if (!InChild([] { return signal(SIGSEGV, SIG_DFL), Int80(20 /* getpid */); }, false).exited) {
    WARN("int 0x80 does not work on this kernel: the i386 checks are skipped");
  } else {
    CHECK(Under([] { return Int80(20); }) == "ok");
    CHECK(Under([] { return Int80(136 /* personality */, 0xffffffff); }) == "ok");
    CHECK(Under([] { return Int80(136, 0x440000); }) == "EPERM");
    CHECK(Under([] { return Int80(425 /* io_uring_setup */, 4, 0); }) == "EPERM");
    CHECK(Under([] { return Int80(310 /* unshare */, CLONE_NEWUSER); }) == "EPERM");
    CHECK(Under([] { return Int80(120 /* clone */, CLONE_NEWUSER | SIGCHLD); }) == "EPERM");
    CHECK(Under([] { return Int80(359 /* socket */, AF_VSOCK, SOCK_STREAM); }) == "EPERM");
    CHECK(Under([] { return Int80(288 /* keyctl */, KEYCTL_GET_KEYRING_ID, -3); }) == "EPERM");
    CHECK(Under([] { return Int80(26 /* ptrace */, PTRACE_TRACEME); }) == "EPERM");
    CHECK(Under([] { return Int80(21 /* mount */); }) == "EPERM");
    CHECK(Under([] { return Int80(435 /* clone3 */); }) == "ENOSYS");
    CHECK(Under([] { return Int80(kNrCachestat, -1); }) == "EPERM");
    CHECK(Under([] { return Int80(kNrMseal); }) == "ENOSYS");
  }
  // x32 numbers: the filter answers before the kernel looks (x32 may be off).
  CHECK(Under([] { return syscall(kX32 | 135 /* personality */, 0x440000); }) == "EPERM");
  CHECK(Under([] { return syscall(kX32 | 425 /* io_uring_setup */, 4, 0); }) == "EPERM");
  CHECK(Under([] { return syscall(kX32 | 272 /* unshare */, CLONE_NEWUSER); }) == "EPERM");
  CHECK(Under([] { return syscall(kX32 | 41 /* socket */, AF_VSOCK, SOCK_STREAM, 0); }) == "EPERM");
}

}  // namespace sc
