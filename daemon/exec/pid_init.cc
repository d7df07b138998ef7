#include "daemon/exec/pid_init.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "daemon/base/syscalls.h"

namespace sc {

PidNamespaceInit& PidNamespaceInit::operator=(PidNamespaceInit&& other) noexcept {
  if (this != &other) {
    Stop();
    pid_ = other.pid_;
    pidfd_ = std::move(other.pidfd_);
    other.pid_ = -1;
  }
  return *this;
}

void PidNamespaceInit::Stop() {
  if (!pidfd_) return;
  PidfdSendSignal(pidfd_.get(), SIGKILL, nullptr, 0);
  siginfo_t info{};
  while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info, WEXITED) !=
             0 &&
         errno == EINTR) {
  }
  pidfd_.reset();
  pid_ = -1;
}

}  // namespace sc
