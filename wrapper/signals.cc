#include "wrapper/signals.h"

#include <sys/wait.h>
#include <unistd.h>

#include <thread>

namespace sc {

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

void StartSignalThread(std::function<void(int)> on_signal) {
  std::thread([on_signal = std::move(on_signal)] {
    sigset_t set = HandledSignals();
    bool pid1 = getpid() == 1;
    while (true) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGCHLD) {
        if (pid1) {
          while (waitpid(-1, nullptr, WNOHANG) > 0) {
          }
        }
        continue;
      }
      on_signal(sig);
    }
  }).detach();
}

}  // namespace sc
