#include "daemon/exec/seccomp_filter.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"
#include "daemon/base/fs_util.h"

namespace sc {
namespace {

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

// Allowed without condition. Names a libseccomp or an architecture does not
// know are skipped (i386-only names such as socketcall or waitpid exist in
// that ABI only). Grouped by what they are for; what RuntimeDefault allows
// and this list leaves out is named in seccomp_filter.h.
// (Kept a group to a line or a few by hand.)
// clang-format off
constexpr const char* kAllowed[] = {
    // Reading and writing through file descriptors.
    "read", "readv", "pread64", "preadv", "preadv2", "write", "writev", "pwrite64", "pwritev",
    "pwritev2", "lseek", "_llseek", "sendfile", "sendfile64", "splice", "tee", "vmsplice",
    "copy_file_range", "readahead", "fadvise64", "fadvise64_64", "fallocate", "ftruncate",
    "ftruncate64", "truncate", "truncate64", "fsync", "fdatasync", "sync", "syncfs",
    "sync_file_range", "flock", "ioctl", "fcntl", "fcntl64",
    // Opening, closing, duplicating, pipes.
    "open", "openat", "openat2", "creat", "close", "close_range", "dup", "dup2", "dup3", "pipe",
    "pipe2", "memfd_create",
    // Names and metadata in the file tree.
    "stat", "stat64", "lstat", "lstat64", "fstat", "fstat64", "fstatat64", "newfstatat", "statx",
    "statfs", "statfs64", "fstatfs", "fstatfs64", "access", "faccessat", "faccessat2", "readlink",
    "readlinkat", "getdents", "getdents64", "getcwd", "chdir", "fchdir", "mkdir", "mkdirat",
    "rmdir", "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "unlink",
    "unlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "chown32", "fchown",
    "fchown32", "lchown", "lchown32", "fchownat", "umask", "utime", "utimes", "utimensat",
    "utimensat_time64", "futimesat",
    // Device nodes need CAP_MKNOD (never held); FIFOs and sockets do not.
    "mknod", "mknodat",
    // Extended attributes (the trusted.* and security.* ones need capabilities).
    "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr",
    "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
    // Waiting for events.
    "select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll", "ppoll_time64",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait", "epoll_wait_old",
    "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_settime", "timerfd_settime64", "timerfd_gettime",
    "timerfd_gettime64", "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    // Marks on an fanotify group: fanotify_init, which makes one, is refused.
    "fanotify_mark",
    // Linux AIO (io_uring is refused: see the header).
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64",
    // Memory.
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock",
    "mlock2", "munlock", "mlockall", "munlockall", "remap_file_pages", "membarrier", "memfd_secret",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "map_shadow_stack",
    // Processes and threads (clone has a condition, below).
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "waitpid",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "restart_syscall", "getpid",
    "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "pidfd_open",
    "pidfd_send_signal", "process_mrelease", "prctl", "arch_prctl", "modify_ldt",
    "get_thread_area", "set_thread_area", "getpriority", "setpriority", "ioprio_get", "ioprio_set",
    "getcpu", "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr",
    "sched_setattr", "sched_getparam", "sched_setparam", "sched_getscheduler",
    "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
    "sched_rr_get_interval", "sched_rr_get_interval_time64",
    // A workload may confine itself further (no_new_privs is set already).
    "seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
    // Signals.
    "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigaction",
    "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "sigaltstack", "sigreturn", "sigprocmask", "pause", "alarm",
    // Identity: changing it needs capabilities that are gone, and no_new_privs
    // keeps setuid files from giving any.
    "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32",
    "getresuid", "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32", "setuid",
    "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid", "setregid32",
    "setresuid", "setresuid32", "setresgid", "setresgid32", "setgroups", "setgroups32",
    "setfsuid", "setfsuid32", "setfsgid", "setfsgid32", "capget", "capset",
    // Limits and system information.
    "getrlimit", "ugetrlimit", "setrlimit", "prlimit64", "getrusage", "times", "sysinfo", "uname",
    "getrandom",
    // Clocks and timers (setting a clock needs CAP_SYS_TIME: adjtimex and
    // clock_adjtime only read it then).
    "time", "gettimeofday", "clock_gettime", "clock_gettime64", "clock_getres",
    "clock_getres_time64", "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "adjtimex",
    "clock_adjtime", "clock_adjtime64", "getitimer", "setitimer", "timer_create", "timer_delete",
    "timer_settime", "timer_settime64", "timer_gettime", "timer_gettime64", "timer_getoverrun",
    // Futexes.
    "futex", "futex_time64", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
    // System V and POSIX IPC (of the pod's IPC namespace).
    "ipc", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "semctl", "shmget", "shmat", "shmdt", "shmctl", "mq_open", "mq_unlink",
    "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_notify", "mq_getsetattr",
    // Sockets (socket itself has a condition, below). i386's socketcall
    // multiplexer passes its arguments in memory, so the family of a socket it
    // makes is out of reach, as in RuntimeDefault; a 32-bit libc makes every
    // socket that way.
    "socketpair", "bind", "connect", "listen", "accept", "accept4", "getsockname", "getpeername",
    "getsockopt", "setsockopt", "shutdown", "sendto", "sendmsg", "sendmmsg", "recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64", "socketcall",
};
// clang-format on

// personality(2) values a workload may set, as RuntimeDefault has them:
// PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and 0xffffffff, which
// only asks for the current one. Flags such as READ_IMPLIES_EXEC or
// ADDR_NO_RANDOMIZE weaken the process's own hardening and are refused.
constexpr scmp_datum_t kPersonalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

// Every flag that makes a namespace. CLONE_NEWTIME (0x80) only means one to
// unshare; in clone's flags those bits are the exit signal.
constexpr scmp_datum_t kCloneNamespaces = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
                                          CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                                          CLONE_NEWCGROUP;
constexpr scmp_datum_t kCloneNewTime = 0x80;

// socket(2)'s families, every one but AF_VSOCK (40): vsock is not
// namespaced, it reaches the node's hypervisor and its host services. The
// kernel takes the family as an int, the low half of the register, so each
// rule looks at all 64 bits (a value with high bits set is refused): a
// comparison "not 40" would let 0x100000028 through. Below 40, and 41-63 in
// aligned blocks (the kernel has families up to 45; the rest answer
// EAFNOSUPPORT from the kernel, not EPERM from here, up to 63).
struct SocketFamilies {
  scmp_compare op;
  scmp_datum_t a;  // the mask for SCMP_CMP_MASKED_EQ, else the value compared
  scmp_datum_t b;  // the value for SCMP_CMP_MASKED_EQ
};
constexpr SocketFamilies kSocketFamilies[] = {
    {SCMP_CMP_LT, AF_VSOCK, 0},
    {SCMP_CMP_MASKED_EQ, ~scmp_datum_t{0}, 41},
    {SCMP_CMP_MASKED_EQ, ~scmp_datum_t{1}, 42},   // 42-43
    {SCMP_CMP_MASKED_EQ, ~scmp_datum_t{3}, 44},   // 44-47
    {SCMP_CMP_MASKED_EQ, ~scmp_datum_t{15}, 48},  // 48-63
};

absl::Status Check(int rc, absl::string_view what) {
  if (rc == 0) return absl::OkStatus();
  return ErrnoStatus(-rc, absl::StrCat("libseccomp: ", what));
}

// The architectures of the filter: the native one, and on x86_64 the 32-bit
// entry points, which would otherwise bypass the rules (int 0x80 reaches the
// i386 table from any process).
struct Arch {
  uint32_t token;         // SCMP_ARCH_*, which is the kernel's AUDIT_ARCH_*
  bool shares_x32;        // x86_64: numbers with __X32_SYSCALL_BIT are x32's
  int highest_named = 0;  // the highest number kAllowed (or a rule) names
};

std::vector<Arch> Arches() {
  std::vector<Arch> arches = {{seccomp_arch_native(), false}};
#if defined(__x86_64__)
  arches[0].shares_x32 = true;
  arches.push_back({SCMP_ARCH_X86, false});
#endif
  return arches;
}

// Adds `action` for `name` (with `args`) to every architecture that has the
// call, and notes its number for the ENOSYS boundary.
absl::Status AddRule(scmp_filter_ctx ctx, std::vector<Arch>& arches, uint32_t action,
                     const char* name, std::initializer_list<scmp_arg_cmp> args = {}) {
  int nr = seccomp_syscall_resolve_name(name);
  // Unknown to this libseccomp (newer than it): skipped, and so refused, with
  // ENOSYS if its number is above the boundary (UnknownSeccompNames).
  if (nr == __NR_SCMP_ERROR) return absl::OkStatus();
  for (Arch& arch : arches) {
    int own = seccomp_syscall_resolve_name_arch(arch.token, name);
    if (own > arch.highest_named) arch.highest_named = own;
  }
  return Check(seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()),
                                      args.size() > 0 ? args.begin() : nullptr),
               name);
}

