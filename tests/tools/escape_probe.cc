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
#include <linux/capability.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
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
  return 0;
}

// clone(flags) of a child that exits at once; reaped here.
long CloneWith(unsigned long flags) {
  long pid = syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid(static_cast<pid_t>(pid), nullptr, 0);
  return pid;
}

int Usage() {
  std::fprintf(stderr,
               "usage: sc-escape-probe ids | fds | hold MARKER | exe-scan DEV:INO | open PATH |\n"
               "  read PATH N | stat PATH | readlink PATH | kill PID SIG | ptrace PID |\n"
               "  vmread PID | pidfd PID | setns PATH | unshare NS | clone NS | clone3 |\n"
               "  mount DIR | umount DIR | chroot DIR | pivot DIR | fsopen | open-tree DIR |\n"
               "  mknod PATH | setuid UID | capset | open-by-handle PATH\n");
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
  if (argc < 3 && cmd != "clone3" && cmd != "fsopen" && cmd != "capset") return Usage();
  if (cmd == "exe-scan") return ExeScan(arg);
  if (cmd == "open") {
    int fd = open(arg, O_RDONLY | O_CLOEXEC);
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
