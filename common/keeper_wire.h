#ifndef COMMON_KEEPER_WIRE_H_
#define COMMON_KEEPER_WIRE_H_

// The two pipes between sc-exec and a by-reference session's keeper (see
// StdioByReference in mounthelper.proto). Fixed-size records, smaller than
// PIPE_BUF, so that each write is atomic; both ends are on the same node and
// machine, so native byte order. The keeper treats every byte of the control
// pipe as hostile: unknown types are ignored, values are checked.

#include <cstdint>

namespace sc {

inline constexpr uint32_t kKeeperStatusMagic = 0x534b5331;  // "SKS1"

// sc-exec -> keeper.
struct KeeperControl {
  enum Type : uint32_t { kSignal = 1, kResize = 2 };
  uint32_t type = 0;
  int32_t signal = 0;  // kSignal: 1..64, sent to the process group
  uint16_t rows = 0, cols = 0, x_pixels = 0, y_pixels = 0;  // kResize (tty only)
};
static_assert(sizeof(KeeperControl) == 16, "one atomic pipe record");

// keeper -> sc-exec, once.
struct KeeperStatus {
  uint32_t magic = kKeeperStatusMagic;
  int32_t code = 0;     // waitid's si_code: CLD_EXITED, CLD_KILLED, CLD_DUMPED
  int32_t status = 0;   // the exit code, or the signal
  int32_t stopped = 0;  // 1: stopped because the caller went away
};
static_assert(sizeof(KeeperStatus) == 16, "one atomic pipe record");

}  // namespace sc

#endif  // COMMON_KEEPER_WIRE_H_