absl::Status AddRules(scmp_filter_ctx ctx, std::vector<Arch>& arches) {
  for (const char* name : kAllowed) {
    if (absl::Status s = AddRule(ctx, arches, SCMP_ACT_ALLOW, name); !s.ok()) return s;
  }
  for (scmp_datum_t persona : kPersonalities) {
    if (absl::Status s =
            AddRule(ctx, arches, SCMP_ACT_ALLOW, "personality", {SCMP_A0(SCMP_CMP_EQ, persona)});
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = AddRule(ctx, arches, SCMP_ACT_ALLOW, "clone",
                               {SCMP_A0(SCMP_CMP_MASKED_EQ, kCloneNamespaces, 0)});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = AddRule(ctx, arches, SCMP_ACT_ALLOW, "unshare",
                               {SCMP_A0(SCMP_CMP_MASKED_EQ, kCloneNamespaces | kCloneNewTime, 0)});
      !s.ok()) {
    return s;
  }
  for (const SocketFamilies& families : kSocketFamilies) {
    if (absl::Status s = AddRule(ctx, arches, SCMP_ACT_ALLOW, "socket",
                                 {SCMP_A0(families.op, families.a, families.b)});
        !s.ok()) {
      return s;
    }
  }
  return AddRule(ctx, arches, SCMP_ACT_ERRNO(ENOSYS), "clone3");
}

sock_filter Statement(uint16_t code, uint32_t k) { return BPF_STMT(code, k); }
sock_filter Jump(uint16_t code, uint32_t k, size_t at, size_t if_true, size_t if_false) {
  // Classic BPF jumps are forward and relative, at most 255 ahead.
  return BPF_JUMP(code, k, static_cast<uint8_t>(if_true - at - 1),
                  static_cast<uint8_t>(if_false - at - 1));
}

// What runs before libseccomp's program: per architecture, a number above
// the highest the list names answers ENOSYS, everything else goes on to the
// list. x32 calls (x86_64 with __X32_SYSCALL_BIT) go on to the list whole.
std::vector<sock_filter> EnosysPrologue(const std::vector<Arch>& arches) {
  constexpr uint32_t kX32Bit = 0x40000000;
  size_t size = 1;  // load the architecture
  for (const Arch& arch : arches) size += arch.shares_x32 ? 4 : 3;
  const size_t enosys = size;
  const size_t list = size + 1;
  std::vector<sock_filter> out;
  out.push_back(Statement(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  for (const Arch& arch : arches) {
    // Another architecture goes on to the next check, after the last one to
    // the list, which kills it.
    size_t next = out.size() + (arch.shares_x32 ? 4 : 3);
    if (next == enosys) next = list;
    out.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, arch.token, out.size(), out.size() + 1, next));
    out.push_back(Statement(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
    if (arch.shares_x32) {
      out.push_back(Jump(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, out.size(), list, out.size() + 1));
    }
    out.push_back(Jump(BPF_JMP | BPF_JGT | BPF_K, static_cast<uint32_t>(arch.highest_named),
                       out.size(), enosys, list));
  }
  out.push_back(Statement(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));
  return out;
}

}  // namespace

absl::StatusOr<SeccompProgram> BuildSeccompProgram() {
  Ctx ctx(seccomp_init(SCMP_ACT_ERRNO(EPERM)));
  if (!ctx) return absl::InternalError("libseccomp: seccomp_init failed");
  // The child sets no_new_privs itself, before loading; the exported program
  // does not carry that attribute anyway.
  if (absl::Status s = Check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0), "attr NNP");
      !s.ok()) {
    return s;
  }
  // A binary search over the ~350 allowed numbers instead of a linear scan:
  // every system call of every workload runs this program.
  if (absl::Status s =
          Check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2), "attr OPTIMIZE");
      !s.ok()) {
    return s;
  }
  std::vector<Arch> arches = Arches();
