// sc-escape-probe COMMAND [ARGS...]
//
// Run inside an instance's rootfs by the escape tests (tests/integration/
// escape_test.cc): each command makes one attempt to leave the sandbox the
// daemon put the process in and prints what the kernel answered, as one line
// "COMMAND ok" or "COMMAND <ERRNO NAME>", so the test can assert how it failed.
// Static and free of the project's libraries: it must run in any rootfs, also
// as a setuid-root copy. Busybox cannot do most of this (no ptrace, no raw
// mount or clone3) and drops a setuid bit by itself, which would hide whether
// no_new_privs did.
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int Report(const char* what, long rc) {
  if (rc >= 0) {
    std::printf("%s ok\n", what);
    return 0;
  }
  const char* name = strerrorname_np(errno);
  std::printf("%s %s\n", what, name ? name : "?");
  return 1;
}

std::string Readlink(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n < 0) {
    const char* name = strerrorname_np(errno);
    return std::string("<") + (name ? name : "?") + ">";
  }
  return std::string(buf, static_cast<size_t>(n));
}

// uid, gid, effective capabilities, no_new_privs and the parent's pid as the
// process's own pid namespace numbers it.
int Ids() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return Report("capget", -1);
  unsigned long long eff =
      (static_cast<unsigned long long>(data[1].effective) << 32) | data[0].effective;
  unsigned long long prm =
      (static_cast<unsigned long long>(data[1].permitted) << 32) | data[0].permitted;
  std::printf("uid=%d euid=%d gid=%d egid=%d capeff=%llx capprm=%llx nnp=%d ppid=%d\n", getuid(),
              geteuid(), getgid(), getegid(), eff, prm, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
              getppid());
  return 0;
}

// Every fd this process holds and what it points at.
int Fds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return Report("opendir /proc/self/fd", -1);
  int own = dirfd(dir);
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    if (std::atoi(e->d_name) == own) continue;
    std::printf("fd %s %s\n", e->d_name,
                Readlink(std::string("/proc/self/fd/") + e->d_name).c_str());
  }
  closedir(dir);
  return 0;
}

// Walks /proc/<pid>/exe of every process this one can see and counts the
// ones that are the file DEV:INO (the daemon's binary, stat'ed on the host).
int ExeScan(const char* dev_ino) {
  unsigned long long want_dev = 0, want_ino = 0;
  if (std::sscanf(dev_ino, "%llu:%llu", &want_dev, &want_ino) != 2) return 2;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return Report("opendir /proc", -1);
  int seen = 0, readable = 0, denied = 0, match = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    ++seen;
    struct stat st {};
    std::string exe = std::string("/proc/") + e->d_name + "/exe";
    if (stat(exe.c_str(), &st) != 0) {
      if (errno == EACCES || errno == EPERM) ++denied;
      continue;
    }
    ++readable;
    if (st.st_dev == want_dev && st.st_ino == want_ino) {
      ++match;
      std::printf("exe_match pid=%s\n", e->d_name);
    }
  }
  closedir(dir);
  std::printf("exe_scan seen=%d readable=%d denied=%d match=%d\n", seen, readable, denied, match);
  return 0;
}

unsigned long NsFlag(const std::string& name) {
  if (name == "mnt") return CLONE_NEWNS;
  if (name == "user") return CLONE_NEWUSER;
  if (name == "pid") return CLONE_NEWPID;
  if (name == "net") return CLONE_NEWNET;
  if (name == "uts") return CLONE_NEWUTS;
  if (name == "ipc") return CLONE_NEWIPC;
  if (name == "cgroup") return CLONE_NEWCGROUP;
  if (name == "time") return CLONE_NEWTIME;  // unshare only
  return 0;
}

// clone(flags) of a child that exits at once; reaped here.
long CloneWith(unsigned long flags) {
  long pid = syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
  return pid;
}

// Newer than this libc's headers (x86_64 and i386 share the number).
constexpr long kNrMseal = 462;

