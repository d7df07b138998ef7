#include "wrapper/stream.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/sync_stream.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/defaults.h"
#include "common/exit_codes.h"
#include "common/status_names.h"
#include "common/unique_fd.h"
#include "wrapper/exec_wire.h"
#include "wrapper/signals.h"
#include "wrapper/terminal.h"
#include "wrapper/trace.h"

namespace sc {
namespace {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

// stdin goes out in messages of up to 1 MiB (the most the daemon takes):
// whatever is there to read, in one go. Less than kCopyBelow is copied into a
// message of its own size, so that a keystroke does not pin a 1 MiB slice.
constexpr size_t kStdinChunk = 1 << 20;
constexpr size_t kCopyBelow = 64 * 1024;

// Writes all of `data` to fd, consuming it; false when the fd is gone (EPIPE,
// EBADF...).
bool WriteFullyV(int fd, std::vector<iovec>* data) {
  size_t first = 0;
  while (first < data->size()) {
    int count = static_cast<int>(std::min<size_t>(data->size() - first, IOV_MAX));
    ssize_t n = writev(fd, data->data() + first, count);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (n == 0 && (*data)[first].iov_len > 0)) return false;
    size_t done = static_cast<size_t>(n);
    while (first < data->size() && done >= (*data)[first].iov_len) {
      done -= (*data)[first].iov_len;
      ++first;
    }
    if (done > 0) {
      (*data)[first].iov_base = static_cast<char*>((*data)[first].iov_base) + done;
      (*data)[first].iov_len -= done;
    }
  }
  return true;
}

// Writes all of `data` to fd; false when the fd is gone (EPIPE, EBADF...).
bool WriteFully(int fd, const std::string& data) {
  iovec one{const_cast<char*>(data.data()), data.size()};
  std::vector<iovec> v{one};
  return WriteFullyV(fd, &v);
}

// Reads what fd 0 has, up to `size` bytes into `buffer`: blocks for the first
// bytes, then takes what else is already there (FIONREAD) without waiting.
// Returns the count, 0 at EOF, -1 on error.
ssize_t ReadAvailable(uint8_t* buffer, size_t size) {
  ssize_t n;
  do {
    n = read(0, buffer, size);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return n;
  size_t got = static_cast<size_t>(n);
  while (got < size) {
    int more = 0;
    if (ioctl(0, FIONREAD, &more) != 0 || more <= 0) break;
    n = read(0, buffer + got, std::min(size - got, static_cast<size_t>(more)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the next read reports it
    got += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(got);
}

const char* CodeName(grpc::StatusCode code) { return StatusCodeName(static_cast<int>(code)); }

// The daemon's default grace (--exec_kill_grace) between SIGTERM and SIGKILL
// for a dropped session.
constexpr int kDroppedSessionGraceSeconds = 5;

bool PidfdAlive(int pidfd) { return syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0; }

// Stops a session's process group the way the daemon does when its client
// goes away: SIGHUP, SIGCONT and SIGTERM, then SIGKILL to what is left once
// the leader has exited or the grace has passed. The leader (pinned by
// `pidfd`) made the group with setsid, and was alive when this started, so
// the group is its; the group id stays taken while any member lives.
void StopDroppedSession(pid_t leader, int pidfd) {
  for (int sig : {SIGHUP, SIGCONT, SIGTERM}) {
    kill(-leader, sig);
    syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
  }
  pollfd exited{pidfd, POLLIN, 0};
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(kDroppedSessionGraceSeconds);
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || poll(&exited, 1, static_cast<int>(left.count())) >= 0) break;
  }
  kill(-leader, SIGKILL);
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
}

}  // namespace

void FillExecStart(const SessionOptions& options, v1::ExecStart* start) {
  for (const std::string& a : options.argv) start->add_argv(a);
  for (const std::string& e : options.env) start->add_env(e);
  start->set_working_dir(options.workdir);
  start->set_working_dir_inherited(options.workdir_inherited);
  start->set_rootfs_path(options.rootfs_path);
  if (!options.instance_name.empty()) {
    start->mutable_instance()->set_namespace_(options.instance_ns);
    start->mutable_instance()->set_name(options.instance_name);
  }
  start->set_tty(options.tty);
  if (options.tty) {
    winsize size{};
    if (TerminalSize(0, &size) || TerminalSize(1, &size)) {
      start->mutable_window_size()->set_rows(size.ws_row);
      start->mutable_window_size()->set_cols(size.ws_col);
      start->mutable_window_size()->set_x_pixels(size.ws_xpixel);
      start->mutable_window_size()->set_y_pixels(size.ws_ypixel);
    }
  }
}

std::vector<std::string> PassedEnvironment(char** env) {
  std::vector<std::string> out;
  std::string socket_prefix = std::string(kSocketEnv) + "=";
  for (char** e = env; e != nullptr && *e != nullptr; ++e) {
    std::string entry = *e;
    if (entry.rfind(socket_prefix, 0) == 0 || entry.rfind("SC_EXEC_", 0) == 0) continue;
    out.push_back(std::move(entry));
  }
  return out;
}

namespace {

// What the detached stdin and signal threads share with the main thread. It
// is never freed: those threads may still hold it while sc-exec exits.
struct Shared {
  grpc::ClientContext context;
  // Raw ByteBuffers (wrapper/exec_wire.h): stdin and output are not copied.
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream;
  // Writes come from the stdin thread and the signal thread; gRPC allows one
  // at a time, and none after Finish.
  std::timed_mutex write_mu;
  bool finished = false;
  bool tty = false;
  // Set once the stream is lost but the process lives on: signals go to its
  // process group directly.
  std::atomic<pid_t> detached{0};

  bool Send(const v1::ExecRequest& request) { return SendRaw(RequestMessage(request)); }
  bool SendRaw(const grpc::ByteBuffer& message) {
    std::lock_guard<std::timed_mutex> lock(write_mu);
    if (finished) return false;
    return stream->Write(message);
  }
};

}  // namespace

int RunSession(grpc::ChannelInterface* channel, const SessionOptions& options) {
  Shared* shared = new Shared;
  shared->tty = options.tty;
  // MountHelper/Exec as the generated stub calls it, with ByteBuffers for
  // messages.
  static const std::string method =
      std::string("/") + v1::MountHelper::service_full_name() + "/Exec";
  static const grpc::internal::RpcMethod exec_method(method.c_str(),
                                                     grpc::internal::RpcMethod::BIDI_STREAMING);
  // The call's headers go out with the first message, in one write, instead
  // of a round of their own.
  shared->context.set_initial_metadata_corked(true);
  shared->stream.reset(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          channel, exec_method, &shared->context));
  TracePoint("call");
  auto& stream = shared->stream;
  auto& context = shared->context;

  v1::ExecRequest first;
  FillExecStart(options, first.mutable_start());
  if (!stream->Write(RequestMessage(first))) {
    grpc::Status status = stream->Finish();
    std::fprintf(stderr, "sc-exec: Exec refused: %s: %s\n", CodeName(status.error_code()),
                 status.error_message().c_str());
    return status.error_code() == grpc::StatusCode::UNAVAILABLE ? kExitUnreachable : kExitRefused;
  }
  TracePoint("start_sent");
  bool raw = options.tty && EnterRawMode(0);

  bool forwarding = StartSignalThread([shared](int sig) {
    v1::ExecRequest request;
    if (sig == SIGWINCH) {
      if (!shared->tty) return;
      winsize size{};
      if (!TerminalSize(0, &size) && !TerminalSize(1, &size)) return;
      v1::WindowSize* w = request.mutable_resize();
      w->set_rows(size.ws_row);
      w->set_cols(size.ws_col);
      w->set_x_pixels(size.ws_xpixel);
      w->set_y_pixels(size.ws_ypixel);
    } else {
      if (pid_t pid = shared->detached.load(); pid > 0) {
        if (kill(-pid, sig) != 0) kill(pid, sig);
        return;
      }
      request.mutable_signal()->set_signal(sig);
    }
    shared->Send(request);
  });
  if (!forwarding) {
    // The start is on its way: cancelled, the session stops as a dropped one.
    int err = errno;
    context.TryCancel();
    stream->Finish();
    if (raw) RestoreTerminal();
    std::fprintf(stderr, "sc-exec: cannot forward signals: %s\n", std::strerror(err));
    return kExitInternal;
  }

  // stdin: a detached thread, since read(0) cannot be interrupted portably;
  // the process exits without joining it.
  std::thread([shared] {
    grpc::Slice buffer;
    while (true) {
      if (buffer.size() == 0) buffer = grpc::Slice(kStdinChunk);
      uint8_t* data = const_cast<uint8_t*>(buffer.begin());
      ssize_t n = ReadAvailable(data, kStdinChunk);
      if (n <= 0) break;  // EOF, or stdin is closed/unreadable: EOF too
      size_t got = static_cast<size_t>(n);
      grpc::Slice message;
      if (got >= kCopyBelow) {
        // gRPC holds it until sent; the next read gets a new one.
        message = buffer.sub(0, got);
        buffer = grpc::Slice();
      } else {
        message = grpc::Slice(data, got);
      }
      if (!shared->SendRaw(StdinMessage(std::move(message)))) return;
    }
    v1::ExecRequest eof;
    eof.mutable_stdin_eof();
    shared->Send(eof);
  }).detach();

  grpc::ByteBuffer message;
  std::vector<grpc::Slice> slices;
  std::vector<iovec> output;
  bool have_exit = false;
  v1::ExecExit exit;
  bool stdout_ok = true, stderr_ok = true, sent_sigpipe = false;
  pid_t started_pid = 0;
  // Pinned as soon as it is named: only this process is ever signalled by
  // the dropped-session stop below, even if its pid is reused later.
  UniqueFd started_pidfd;
  while (stream->Read(&message)) {
    // A message that cannot be taken apart ends the stream, as the
    // generated API's Read does.
    if (!message.Dump(&slices).ok()) break;
    bool is_stderr = false;
    v1::ExecResponse response;  // stays empty for output taken apart here
    if (OutputOf(slices, &is_stderr, &output)) {
      // Output, by far the most messages: from gRPC's slices to the fd.
      if (is_stderr) {
        if (stderr_ok) stderr_ok = WriteFullyV(2, &output);
      } else {
        if (stdout_ok) stdout_ok = WriteFullyV(1, &output);
      }
    } else if (!ParseResponse(slices, &response)) {
      break;
    }
    switch (response.kind_case()) {
      case v1::ExecResponse::kStdout:
        if (stdout_ok) stdout_ok = WriteFully(1, response.stdout());
        break;
      case v1::ExecResponse::kStderr:
        if (stderr_ok) stderr_ok = WriteFully(2, response.stderr());
        break;
      case v1::ExecResponse::kStarted:
        TracePoint("started");
        started_pid = response.started().pid();
        // An operator's process (--instance) runs in a pid namespace of its
        // own: its pid names nothing here.
        if (options.instance_name.empty() && started_pid > 1) {
          started_pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, started_pid, 0)));
        }
        break;
      case v1::ExecResponse::kExit:
        TracePoint("exit_status");
        exit = response.exit();
        have_exit = true;
        break;
      default:
        break;
    }
    if (!stdout_ok && !sent_sigpipe) {
      // Whoever reads our stdout is gone: tell the process as a pipe would.
      sent_sigpipe = true;
      v1::ExecRequest request;
      request.mutable_signal()->set_signal(SIGPIPE);
      shared->Send(request);
    }
    if (have_exit) break;
  }
  // Half-close so the daemon ends the call; a writer blocked in Write holds
  // the lock, and then cancelling is as good (the exit status is here).
  if (shared->write_mu.try_lock_for(std::chrono::seconds(2))) {
    shared->finished = true;
    if (have_exit) stream->WritesDone();
    shared->write_mu.unlock();
  } else {
    context.TryCancel();
    std::lock_guard<std::timed_mutex> lock(shared->write_mu);
    shared->finished = true;
  }
  grpc::Status status = stream->Finish();
  TracePoint("finished");
  if (raw) RestoreTerminal();
  if (have_exit) {
    if (!exit.message().empty()) std::fprintf(stderr, "%s\n", exit.message().c_str());
    if (exit.status_case() == v1::ExecExit::kSignal) return 128 + exit.signal();
    return exit.exit_code();
  }
  if (options.outlive_daemon && started_pid > 0) {
    // The process is in our pid namespace (ExecStarted names it as we see
    // it), though no longer anyone's child we can wait for.
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, started_pid, 0)));
    if (pidfd) {
      std::fprintf(stderr,
                   "sc-exec: lost the mount-helper (%s: %s); %s (pid %d) keeps running without "
                   "its output stream; waiting for it to end\n",
                   CodeName(status.error_code()), status.error_message().c_str(),
                   options.argv[0].c_str(), started_pid);
      shared->detached = started_pid;
      pollfd exited{pidfd.get(), POLLIN, 0};
      while (poll(&exited, 1, -1) < 0 && errno == EINTR) {
      }
      std::fprintf(stderr, "sc-exec: pid %d ended; its exit status went with the stream\n",
                   started_pid);
      return kExitStreamBroken;
    }
  }
  if (!options.outlive_daemon && started_pidfd && PidfdAlive(started_pidfd.get())) {
    // The session is dropped (the daemon died or was restarted): nobody else
    // will stop the process, so do what the daemon does for a dropped
    // connection, and leave no orphan in the pod.
    std::fprintf(stderr,
                 "sc-exec: lost the mount-helper (%s: %s); stopping %s (pid %d) as a dropped "
                 "session: SIGHUP and SIGTERM, SIGKILL after %d s\n",
                 CodeName(status.error_code()), status.error_message().c_str(),
                 options.argv[0].c_str(), started_pid, kDroppedSessionGraceSeconds);
    shared->detached = started_pid;
    StopDroppedSession(started_pid, started_pidfd.get());
    return kExitStreamBroken;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "sc-exec: Exec refused: %s: %s\n", CodeName(status.error_code()),
                 status.error_message().c_str());
    return status.error_code() == grpc::StatusCode::UNAVAILABLE ? kExitUnreachable : kExitRefused;
  }
  std::fprintf(stderr, "sc-exec: the stream ended without an exit status\n");
  return kExitStreamBroken;
}

}  // namespace sc
