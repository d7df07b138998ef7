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

// Starts the (detached) thread that takes them: SIGCHLD reaps every exited
// child when sc-exec is PID 1 (orphans are reparented to it), the others go
// to `on_signal`. At most once per process. False, with errno, when it could
// not start (no signalfd or thread): nothing is forwarded then.
bool StartSignalThread(std::function<void(int)> on_signal);

// Makes the signal thread take no more signals, and returns once every signal
// it took has been through `on_signal`: those that arrive later stay pending
// (blocked) for whoever takes them next, this process's image after an
// execve included. Call it before execve: the exec kills the thread, and with
// it a signal it had taken and not yet forwarded. Idempotent; harmless when
// no thread was started.
void StopSignalThread();

}  // namespace sc

#endif  // WRAPPER_SIGNALS_H_