long Number(const char* text) { return static_cast<long>(std::strtoul(text, nullptr, 0)); }

// A system call through int 0x80: the i386 entry point, from this 64-bit
// process, with the i386 numbers (the way around a filter that forgot the
// 32-bit ABI). Integer arguments only. The answer is the kernel's, as the
// raw syscall gives it: -errno on failure.
long Int80(long nr, long a0, long a1, long a2, long a3, long a4) {
  long ret;
  asm volatile("int $0x80"
               : "=a"(ret)
               : "a"(nr), "b"(a0), "c"(a1), "d"(a2), "S"(a3), "D"(a4)
               : "memory", "cc", "r8", "r9", "r10", "r11");
  return static_cast<int>(ret);  // eax, sign-extended
}

// "raw NR [ARGS]" or "int80 NR [ARGS]": the call with up to five integer
// arguments (decimal or 0x...).
int RawCall(bool int80, int argc, char** argv) {
  std::string what = argv[1];
  for (int i = 2; i < argc; ++i) what += std::string(" ") + argv[i];
  long a[6] = {};
  for (int i = 0; i < 6 && 2 + i < argc; ++i) a[i] = Number(argv[2 + i]);
  long rc;
  if (int80) {
    rc = Int80(a[0], a[1], a[2], a[3], a[4], a[5]);
    if (rc < 0 && rc > -4096) {
      errno = static_cast<int>(-rc);
      rc = -1;
    }
  } else {
    rc = syscall(a[0], a[1], a[2], a[3], a[4], a[5]);
  }
  return Report(what.c_str(), rc);
}

// io_uring: a ring, then an IORING_OP_OPENAT of PATH through it. The ring's
// operations run in the kernel's workers, where no seccomp rule looks at
// them: a ring is a way around every rule of the filter.
int IoUring(const char* path) {
  io_uring_params params{};
  int ring = static_cast<int>(syscall(SYS_io_uring_setup, 4, &params));
  if (Report("io-uring setup", ring) != 0) return 1;
  size_t sq_size = params.sq_off.array + params.sq_entries * sizeof(unsigned);
  size_t cq_size = params.cq_off.cqes + params.cq_entries * sizeof(io_uring_cqe);
  size_t size = sq_size > cq_size ? sq_size : cq_size;
  auto* rings = static_cast<char*>(
      mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_SQ_RING));
  auto* sqes =
      static_cast<io_uring_sqe*>(mmap(nullptr, params.sq_entries * sizeof(io_uring_sqe),
                                      PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_SQES));
  if (rings == MAP_FAILED || sqes == MAP_FAILED ||
      (params.features & IORING_FEAT_SINGLE_MMAP) == 0) {
    return Report("io-uring mmap", -1);
  }
  io_uring_sqe& sqe = sqes[0];
  std::memset(&sqe, 0, sizeof(sqe));
  sqe.opcode = IORING_OP_OPENAT;
  sqe.fd = AT_FDCWD;
  sqe.addr = reinterpret_cast<unsigned long>(path);
  sqe.open_flags = O_RDONLY | O_CLOEXEC;
  auto* sq_tail = reinterpret_cast<unsigned*>(rings + params.sq_off.tail);
  auto* sq_mask = reinterpret_cast<unsigned*>(rings + params.sq_off.ring_mask);
  auto* sq_array = reinterpret_cast<unsigned*>(rings + params.sq_off.array);
  sq_array[*sq_tail & *sq_mask] = 0;
  __atomic_store_n(sq_tail, *sq_tail + 1, __ATOMIC_RELEASE);
  long entered = syscall(SYS_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, nullptr, 0);
  if (Report("io-uring enter", entered) != 0) return 1;
  auto* cq_head = reinterpret_cast<unsigned*>(rings + params.cq_off.head);
  auto* cq_mask = reinterpret_cast<unsigned*>(rings + params.cq_off.ring_mask);
  auto* cqes = reinterpret_cast<io_uring_cqe*>(rings + params.cq_off.cqes);
  int res = cqes[*cq_head & *cq_mask].res;
  if (res < 0) errno = -res;
  return Report((std::string("io-uring openat ") + path).c_str(), res);
}

