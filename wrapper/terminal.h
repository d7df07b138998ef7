#ifndef WRAPPER_TERMINAL_H_
#define WRAPPER_TERMINAL_H_

#include <sys/ioctl.h>

#include <string>

namespace sc {

// Puts the terminal on `fd` in raw mode, remembering how it was. Returns
// false (and changes nothing) when it is not a terminal.
bool EnterRawMode(int fd);

// Restores the terminal saved by EnterRawMode; idempotent, and safe to call
// from any exit path (it only calls tcsetattr).
void RestoreTerminal();

// The terminal state EnterRawMode saved, as text ("-" when it changed
// nothing), and the way back: a process that execs itself hands it on, so
// that the new image restores the terminal as it was.
std::string SavedTerminal();
void AdoptSavedTerminal(const std::string& saved);

// The size of the terminal on `fd`; false when it is not one.
bool TerminalSize(int fd, winsize* size);

}  // namespace sc

#endif  // WRAPPER_TERMINAL_H_
