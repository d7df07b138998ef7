#include "session/pid1.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "common/unique_fd.h"
#include "daemon/base/syscalls.h"

namespace sc {
namespace {

// The workload: the second process of the namespace.
constexpr pid_t kWorkloadNsPid = 2;

void ReapOrphans() {
  siginfo_t info{};
  while (waitid(P_ALL, 0, &info, WEXITED | WNOHANG) == 0 && info.si_pid != 0) info = {};
}

}  // namespace

void PidNamespaceInitMain() {
  // Not dumpable (execve made it so again): no one in the namespace may read
  // this process's memory or open its /proc entries.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, nullptr);
  syscall(SYS_close_range, 0u, static_cast<unsigned>(kPidInitDaemonLifeFd - 1), 0u);
  syscall(SYS_close_range, static_cast<unsigned>(kPidInitDaemonLifeFd + 1), ~0u, 0u);

  // The workload is cloned right after this process; give it the time a
  // start may take.
  UniqueFd workload;
  for (int i = 0; i < 3000 && !workload; ++i) {
    workload.reset(PidfdOpen(kWorkloadNsPid, 0));
    if (!workload) {
      timespec ten_ms{0, 10 * 1000 * 1000};
      nanosleep(&ten_ms, nullptr);
    }
  }
  if (!workload) _exit(0);

  sigset_t child;
  sigemptyset(&child);
  sigaddset(&child, SIGCHLD);
  UniqueFd child_exits(signalfd(-1, &child, SFD_CLOEXEC | SFD_NONBLOCK));
  bool daemon_gone = false;
  timespec gone_at{};
  while (true) {
    pollfd fds[3] = {{workload.get(), POLLIN, 0},
                     {child_exits.get(), POLLIN, 0},
                     {daemon_gone ? -1 : kPidInitDaemonLifeFd, POLLIN, 0}};
    // Without a signalfd, orphans are reaped once a second.
    int timeout = child_exits ? -1 : 1000;
    if (daemon_gone) timeout = 100;
    int n = poll(fds, 3, timeout);
    if (n < 0 && errno != EINTR) _exit(1);
    if (fds[0].revents != 0) _exit(0);  // the workload ended: so does the namespace
    if (!daemon_gone && fds[2].revents != 0) {
      // EOF (or an error): nobody will end this session any more.
      daemon_gone = true;
      clock_gettime(CLOCK_MONOTONIC, &gone_at);
      for (int sig : {SIGHUP, SIGCONT, SIGTERM}) kill(-1, sig);
    }
    if (daemon_gone) {
      timespec now{};
      clock_gettime(CLOCK_MONOTONIC, &now);
      long long waited =
          (now.tv_sec - gone_at.tv_sec) * 1000LL + (now.tv_nsec - gone_at.tv_nsec) / 1000000;
      if (waited >= kPidInitDaemonGoneGraceMs) _exit(0);
    }
    if (child_exits) {
      signalfd_siginfo drained;
      while (read(child_exits.get(), &drained, sizeof(drained)) > 0) {
      }
    }
    ReapOrphans();
  }
}

}  // namespace sc
