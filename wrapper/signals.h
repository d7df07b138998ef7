#ifndef WRAPPER_SIGNALS_H_
#define WRAPPER_SIGNALS_H_

#include <signal.h>

#include <functional>

namespace sc {

// The signals sc-exec forwards to the process.
inline constexpr int kForwardedSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

// The forwarded signals, SIGWINCH and SIGCHLD: what BlockSignals blocks.
sigset_t HandledSignals();

// Blocks the forwarded signals, SIGWINCH and SIGCHLD in the calling thread,
// and ignores SIGPIPE. Must run first in main(), before any thread exists,
// so every thread (gRPC's included) inherits the mask and the signals reach
// only the signal thread.
void BlockSignals();

// Starts the (detached) thread that sigwait()s for them: SIGCHLD reaps every
// exited child when sc-exec is PID 1 (orphans are reparented to it), the
// others go to `on_signal`.
void StartSignalThread(std::function<void(int)> on_signal);

}  // namespace sc

#endif  // WRAPPER_SIGNALS_H_
