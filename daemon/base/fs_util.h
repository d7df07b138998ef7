#ifndef DAEMON_BASE_FS_UTIL_H_
#define DAEMON_BASE_FS_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sc {

// "what: strerror (ENAME)" — errno kept in every message.
std::string ErrnoMessage(int err, absl::string_view what);

// Maps an errno to the status code that fits it (ENOENT -> NOT_FOUND,
// EACCES/EPERM -> PERMISSION_DENIED, ...), with ErrnoMessage as the message.
absl::Status ErrnoStatus(int err, absl::string_view what);

// Reads a whole (small) file relative to a directory fd, at most `max_bytes`:
// larger is an error, never a silent truncation.
absl::StatusOr<std::string> ReadFileAt(int dir_fd, const char* name, size_t max_bytes);

}  // namespace sc

#endif  // DAEMON_BASE_FS_UTIL_H_