// Keyrings, bpf, perf and userfaultfd: each asks the kernel for something a
// container's default profile refuses.
int Keyring(const std::string& cmd) {
  if (cmd == "keyctl") {
    return Report("keyctl",
                  syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1));
  }
  if (cmd == "add-key") {
    return Report("add-key",
                  syscall(SYS_add_key, "user", "sc-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING));
  }
  return Report("request-key", syscall(SYS_request_key, "user", "sc-probe-none", nullptr, 0));
}

int Bpf() {
  bpf_attr attr{};
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = 1;
  return Report("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
}

int Perf() {
  perf_event_attr attr{};
  attr.size = sizeof(attr);
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_TASK_CLOCK;
  attr.exclude_kernel = 1;
  return Report("perf", syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}

// mseal (Linux 6.10), a call newer than the filter's list: ENOSYS from a
// filter that knows it does not know it, so that a libc falls back.
int Mseal() {
  void* page = mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return Report("mseal (mmap)", -1);
  return Report("mseal", syscall(kNrMseal, page, 4096, 0));
}

void* ThreadMain(void* arg) {
  *static_cast<int*>(arg) = 42;
  return nullptr;
}

// What ordinary programs do, each step reported: memory, futexes, threads
// (glibc tries clone3 first, then clone), timers, epoll, eventfd, pipes,
// fork, sockets, random numbers. "work done" at the end if all went well.
int Work() {
  int failures = 0;
  auto step = [&](const char* name, long rc) {
    failures += Report((std::string("work ") + name).c_str(), rc);
  };
  void* mem = mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  step("mmap", mem == MAP_FAILED ? -1 : 0);
  if (mem != MAP_FAILED) {
    static_cast<char*>(mem)[4096] = 1;
    step("mprotect", mprotect(mem, 4096, PROT_READ));
    step("madvise", madvise(mem, 1 << 20, MADV_DONTNEED));
    step("munmap", munmap(mem, 1 << 20));
  }
  int word = 0;
  step("futex", syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0));
  int value = 0;
  pthread_t thread;
  int err = pthread_create(&thread, nullptr, ThreadMain, &value);
  if (err != 0) errno = err;
  step("pthread_create", err == 0 ? 0 : -1);
  if (err == 0) {
    pthread_join(thread, nullptr);
    step("thread ran", value == 42 ? 0 : (errno = EIO, -1));
  }
  int timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  step("timerfd_create", timer);
  itimerspec spec{};
  spec.it_value.tv_nsec = 1000 * 1000;
  step("timerfd_settime", timerfd_settime(timer, 0, &spec, nullptr));
  int epoll = epoll_create1(EPOLL_CLOEXEC);
  step("epoll_create1", epoll);
  epoll_event event{};
  event.events = EPOLLIN;
  step("epoll_ctl", epoll_ctl(epoll, EPOLL_CTL_ADD, timer, &event));
  epoll_event ready{};
  int n = epoll_wait(epoll, &ready, 1, 5000);
  step("epoll_wait timer", n == 1 ? 0 : (errno = n == 0 ? ETIMEDOUT : errno, -1));
  uint64_t ticks = 0;
  step("timerfd read", read(timer, &ticks, sizeof(ticks)) == sizeof(ticks) ? 0 : -1);
  int efd = eventfd(0, EFD_CLOEXEC);
  step("eventfd", efd);
  uint64_t one = 1;
  step("eventfd write", write(efd, &one, sizeof(one)) == sizeof(one) ? 0 : -1);
  int fds[2];
  step("pipe2", pipe2(fds, O_CLOEXEC));
  pid_t child = fork();
  if (child == 0) {
    _exit(write(fds[1], "x", 1) == 1 ? 0 : 1);
  }
  step("fork", child);
  char c = 0;
  step("pipe read from child", read(fds[0], &c, 1) == 1 && c == 'x' ? 0 : -1);
  int status = 0;
  step("waitpid",
       waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0
                                                                                            : -1);
  int unix_sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  step("socket AF_UNIX", unix_sock);
  int inet_sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  step("socket AF_INET", inet_sock);
  int pair[2];
  step("socketpair", socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair));
  char random[16];
  step("getrandom", syscall(SYS_getrandom, random, sizeof(random), 0));
  timespec ms{0, 1000 * 1000};
  step("nanosleep", nanosleep(&ms, nullptr));
  step("personality query", personality(0xffffffff));
  std::printf("work %s\n", failures == 0 ? "done" : "FAILED");
  return failures == 0 ? 0 : 1;
}

int Usage() {
  std::fprintf(
      stderr,
      "usage: sc-escape-probe ids | fds | hold MARKER | exe-scan DEV:INO | open PATH |\n"
      "  open-write PATH | read PATH N | stat PATH | readlink PATH | kill PID SIG | ptrace PID |\n"
      "  vmread PID | pidfd PID | setns PATH | unshare NS | clone NS | clone3 |\n"
      "  mount DIR | umount DIR | chroot DIR | pivot DIR | fsopen | open-tree DIR |\n"
      "  mknod PATH | setuid UID | capset | open-by-handle PATH |\n"
      "  io-uring [PATH] | personality VALUE | keyctl | add-key | request-key | bpf |\n"
      "  perf | userfaultfd | socket FAMILY | mseal | raw NR [ARGS] | int80 NR [ARGS] |\n"
      "  clone3 [NS] | work\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string cmd = argv[1];
  std::string what = cmd + (argc > 2 ? std::string(" ") + argv[2] : "");
  const char* arg = argc > 2 ? argv[2] : "";
  if (cmd == "ids") return Ids();
  if (cmd == "fds") return Fds();
  if (cmd == "hold") {
    // Stays until stdin ends, so the test can look at it from the host.
    std::printf("ready\n");
    std::fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    return 0;
  }
  if (cmd == "io-uring") return IoUring(argc > 2 ? argv[2] : "/etc/passwd");
  if (cmd == "keyctl" || cmd == "add-key" || cmd == "request-key") return Keyring(cmd);
  if (cmd == "bpf") return Bpf();
  if (cmd == "perf") return Perf();
  if (cmd == "userfaultfd") return Report("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC));
  if (cmd == "mseal") return Mseal();
  if (cmd == "work") return Work();
  if (argc < 3 && cmd != "clone3" && cmd != "fsopen" && cmd != "capset") return Usage();
  if (cmd == "personality") {
    // The raw call: glibc's wrapper would cut the value to 32 bits.
    return Report(what.c_str(), syscall(SYS_personality, Number(arg)));
  }
  if (cmd == "socket") {
    // The family as a full register: the kernel reads only its low 32 bits.
    return Report(what.c_str(), syscall(SYS_socket, Number(arg), SOCK_STREAM | SOCK_CLOEXEC, 0));
  }
  if (cmd == "raw" || cmd == "int80") return RawCall(cmd == "int80", argc, argv);
  if (cmd == "exe-scan") return ExeScan(arg);
  if (cmd == "open") {
    int fd = open(arg, O_RDONLY | O_CLOEXEC);
    int rc = Report(what.c_str(), fd);
    if (fd >= 0) close(fd);
    return rc;
  }
  if (cmd == "open-write") {
    // Opening is the test: nothing is written.
    int fd = open(arg, O_WRONLY | O_CLOEXEC);
    int rc = Report(what.c_str(), fd);
    if (fd >= 0) close(fd);
    return rc;
  }
  if (cmd == "read") {
    // Reads N bytes: proves access to the data, not only to the name.
    int fd = open(arg, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Report(what.c_str(), -1);
    size_t want = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 1;
    std::vector<char> buf(want);
    ssize_t n = read(fd, buf.data(), want);
    close(fd);
    if (n < 0) return Report(what.c_str(), -1);
    std::printf("%s ok %zd bytes\n", what.c_str(), n);
    return 0;
  }
  if (cmd == "stat") {
    struct stat st {};
    if (stat(arg, &st) != 0) return Report(what.c_str(), -1);
    std::printf("%s ok %llu:%llu\n", what.c_str(), static_cast<unsigned long long>(st.st_dev),
                static_cast<unsigned long long>(st.st_ino));
    return 0;
  }
  if (cmd == "readlink") {
    std::printf("%s %s\n", what.c_str(), Readlink(arg).c_str());
    return 0;
  }
  if (cmd == "kill") {
    int sig = argc > 3 ? std::atoi(argv[3]) : 0;
    return Report(what.c_str(), kill(std::atoi(arg), sig));
  }
  if (cmd == "ptrace") {
    return Report(what.c_str(), ptrace(PTRACE_ATTACH, std::atoi(arg), nullptr, nullptr));
  }
  if (cmd == "vmread") {
    char local[16];
    char remote_byte = 0;
    iovec l{local, sizeof(local)};
    iovec r{&remote_byte, 1};
    return Report(what.c_str(), process_vm_readv(std::atoi(arg), &l, 1, &r, 1, 0));
  }
  if (cmd == "pidfd") {
    return Report(what.c_str(), syscall(SYS_pidfd_open, std::atoi(arg), 0));
  }
  if (cmd == "setns") {
    int fd = open(arg, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Report((what + " (open)").c_str(), -1);
    int rc = Report(what.c_str(), setns(fd, 0));
    close(fd);
    return rc;
  }
  if (cmd == "unshare") return Report(what.c_str(), unshare(static_cast<int>(NsFlag(arg))));
  if (cmd == "clone") return Report(what.c_str(), CloneWith(NsFlag(arg)));
  if (cmd == "clone3") {
    clone_args args{};
    args.flags = NsFlag(arg);
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return Report(what.c_str(), pid);
  }
  if (cmd == "mount") return Report(what.c_str(), mount("none", arg, "tmpfs", 0, nullptr));
  if (cmd == "umount") return Report(what.c_str(), umount2(arg, MNT_DETACH));
  if (cmd == "chroot") return Report(what.c_str(), chroot(arg));
  if (cmd == "pivot") return Report(what.c_str(), syscall(SYS_pivot_root, arg, arg));
  if (cmd == "fsopen") return Report(what.c_str(), syscall(SYS_fsopen, "tmpfs", 0));
  if (cmd == "open-tree") {
    return Report(what.c_str(), syscall(SYS_open_tree, AT_FDCWD, arg, 1 /* OPEN_TREE_CLONE */));
  }
  if (cmd == "mknod") {
    // The node's first disk, as a block device of our own.
    return Report(what.c_str(), mknod(arg, S_IFBLK | 0600, makedev(8, 0)));
  }
  if (cmd == "setuid") return Report(what.c_str(), setuid(static_cast<uid_t>(std::atoi(arg))));
  if (cmd == "capset") {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    data[0].effective = data[0].permitted = 1u << CAP_SYS_ADMIN;
    return Report(what.c_str(), syscall(SYS_capset, &header, data));
  }
  if (cmd == "open-by-handle") {
    // The "shocker" escape: a file handle names an inode without a path, so
    // outside the root too. The handle is PATH's if the filesystem gives one,
    // else a made-up one: the answer to open_by_handle_at is what counts.
    struct {
      file_handle handle;
      unsigned char bytes[128];
    } h{};
    h.handle.handle_bytes = sizeof(h.bytes);
    int mount_id = 0;
    if (name_to_handle_at(AT_FDCWD, arg, &h.handle, &mount_id, 0) != 0) {
      h.handle.handle_bytes = 8;
      h.handle.handle_type = 1;
    }
    int fd = open_by_handle_at(AT_FDCWD, &h.handle, O_RDONLY);
    int rc = Report(what.c_str(), fd);
    if (fd >= 0) close(fd);
    return rc;
  }
  return Usage();
}
