#include "daemon/edge/stream_session.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <string>
#include <thread>
#include <vector>

#include "daemon/base/fs_util.h"
#include "daemon/base/syscalls.h"
#include "daemon/exec/exec_session.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace sc {
namespace {

// Output goes out in messages of up to kOutputChunk: whatever the process
// has written when the pump wakes up, read in one go. Per-message costs (two
// thread hand-offs in gRPC's sync API, an HTTP/2 frame header, a wake-up of
// the client) then stay small against the copying; with 32 KiB messages
// they were most of the daemon's CPU time. The process's pipes are made as
// large: one read finds a full message while the previous one is being sent,
// and a 1 MiB stdin message goes in with one write.
constexpr size_t kOutputChunk = 1 << 20;
// What all sessions together may hold in output being read and sent: with
// many sessions at once each reads at most its share (not below
// kCopyBelow), so 256 busy sessions read 128 KiB each, not 1 MiB.
constexpr size_t kOutputBudget = 32 << 20;
constexpr int kPipeSize = 1 << 20;
// Output smaller than this is copied into a message of its own size.
constexpr size_t kCopyBelow = 64 * 1024;
// After the exit message, how long a client gets to half-close before the
// call is cancelled from our side (sc-exec half-closes at once).
constexpr auto kClientCloseWait = std::chrono::seconds(5);

// After EAGAIN on `fd`: waits until it takes more (0), `stop_fd` becomes
// readable (ECANCELED) or the reader is gone (EPIPE).
int WaitForRoom(int fd, int stop_fd) {
  pollfd pfds[2] = {{fd, POLLOUT, 0}, {stop_fd, POLLIN, 0}};
  if (poll(pfds, 2, -1) < 0 && errno != EINTR) return errno;
  if (pfds[1].revents & POLLIN) return ECANCELED;
  if (pfds[0].revents & (POLLERR | POLLHUP)) return EPIPE;
  return 0;
}

// Writes all of `data` to a non-blocking fd, waiting for room; gives up when
// `stop_fd` becomes readable. Returns errno (0 on success, ECANCELED on stop).
int WriteAll(int fd, absl::string_view data, int stop_fd) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return errno;
    if (int err = WaitForRoom(fd, stop_fd); err != 0) return err;
  }
  return 0;
}

size_t SlicesSize(const std::vector<grpc::Slice>& slices) {
  size_t size = 0;
  for (const grpc::Slice& s : slices) size += s.size();
  return size;
}

// WriteAll for the pieces of a message as gRPC delivered them (writev).
int WriteAllSlices(int fd, std::vector<grpc::Slice>* slices, int stop_fd) {
  std::vector<iovec> iov;
  for (const grpc::Slice& s : *slices) {
    if (s.size() > 0) iov.push_back({const_cast<uint8_t*>(s.begin()), s.size()});
  }
  size_t first = 0;
  while (first < iov.size()) {
    int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = writev(fd, iov.data() + first, count);
    if (n > 0) {
      size_t done = static_cast<size_t>(n);
      while (first < iov.size() && done >= iov[first].iov_len) {
        done -= iov[first].iov_len;
        ++first;
      }
      if (done > 0) {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + done;
        iov[first].iov_len -= done;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return errno;
    if (int err = WaitForRoom(fd, stop_fd); err != 0) return err;
  }
  return 0;
}

void Notify(int eventfd_fd) {
  uint64_t one = 1;
  ssize_t n = write(eventfd_fd, &one, sizeof(one));
  (void)n;
}

absl::StatusOr<Pipe> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

absl::Status SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, "fcntl(O_NONBLOCK)");
  }
  return absl::OkStatus();
}

// Counts the sessions pumping output, for their share of kOutputBudget.
class ActivePumps {
 public:
  ActivePumps() { active_.fetch_add(1); }
  ~ActivePumps() { active_.fetch_sub(1); }
  size_t count() const { return static_cast<size_t>(std::max(1, active_.load())); }

 private:
  static std::atomic<int> active_;
};
std::atomic<int> ActivePumps::active_{0};

