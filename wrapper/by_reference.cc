// sc-exec's by-reference session (see RunByReference in stream.h). The gRPC
// call only starts the process: its stdio are this process's own files, and
// what follows goes through two pipes with the session's keeper (keeper.h on
// the daemon's side, common/keeper_wire.h for the records), which lives in
// this pod. So the daemon can restart, be upgraded or be killed while the
// process runs, and nothing of the session notices.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/exit_codes.h"
#include "common/keeper_wire.h"
#include "common/status_names.h"
#include "common/unique_fd.h"
#include "wrapper/signals.h"
#include "wrapper/stream.h"
#include "wrapper/terminal.h"
#include "wrapper/trace.h"

namespace sc {
namespace {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

const char* CodeName(grpc::StatusCode code) { return StatusCodeName(static_cast<int>(code)); }

bool MakePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end->reset(fds[0]);
  write_end->reset(fds[1]);
  return true;
}

// The write end of the control pipe, for the signal thread. Never closed
// while sc-exec runs: its EOF tells the keeper that sc-exec is gone.
int g_control = -1;

void SendControl(const KeeperControl& record) {
  // One record is smaller than PIPE_BUF: the write is atomic. A keeper that
  // is gone (EPIPE) or a full pipe (the keeper is stuck, or not started yet
  // and 4096 records wait) loses the record, as a signal to a stopped process
  // would be: the write end is non-blocking, so the signal thread never
  // hangs here and StopSignalThread never waits for it.
  ssize_t n;
  do {
    n = write(g_control, &record, sizeof(record));
  } while (n < 0 && errno == EINTR);
}

// Reads the keeper's status; false at EOF without one (no keeper holds the
// pipe's write end any more).
bool ReadStatus(int fd, KeeperStatus* status) {
  char buffer[sizeof(KeeperStatus)];
  size_t got = 0;
  while (got < sizeof(buffer)) {
    ssize_t n = read(fd, buffer + got, sizeof(buffer) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  std::memcpy(status, buffer, sizeof(*status));
  return status->magic == kKeeperStatusMagic;
}

// Forwards signals and window sizes into the control pipe until the status
// pipe gives the keeper's status (or EOF), then restores the terminal.
// One thread: a signalfd for what BlockSignals blocked (the mask survives
// execve), and, as PID 1 of its container, the reaping of orphans.
int WaitForKeeper(int status_fd, bool tty, bool started, const grpc::Status& call) {
  sigset_t set = HandledSignals();
  sigprocmask(SIG_BLOCK, &set, nullptr);
  UniqueFd signals(signalfd(-1, &set, SFD_CLOEXEC));
  const bool pid1 = getpid() == 1;
  KeeperStatus kept;
  bool have_status = false;
  while (true) {
    pollfd fds[2] = {{status_fd, POLLIN, 0}, {signals.get(), POLLIN, 0}};
    int n = poll(fds, signals ? 2 : 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info{};
      if (read(signals.get(), &info, sizeof(info)) == sizeof(info)) {
        int sig = static_cast<int>(info.ssi_signo);
        KeeperControl record;
        if (sig == SIGCHLD) {
          while (pid1 && waitpid(-1, nullptr, WNOHANG) > 0) {
          }
        } else if (sig == SIGWINCH) {
          winsize size{};
          if (tty && (TerminalSize(0, &size) || TerminalSize(1, &size))) {
            record.type = KeeperControl::kResize;
            record.rows = size.ws_row;
            record.cols = size.ws_col;
            record.x_pixels = size.ws_xpixel;
            record.y_pixels = size.ws_ypixel;
            SendControl(record);
          }
        } else {
          record.type = KeeperControl::kSignal;
          record.signal = sig;
          SendControl(record);
        }
      }
    }
    if (fds[0].revents != 0) {
      have_status = ReadStatus(status_fd, &kept);
      break;
    }
  }
  TracePoint("exit_status");
  RestoreTerminal();
  if (have_status) {
    if (kept.code == CLD_EXITED) return kept.status & 0xff;
    return 128 + kept.status;
  }
  if (started) {
    std::fprintf(stderr, "sc-exec: the session's keeper ended without an exit status\n");
    return kExitStreamBroken;
  }
  std::fprintf(stderr, "sc-exec: Exec refused: %s: %s\n", CodeName(call.error_code()),
               call.error_message().c_str());
  return kExitUnreachable;
}

}  // namespace

int RunByReference(grpc::ChannelInterface* channel, const SessionOptions& options) {
  UniqueFd status_r, status_w, control_r, control_w;
  if (!MakePipe(&status_r, &status_w) || !MakePipe(&control_r, &control_w) ||
      fcntl(control_w.get(), F_SETFL, O_NONBLOCK) != 0) {
    std::fprintf(stderr, "sc-exec: the keeper's pipes: %s\n", std::strerror(errno));
    return kExitInternal;
  }
  g_control = control_w.get();

  v1::ExecRequest first;
  v1::ExecStart* start = first.mutable_start();
  FillExecStart(options, start);
  v1::StdioByReference* ref = start->mutable_by_reference();
  ref->set_stdin_fd(0);
  ref->set_stdout_fd(1);
  ref->set_stderr_fd(2);
  ref->set_status_fd(status_w.get());
  ref->set_control_fd(control_r.get());

  // Signals go into the control pipe from the start: before the keeper
  // reads it they wait there, so none sent during the start is lost.
  bool forwarding = StartSignalThread([tty = options.tty](int sig) {
    KeeperControl record;
    if (sig == SIGWINCH) {
      if (!tty) return;
      winsize size{};
      if (!TerminalSize(0, &size) && !TerminalSize(1, &size)) return;
      record.type = KeeperControl::kResize;
      record.rows = size.ws_row;
      record.cols = size.ws_col;
      record.x_pixels = size.ws_xpixel;
      record.y_pixels = size.ws_ypixel;
    } else {
      record.type = KeeperControl::kSignal;
      record.signal = sig;
    }
    SendControl(record);
  });
  if (!forwarding) {
    std::fprintf(stderr, "sc-exec: cannot forward signals: %s\n", std::strerror(errno));
    return kExitInternal;
  }
  // Raw before the process can write: its first output must not meet this
  // terminal's own line discipline.
  bool raw = options.tty && EnterRawMode(0);
  grpc::ClientContext context;
  auto stub = v1::MountHelper::NewStub(
      std::shared_ptr<grpc::ChannelInterface>(channel, [](grpc::ChannelInterface*) {}));
  auto stream = stub->Exec(&context);
  TracePoint("call");
  bool started = false, by_reference = false, have_exit = false;
  v1::ExecExit exit;
  if (stream->Write(first)) {
    TracePoint("start_sent");
    stream->WritesDone();
    v1::ExecResponse response;
    while (stream->Read(&response)) {
      if (response.has_started()) {
        TracePoint("started");
        started = true;
        by_reference = response.started().by_reference();
        if (!by_reference) break;
      } else if (response.has_exit()) {
        exit = response.exit();
        have_exit = true;
      }
    }
  }
  if (started && !by_reference) {
    // A daemon older than by-reference stdio started a streaming session:
    // cancelling it stops the process as a dropped session.
    context.TryCancel();
    stream->Finish();
    if (raw) RestoreTerminal();
    std::fprintf(stderr,
                 "sc-exec: the mount-helper is older than this sc-exec and does not take stdio "
                 "by reference; upgrade the DaemonSet first, or run sc-exec --stream\n");
    return kExitRefused;
  }
  grpc::Status status = stream->Finish();
  TracePoint("finished");
  // The keeper holds its own copies of our ends; ours would keep the status
  // pipe from reaching EOF should the keeper die.
  status_w.reset();
  control_r.reset();

  if (have_exit) {
    if (raw) RestoreTerminal();
    if (!exit.message().empty()) std::fprintf(stderr, "%s\n", exit.message().c_str());
    if (exit.status_case() == v1::ExecExit::kSignal) return 128 + exit.signal();
    return exit.exit_code();
  }
  // Once started, the daemon is not needed: a refusal or a lost daemon before
  // `started` either left no keeper (EOF at once) or one that runs the
  // process (the daemon died between launching it and answering).
  if (!started && status.error_code() != grpc::StatusCode::UNAVAILABLE) {
    if (raw) RestoreTerminal();
    std::fprintf(stderr, "sc-exec: Exec refused: %s: %s\n", CodeName(status.error_code()),
                 status.error_message().c_str());
    return kExitRefused;
  }
  // From here on WaitForKeeper forwards, in this image or the exec'd one:
  // signals that arrive meanwhile stay pending (blocked, across execve too),
  // and none the signal thread took dies with it unforwarded.
  StopSignalThread();
  // Nothing of gRPC is needed any more: its connection (three fds in the
  // daemon, counted in --max_connections_per_pod) and its threads (pids in
  // the pod) go with an exec of this binary as a one-thread waiter.
  if (started) {
    std::string status_fd = std::to_string(status_r.get());
    std::string control_fd = std::to_string(control_w.get());
    const char* tty = options.tty ? "tty" : "pipes";
    std::string terminal = SavedTerminal();
    if (fcntl(status_r.get(), F_SETFD, 0) == 0 && fcntl(control_w.get(), F_SETFD, 0) == 0) {
      char* argv[] = {const_cast<char*>("sc-exec"),
                      const_cast<char*>(kWaiterFlag),
                      status_fd.data(),
                      control_fd.data(),
                      const_cast<char*>(tty),
                      terminal.data(),
                      nullptr};
      execve("/proc/self/exe", argv, environ);
    }
    // No exec (no /proc?): wait here, with gRPC's threads idle.
  }
  return WaitForKeeper(status_r.get(), options.tty, started, status);
}

int RunKeeperWaiter(int argc, char** argv) {
  if (argc != 6) return kExitUsage;
  AdoptSavedTerminal(argv[5]);
  int status_fd = std::atoi(argv[2]);
  g_control = std::atoi(argv[3]);
  bool tty = std::strcmp(argv[4], "tty") == 0;
  for (int fd : {status_fd, g_control}) fcntl(fd, F_SETFD, FD_CLOEXEC);
  return WaitForKeeper(status_fd, tty, true, grpc::Status::OK);
}

}  // namespace sc
