#include "session/keeper.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/keeper_wire.h"
#include "daemon/base/syscalls.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace sc {
namespace {

constexpr size_t kRelayChunk = 64 * 1024;

long long NowMs() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<long long>(t.tv_sec) * 1000 + t.tv_nsec / 1000000;
}

// Only CAP_KILL stays: the workload may run as any uid of the pod.
void DropToCapKill() {
  for (int cap = 0; cap < 64; ++cap) {
    if (cap == CAP_KILL) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL) break;
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  data[0].effective = data[0].permitted = 1u << CAP_KILL;
  syscall(SYS_capset, &header, data);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

// Writes all of data to a blocking fd; false when it is gone.
bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

class Keeper {
 public:
  Keeper(pid_t group, int grace_ms, bool tty) : group_(group), grace_ms_(grace_ms), tty_(tty) {}

  [[noreturn]] void Run() {
    if (tty_) {
      // Only the master is ours to make non-blocking: the caller's stdin
      // and stdout are open file descriptions it shares.
      int flags = fcntl(kKeeperMasterFd, F_GETFL);
      if (flags >= 0) fcntl(kKeeperMasterFd, F_SETFL, flags | O_NONBLOCK);
    }
    while (!(exited_ && drained())) {
      if (stopping_ && !killed_ && NowMs() >= kill_at_) {
        killed_ = true;
        Signal(SIGKILL);
      }
      pollfd fds[5];
      int n = 0;
      int i_pid = -1, i_control = -1, i_status = -1, i_master = -1, i_in = -1;
      if (!exited_) {
        i_pid = n;
        fds[n++] = {kKeeperWorkloadFd, POLLIN, 0};
      }
      if (!control_closed_) {
        i_control = n;
        fds[n++] = {kKeeperControlFd, POLLIN, 0};
      }
      if (!stopping_) {
        // No events asked: POLLERR tells that the caller closed its end.
        i_status = n;
        fds[n++] = {kKeeperStatusFd, 0, 0};
      }
      if (tty_ && !master_done_) {
        i_master = n;
        short events = pending_.empty() ? POLLIN : POLLIN | POLLOUT;
        fds[n++] = {kKeeperMasterFd, events, 0};
      }
      if (tty_ && !stdin_done_ && pending_.empty() && !exited_) {
        i_in = n;
        fds[n++] = {kKeeperRelayInFd, POLLIN, 0};
      }
      int timeout = -1;
      if (stopping_ && !killed_) timeout = static_cast<int>(std::max(0LL, kill_at_ - NowMs()) + 1);
      // A stopped session's terminal may be held open by what left the
      // group: once the leader is reaped, a moment for the rest of the
      // output, then nobody waits for it.
      if (exited_ && stopping_) timeout = 100;
      int rc = poll(fds, n, timeout);
      if (rc < 0 && errno != EINTR) break;
      if (rc <= 0) {
        if (exited_ && stopping_) break;
        continue;
      }
      if (i_control >= 0 && fds[i_control].revents != 0) ReadControl();
      if (i_status >= 0 && (fds[i_status].revents & (POLLERR | POLLHUP))) CallerGone();
      if (i_in >= 0 && fds[i_in].revents != 0) ReadStdin();
      if (i_master >= 0 && fds[i_master].revents != 0) {
        if (fds[i_master].revents & POLLOUT) FlushToMaster();
        if (fds[i_master].revents & (POLLIN | POLLHUP | POLLERR)) ReadMaster();
      }
      if (i_pid >= 0 && (fds[i_pid].revents & POLLIN)) Reap();
    }
    if (!exited_) Reap();
    KeeperStatus status;
    status.code = code_;
    status.status = status_;
    status.stopped = stopping_ ? 1 : 0;
    WriteAll(kKeeperStatusFd, reinterpret_cast<const char*>(&status), sizeof(status));
    _exit(0);
  }

 private:
  bool drained() const { return !tty_ || master_done_; }

  void Signal(int sig) {
    // The group exists while its leader is unreaped (or anyone of it
    // lives); the leader is our child, so its pid is not reused before.
    if (kill(-group_, sig) != 0 && !exited_) {
      PidfdSendSignal(kKeeperWorkloadFd, sig, nullptr, 0);
    }
  }

  void CallerGone() {
    if (stopping_) return;
    stopping_ = true;
    control_closed_ = true;
    for (int sig : {SIGHUP, SIGCONT, SIGTERM}) Signal(sig);
    kill_at_ = NowMs() + grace_ms_;
  }

  void ReadControl() {
    char buffer[sizeof(KeeperControl) * 16];
    ssize_t n = read(kKeeperControlFd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) return;
    if (n <= 0) {
      CallerGone();
      return;
    }
    // Records may arrive split by a hostile writer: keep the partial one.
    for (ssize_t i = 0; i < n; ++i) {
      partial_[partial_size_++] = buffer[i];
      if (partial_size_ < sizeof(KeeperControl)) continue;
      partial_size_ = 0;
      KeeperControl record;
      std::memcpy(&record, partial_, sizeof(record));
      Apply(record);
    }
  }

  void Apply(const KeeperControl& record) {
    if (record.type == KeeperControl::kSignal) {
      if (record.signal >= 1 && record.signal <= 64 && !exited_) Signal(record.signal);
    } else if (record.type == KeeperControl::kResize && tty_) {
      winsize size{};
      size.ws_row = record.rows;
      size.ws_col = record.cols;
      size.ws_xpixel = record.x_pixels;
      size.ws_ypixel = record.y_pixels;
      ioctl(kKeeperMasterFd, TIOCSWINSZ, &size);
    }
  }

  void ReadStdin() {
    char buffer[kRelayChunk];
    ssize_t n = read(kKeeperRelayInFd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) return;
    if (n <= 0) {
      // A terminal has no half-close: EOF is the VEOF character, as a
      // person would type it.
      stdin_done_ = true;
      termios t{};
      char eof = tcgetattr(kKeeperMasterFd, &t) == 0 ? static_cast<char>(t.c_cc[VEOF]) : '\x04';
      pending_.assign(&eof, 1);
    } else {
      pending_.assign(buffer, static_cast<size_t>(n));
    }
    FlushToMaster();
  }

  void FlushToMaster() {
    while (!pending_.empty()) {
      ssize_t n = write(kKeeperMasterFd, pending_.data(), pending_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        pending_.clear();
        stdin_done_ = true;
        return;
      }
      pending_.consume(static_cast<size_t>(n));
    }
  }

  void ReadMaster() {
    char buffer[kRelayChunk];
    while (true) {
      ssize_t n = read(kKeeperMasterFd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        // EIO: every holder of the slave is gone, all output is here.
        master_done_ = true;
        return;
      }
      if (!stdout_gone_ && !WriteAll(kKeeperRelayOutFd, buffer, static_cast<size_t>(n))) {
        stdout_gone_ = true;
      }
    }
  }

  void Reap() {
    siginfo_t info{};
    while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(kKeeperWorkloadFd), &info,
                  WEXITED) != 0) {
      if (errno != EINTR) {
        code_ = CLD_KILLED;
        status_ = SIGKILL;
        exited_ = true;
        return;
      }
    }
    code_ = info.si_code;
    status_ = info.si_status;
    exited_ = true;
    // A session stopped for its caller leaves nothing of its group behind.
    if (stopping_) kill(-group_, SIGKILL);
  }

  // Input read from the caller that the master has not taken yet.
  class Pending {
   public:
    bool empty() const { return size_ == 0; }
    const char* data() const { return data_; }
    size_t size() const { return size_; }
    void assign(const char* d, size_t n) {
      std::memcpy(data_, d, n);
      size_ = n;
    }
    void consume(size_t n) {
      std::memmove(data_, data_ + n, size_ - n);
      size_ -= n;
    }
    void clear() { size_ = 0; }

   private:
    char data_[kRelayChunk];
    size_t size_ = 0;
  };

  pid_t group_;
  int grace_ms_;
  bool tty_;
  bool exited_ = false;
  bool stopping_ = false;
  bool killed_ = false;
  bool control_closed_ = false;
  bool master_done_ = false;
  bool stdin_done_ = false;
  bool stdout_gone_ = false;
  long long kill_at_ = 0;
  int code_ = 0;
  int status_ = 0;
  char partial_[sizeof(KeeperControl)] = {};
  size_t partial_size_ = 0;
  Pending pending_;
};

}  // namespace

void KeeperMain(int argc, char** argv) {
  // Not dumpable (execve made it so again): nothing in the pod may read this
  // process's memory or open its /proc entries.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // The launch blocked every signal; SIGPIPE stays blocked, so a write to a
  // caller that is gone fails with EPIPE instead.
  if (argc < 4) _exit(2);
  pid_t group = static_cast<pid_t>(std::atol(argv[1]));
  int grace_ms = std::atoi(argv[2]);
  bool tty = std::strcmp(argv[3], "tty") == 0;
  if (group <= 1) _exit(2);
  syscall(SYS_close_range, static_cast<unsigned>(tty ? kKeeperFdCount : kKeeperMasterFd), ~0u, 0u);
  DropToCapKill();
  static Keeper keeper(group, grace_ms, tty);
  keeper.Run();
}

}  // namespace sc
