#include "wrapper/terminal.h"

#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

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

std::string SavedTerminal() {
  if (!g_raw) return "-";
  std::string out = std::to_string(g_fd) + ":";
  const auto* bytes = reinterpret_cast<const unsigned char*>(&g_saved);
  static const char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < sizeof(g_saved); ++i) {
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 15];
  }
  return out;
}

void AdoptSavedTerminal(const std::string& saved) {
  size_t colon = saved.find(':');
  if (colon == std::string::npos || saved.size() - colon - 1 != 2 * sizeof(termios)) return;
  termios t{};
  auto* bytes = reinterpret_cast<unsigned char*>(&t);
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i < sizeof(t); ++i) {
    bytes[i] = static_cast<unsigned char>(nibble(saved[colon + 1 + 2 * i]) << 4 |
                                          nibble(saved[colon + 2 + 2 * i]));
  }
  g_saved = t;
  g_fd = std::atoi(saved.substr(0, colon).c_str());
  g_raw = true;
}

bool TerminalSize(int fd, winsize* size) {
  return ioctl(fd, TIOCGWINSZ, size) == 0 && size->ws_row > 0 && size->ws_col > 0;
}

}  // namespace sc
