#ifndef DAEMON_EXEC_PID_INIT_H_
#define DAEMON_EXEC_PID_INIT_H_

#include <sys/types.h>

#include "common/unique_fd.h"
#include "session/pid1.h"

namespace sc {

// The daemon's handle on such an init, a child of the daemon: destruction
// SIGKILLs and reaps it (and with it, whatever is left in its namespace).
class PidNamespaceInit {
 public:
  PidNamespaceInit() = default;
  PidNamespaceInit(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  PidNamespaceInit(PidNamespaceInit&& other) noexcept = default;
  PidNamespaceInit& operator=(PidNamespaceInit&& other) noexcept;
  PidNamespaceInit(const PidNamespaceInit&) = delete;
  PidNamespaceInit& operator=(const PidNamespaceInit&) = delete;
  ~PidNamespaceInit() { Stop(); }

  pid_t pid() const { return pid_; }
  void Stop();

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
};

}  // namespace sc

#endif  // DAEMON_EXEC_PID_INIT_H_
