#include "daemon/exec/session_binary.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "common/unique_fd.h"
#include "daemon/base/fs_util.h"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

// The binary's bytes, placed by the assembler (the build passes its path).
asm(".section .rodata\n"
    ".balign 16\n"
    ".global sc_session_binary_start\n"
    "sc_session_binary_start:\n"
    ".incbin \"" SC_SESSION_BINARY_PATH
    "\"\n"
    ".global sc_session_binary_end\n"
    "sc_session_binary_end:\n"
    ".previous\n");
extern "C" const char sc_session_binary_start[];
extern "C" const char sc_session_binary_end[];

namespace sc {
namespace {

absl::StatusOr<int> MakeSessionBinaryFd() {
  // MFD_EXEC (Linux 6.3) says it is meant to be executed, which a node with
  // vm.memfd_noexec=1 requires; older kernels refuse the flag.
  UniqueFd fd(memfd_create("sc-session", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC));
  if (!fd && errno == EINVAL) fd.reset(memfd_create("sc-session", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return ErrnoStatus(errno, "memfd_create (the session binary)");
  const char* data = sc_session_binary_start;
  size_t left = static_cast<size_t>(sc_session_binary_end - sc_session_binary_start);
  while (left > 0) {
    ssize_t n = write(fd.get(), data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus(errno, "write the session binary into its memfd");
    data += n;
    left -= static_cast<size_t>(n);
  }
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    return ErrnoStatus(errno, "seal the session binary's memfd");
  }
  return fd.release();
}

}  // namespace

absl::StatusOr<int> SessionBinaryFd() {
  static std::mutex mu;
  static int made = -1;
  std::lock_guard<std::mutex> lock(mu);
  if (made >= 0) return made;
  absl::StatusOr<int> fd = MakeSessionBinaryFd();
  if (!fd.ok()) return fd.status();
  made = *fd;
  return made;
}

}  // namespace sc