// What the reader thread and the pump of a streaming session share.
struct Session {
  Session(grpc::ServerContext* context, ExecStream* stream, Workload* workload, bool tty,
          int tty_fd)
      : context(context), stream(stream), workload(workload), tty(tty), tty_fd(tty_fd) {}
  grpc::ServerContext* const context;
  ExecStream* const stream;
  Workload* const workload;
  const bool tty;
  const int tty_fd;  // the terminal's master, with a tty
  UniqueFd pump_wake;
  UniqueFd reader_stop;
  std::atomic<bool> client_gone{false};  // cancelled or disconnected
  std::atomic<bool> reader_done{false};
  absl::Status protocol_error;  // written by the reader before protocol_failed
  std::atomic<bool> protocol_failed{false};
};

// The reader thread: applies each client message (stdin, its EOF, resize,
// signals) until the stream ends or breaks the protocol.
void ReadClient(Session* session, UniqueFd* stdin_write) {
  Session& s = *session;
  ExecInput input(s.tty);
  UniqueFd stdin_fd = std::move(*stdin_write);
  bool stdin_dead = false;  // the process closed its stdin: discard
  v1::ExecRequest request;
  auto close_stdin = [&] {
    if (s.tty) {
      // A terminal has no half-close: EOF is the VEOF character at the
      // start of a line, as a person would type it.
      termios t{};
      char eof = tcgetattr(s.tty_fd, &t) == 0 ? static_cast<char>(t.c_cc[VEOF]) : '\x04';
      WriteAll(s.tty_fd, absl::string_view(&eof, 1), s.reader_stop.get());
    } else {
      stdin_fd.reset();
    }
  };
  std::vector<grpc::Slice> stdin_data;  // a stdin message, as it arrived
  while (true) {
    ExecStream::Got got = s.stream->ReadInput(&request, &stdin_data);
    if (got == ExecStream::Got::kEnd) {
      // Garbage is a protocol error, not a half-close.
      if (s.stream->malformed()) {
        s.protocol_error = absl::InvalidArgumentError(kMalformedExecRequest);
        s.protocol_failed = true;
        Notify(s.pump_wake.get());
      }
      break;
    }
    absl::StatusOr<ExecInput::Action> action = got == ExecStream::Got::kStdin
                                                   ? input.OnStdin(SlicesSize(stdin_data))
                                                   : input.OnMessage(&request);
    if (!action.ok()) {
      s.protocol_error = action.status();
      s.protocol_failed = true;
      Notify(s.pump_wake.get());
      break;
    }
    switch (action->kind) {
      case ExecInput::Kind::kStdin: {
        if (stdin_dead) break;
        int target = s.tty ? s.tty_fd : stdin_fd.get();
        int rc = got == ExecStream::Got::kStdin
                     ? WriteAllSlices(target, &stdin_data, s.reader_stop.get())
                     : WriteAll(target, action->data, s.reader_stop.get());
        if (rc != 0) stdin_dead = true;
        break;
      }
      case ExecInput::Kind::kStdinEof:
        close_stdin();
        break;
      case ExecInput::Kind::kResize:
        ioctl(s.tty_fd, TIOCSWINSZ, &action->size);
        break;
      case ExecInput::Kind::kSignal:
        s.workload->SignalGroup(action->signal);
        break;
      case ExecInput::Kind::kNone:
        break;
    }
  }
  if (s.protocol_error.ok()) {
    if (s.context->IsCancelled()) {
      s.client_gone = true;
    } else if (input.OnHalfClose().kind == ExecInput::Kind::kStdinEof) {
      close_stdin();
    }
  }
  s.reader_done = true;
  Notify(s.pump_wake.get());
}

// The pump, on the handler's thread: sends what the process writes, notices
// its exit, and stops it (SIGHUP, SIGCONT, SIGTERM, SIGKILL after the grace)
// once the client is gone or broke the protocol.
class Pump {
 public:
  Pump(Session* session, int out_fd, int err_fd, absl::Duration kill_grace)
      : s_(*session),
        output_(session->tty),
        out_fd_(out_fd),
        err_fd_(err_fd),
        kill_grace_(kill_grace) {}

  // Until the process has exited and its output is drained, or, once
  // stopping, has exited.
  void Run();

  const ExecOutput& output() const { return output_; }
  bool discarding() const { return discard_; }
  // Why the session was stopped, "" when it was not.
  const std::string& stop_reason() const { return stop_reason_; }
  bool stopping() const { return stopping_; }

 private:
  void StopIfUnwanted();
  bool ReadIntoStream(int fd, bool is_stderr);

