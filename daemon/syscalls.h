#ifndef DAEMON_SYSCALLS_H_
#define DAEMON_SYSCALLS_H_

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

}  // namespace sc

#endif  // DAEMON_SYSCALLS_H_
