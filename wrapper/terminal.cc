#include "wrapper/terminal.h"

#include <termios.h>
#include <unistd.h>

#include <atomic>

namespace sc {
namespace {

termios g_saved;
int g_fd = -1;
std::atomic<bool> g_raw{false};

}  // namespace

bool EnterRawMode(int fd) {
  termios t{};
  if (tcgetattr(fd, &t) != 0) return false;
  g_saved = t;
  g_fd = fd;
  cfmakeraw(&t);
  if (tcsetattr(fd, TCSANOW, &t) != 0) return false;
  g_raw = true;
  return true;
}

void RestoreTerminal() {
  if (g_raw.exchange(false)) tcsetattr(g_fd, TCSAFLUSH, &g_saved);
}

bool TerminalSize(int fd, winsize* size) {
  return ioctl(fd, TIOCGWINSZ, size) == 0 && size->ws_row > 0 && size->ws_col > 0;
}

}  // namespace sc