  Session& s_;
  ExecOutput output_;
  int out_fd_;
  int err_fd_;
  const absl::Duration kill_grace_;
  bool discard_ = false;  // nobody to send to any more
  bool stopping_ = false;
  std::string stop_reason_;
  std::chrono::steady_clock::time_point kill_at_{};
  bool killed_ = false;
  // The slice output is read into. A large read leaves in it as it is (gRPC
  // holds it until sent; the next read gets a new one), a small one is copied
  // out and the slice reused: a keystroke's echo does not pin 1 MiB.
  grpc::Slice buffer_;
  ActivePumps pumps_;
};

// Once the client is gone or broke the protocol: the process group is told
// to stop, and killed after the grace.
void Pump::StopIfUnwanted() {
  if (!s_.client_gone && s_.context->IsCancelled()) s_.client_gone = true;
  if ((s_.client_gone || s_.protocol_failed) && !stopping_) {
    stopping_ = true;
    discard_ = true;
    stop_reason_ = s_.client_gone ? "the client went away" : "protocol error";
    Notify(s_.reader_stop.get());
    s_.workload->SignalGroup(SIGHUP);
    s_.workload->SignalGroup(SIGCONT);
    s_.workload->SignalGroup(SIGTERM);
    kill_at_ = std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(kill_grace_);
  }
}

// Reads what the process has written, up to a chunk, and sends it as one
// message; false once the fd is at EOF (EIO: a pty whose slave side is
// gone), after sending what came before it.
bool Pump::ReadIntoStream(int fd, bool is_stderr) {
  size_t chunk = std::clamp(kOutputBudget / pumps_.count(), kCopyBelow, kOutputChunk);
  if (buffer_.size() < chunk) buffer_ = grpc::Slice(chunk);
  uint8_t* data = const_cast<uint8_t*>(buffer_.begin());
  size_t got = 0;
  bool eof = false;
  while (got < chunk) {
    ssize_t n = read(fd, data + got, chunk - got);
    if (n > 0) {
      got += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    eof = n == 0 || errno != EAGAIN;
    break;
  }
  if (got == 0 || discard_) return !eof;
  grpc::Slice message;
  if (got >= kCopyBelow) {
    message = buffer_.sub(0, got);
    buffer_ = grpc::Slice();
  } else {
    message = grpc::Slice(data, got);
  }
  // Blocks while the client's flow-control window is closed: this is what
  // keeps the process from producing faster than the client consumes.
  if (!s_.stream->WriteOutput(is_stderr, std::move(message))) {
    discard_ = true;
    s_.client_gone = true;
  }
  return !eof;
}

void Pump::Run() {
  while (!output_.Done()) {
    StopIfUnwanted();
    // Cancelled and reaped: whoever still holds the pipes (a process that
    // left the group) gets no more waiting.
    if (stopping_ && output_.exited()) break;
    // Wakes up at least once a second to notice a cancelled call even when
    // neither the process nor the client does anything.
    int timeout = 1000;
    if (stopping_ && !killed_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          kill_at_ - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        killed_ = true;
        s_.workload->SignalGroup(SIGKILL);
        continue;
      }
      timeout = std::min<int>(timeout, static_cast<int>(left.count()) + 1);
    }
    pollfd pfds[4];
    int n = 0;
    int i_out = -1, i_err = -1, i_pid = -1;
    if (out_fd_ >= 0) {
      i_out = n;
      pfds[n++] = {out_fd_, POLLIN, 0};
    }
    if (err_fd_ >= 0) {
      i_err = n;
      pfds[n++] = {err_fd_, POLLIN, 0};
    }
    if (!output_.exited()) {
      i_pid = n;
      pfds[n++] = {s_.workload->pidfd(), POLLIN, 0};
    }
    int i_wake = n;
    pfds[n++] = {s_.pump_wake.get(), POLLIN, 0};
    int rc = poll(pfds, n, timeout);
    if (rc < 0 && errno != EINTR) break;
    if (rc <= 0) continue;
    if (pfds[i_wake].revents & POLLIN) {
      uint64_t v;
      ssize_t r = read(s_.pump_wake.get(), &v, sizeof(v));
      (void)r;
    }
    if (i_out >= 0 && pfds[i_out].revents != 0 && !ReadIntoStream(out_fd_, false)) {
      output_.OnStdoutEof();
      out_fd_ = -1;
    }
    if (i_err >= 0 && pfds[i_err].revents != 0 && !ReadIntoStream(err_fd_, true)) {
      output_.OnStderrEof();
      err_fd_ = -1;
    }
    if (i_pid >= 0 && (pfds[i_pid].revents & POLLIN)) {
      siginfo_t info;
      if (s_.workload->Reap(stopping_, &info)) output_.OnExit(info.si_code, info.si_status);
    }
  }
}

