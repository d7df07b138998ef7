#ifndef DAEMON_BASE_SYSCALLS_H_
#define DAEMON_BASE_SYSCALLS_H_

#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

// Raw wrappers for system calls that glibc 2.36 does not declare usably for
// C++ (its <sys/pidfd.h> lacks extern "C").
namespace sc {

inline int PidfdOpen(pid_t pid, unsigned int flags) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, flags));
}

inline int PidfdSendSignal(int pidfd, int sig, siginfo_t* info, unsigned int flags) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, info, flags));
}

// pidfd_getfd(2) (Linux 5.6): a copy of fd `target_fd` of the process
// `pidfd` pins, close-on-exec.
inline int PidfdGetfd(int pidfd, int target_fd, unsigned int flags) {
  return static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, target_fd, flags));
}

// openat2(2) (Linux 5.6); glibc 2.36 has no wrapper. `how` is a struct
// open_how from <linux/openat2.h>.
template <typename OpenHow>
inline int Openat2(int dirfd, const char* path, OpenHow* how) {
  return static_cast<int>(syscall(SYS_openat2, dirfd, path, how, sizeof(*how)));
}

}  // namespace sc

#endif  // DAEMON_BASE_SYSCALLS_H_