#if defined(__x86_64__)
  for (uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32}) {
    int rc = seccomp_arch_add(ctx.get(), arch);
    if (rc != 0 && rc != -EEXIST) return Check(rc, "seccomp_arch_add");
  }
#endif
  if (absl::Status s = AddRules(ctx.get(), arches); !s.ok()) return s;
  for (const Arch& arch : arches) {
    if (arch.highest_named <= 0) {
      return absl::InternalError(
          absl::StrCat("seccomp: no allowed call resolved for architecture ", arch.token));
    }
  }

  // libseccomp 2.5 exports only to an fd: a memfd keeps it off the disk.
  UniqueFd mem(memfd_create("sc-seccomp", MFD_CLOEXEC));
  if (!mem) return ErrnoStatus(errno, "memfd_create for the seccomp program");
  if (absl::Status s = Check(seccomp_export_bpf(ctx.get(), mem.get()), "seccomp_export_bpf");
      !s.ok()) {
    return s;
  }
  off_t size = lseek(mem.get(), 0, SEEK_END);
  SeccompProgram program;
  program.instructions = EnosysPrologue(arches);
  const size_t prologue = program.instructions.size();
  if (size <= 0 || size % sizeof(sock_filter) != 0 ||
      prologue + size / sizeof(sock_filter) > BPF_MAXINSNS) {
    return absl::InternalError(absl::StrCat("seccomp program has a bad size: ", size));
  }
  program.instructions.resize(prologue + size / sizeof(sock_filter));
  ssize_t n = pread(mem.get(), program.instructions.data() + prologue, size, 0);
  if (n != size) return ErrnoStatus(n < 0 ? errno : EIO, "read back the seccomp program");
  return program;
}

std::vector<std::string> UnknownSeccompNames() {
  std::vector<std::string> unknown;
  for (const char* name : kAllowed) {
    if (seccomp_syscall_resolve_name(name) == __NR_SCMP_ERROR) unknown.push_back(name);
  }
  for (const char* name : {"personality", "clone", "unshare", "socket", "clone3"}) {
    if (seccomp_syscall_resolve_name(name) == __NR_SCMP_ERROR) unknown.push_back(name);
  }
  return unknown;
}

absl::StatusOr<const SeccompProgram*> DefaultSeccompProgram() {
  static std::once_flag once;
  static absl::StatusOr<SeccompProgram>* program = nullptr;
  std::call_once(once, [] { program = new absl::StatusOr<SeccompProgram>(BuildSeccompProgram()); });
  if (!program->ok()) return program->status();
  return &**program;
}

}  // namespace sc