// Stops the stdin writer, then gives the client a moment to half-close;
// cancels the call when it does not.
void AwaitClientClose(Session* s) {
  Notify(s->reader_stop.get());
  pollfd pfd{s->pump_wake.get(), POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + kClientCloseWait;
  while (!s->reader_done) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    poll(&pfd, 1, static_cast<int>(left.count()));
    uint64_t v;
    ssize_t r = read(s->pump_wake.get(), &v, sizeof(v));
    (void)r;
  }
  if (!s->reader_done) s->context->TryCancel();
}

}  // namespace

absl::Status OpenSessionPipes(SessionStdio* stdio) {
  for (Pipe* p : {&stdio->in, &stdio->out, &stdio->err}) {
    absl::StatusOr<Pipe> made = MakePipe();
    if (!made.ok()) return made.status();
    *p = *std::move(made);
  }
  for (int fd : {stdio->in.write.get(), stdio->out.read.get(), stdio->err.read.get()}) {
    if (absl::Status s = SetNonBlocking(fd); !s.ok()) return s;
  }
  // Best effort: pipe-max-size or the per-user pipe limits may refuse it,
  // and the default size works, only slower.
  for (int fd : {stdio->in.write.get(), stdio->out.read.get(), stdio->err.read.get()}) {
    fcntl(fd, F_SETPIPE_SZ, kPipeSize);
  }
  return absl::OkStatus();
}

void Workload::SignalGroup(int sig) {
  std::lock_guard<std::mutex> lock(mu_);
  if (reaped_) return;
  if (kill(-pid_, sig) != 0) PidfdSendSignal(pidfd_.get(), sig, nullptr, 0);
}

bool Workload::Reap(bool kill_group, siginfo_t* info) {
  std::lock_guard<std::mutex> lock(mu_);
  if (reaped_) return true;
  if (kill_group) kill(-pid_, SIGKILL);
  *info = {};
  if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), info,
             WEXITED | WNOHANG) != 0) {
    return false;
  }
  if (info->si_pid == 0) return false;  // not yet
  reaped_ = true;
  // An operator's exec: its pid namespace ends with its command, and with
  // it whatever the command left there holding the output open.
  init_.Stop();
  return true;
}

void Workload::KillAndReap() {
  siginfo_t info;
  SignalGroup(SIGKILL);
  PidfdSendSignal(pidfd_.get(), SIGKILL, nullptr, 0);
  pollfd pfd{pidfd_.get(), POLLIN, 0};
  poll(&pfd, 1, 10000);
  Reap(true, &info);
}

bool Workload::reaped() {
  std::lock_guard<std::mutex> lock(mu_);
  return reaped_;
}

absl::Status RelaySession(grpc::ServerContext* context, absl::Duration kill_grace,
                          Workload* workload, SessionStdio* stdio, ExecStream* stream,
                          AuditDetails* details) {
  bool tty = stdio->tty;
  Session session(context, stream, workload, tty, stdio->pty.master.get());
  session.pump_wake.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  session.reader_stop.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!session.pump_wake || !session.reader_stop) {
    workload->KillAndReap();
    return ErrnoStatus(errno, "eventfd");
  }
  std::thread reader(ReadClient, &session, &stdio->in.write);
  Pump pump(&session, tty ? stdio->pty.master.get() : stdio->out.read.get(),
            tty ? -1 : stdio->err.read.get(), kill_grace);
  pump.Run();
  if (!workload->reaped()) workload->KillAndReap();

  if (!pump.discarding() && !session.protocol_failed) {
    v1::ExecResponse response;
    *response.mutable_exit() = pump.output().ExitMessage("");
    stream->Write(response);
  }
  AwaitClientClose(&session);
  reader.join();

  details->emplace_back("exit", pump.output().Describe());
  if (pump.stopping()) details->emplace_back("stopped", pump.stop_reason());
  if (!session.protocol_error.ok()) return session.protocol_error;
  if (session.client_gone) return absl::CancelledError("the client went away");
  return absl::OkStatus();
}

}  // namespace sc
