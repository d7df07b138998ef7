#include "wrapper/signals.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <system_error>
#include <thread>

#include "common/unique_fd.h"

namespace sc {
namespace {

// Held by the signal thread from taking a signal until it has forwarded it,
// and by StopSignalThread to say that no signal may be taken any more.
std::mutex g_taking;
bool g_stopped = false;

}  // namespace

sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kForwardedSignals) sigaddset(&set, sig);
  sigaddset(&set, SIGWINCH);
  sigaddset(&set, SIGCHLD);
  return set;
}

void BlockSignals() {
  sigset_t set = HandledSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A closed stdout is reported as EPIPE and handled, not a silent death.
  signal(SIGPIPE, SIG_IGN);
}

bool StartSignalThread(std::function<void(int)> on_signal) {
  sigset_t set = HandledSignals();
  // A signalfd, not sigwait(): sigwait takes a signal the moment it returns,
  // so an execve of another thread could kill this one between taking a
  // signal and forwarding it, and the signal was lost (a SIGTERM sent to
  // sc-exec as its by-reference session was handed over). poll() only says
  // that one is pending; it is taken under g_taking, which StopSignalThread
  // holds to end the taking.
  UniqueFd fd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd) return false;
  try {
    std::thread([fd = std::move(fd), on_signal = std::move(on_signal)] {
      const bool pid1 = getpid() == 1;
      while (true) {
        pollfd readable{fd.get(), POLLIN, 0};
        if (poll(&readable, 1, -1) < 0) continue;  // EINTR
        std::lock_guard<std::mutex> lock(g_taking);
        if (g_stopped) return;
        signalfd_siginfo info{};
        while (read(fd.get(), &info, sizeof(info)) == sizeof(info)) {
          int sig = static_cast<int>(info.ssi_signo);
          if (sig == SIGCHLD) {
            while (pid1 && waitpid(-1, nullptr, WNOHANG) > 0) {
            }
            continue;
          }
          on_signal(sig);
        }
      }
    }).detach();
  } catch (const std::system_error& e) {
    errno = e.code().value();
    return false;
  }
  return true;
}

void StopSignalThread() {
  std::lock_guard<std::mutex> lock(g_taking);
  g_stopped = true;
}

}  // namespace sc
