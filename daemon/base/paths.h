#ifndef DAEMON_BASE_PATHS_H_
#define DAEMON_BASE_PATHS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"

namespace sc {

// Checks a path taken from a request before it is used: not empty, at most
// PATH_MAX bytes, no NUL, no ".." component, absolute when `absolute`.
// INVALID_ARGUMENT naming `what` otherwise.
absl::Status CheckRequestPath(absl::string_view path, bool absolute, absl::string_view what);

// The components of a path, without empty and "." ones.
std::vector<std::string> PathComponents(absl::string_view path);

// Whether `path` lies lexically at or below `root`, component by component
// (PathComponents): what OpenUnderRoots requires before it opens anything.
bool PathLexicallyUnder(absl::string_view path, absl::string_view root);

// Opens `rel` beneath `dir_fd` without following any symlink (also not in the
// last component, also no magic link) and without leaving `dir_fd`:
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS),
// falling back to a component-by-component O_PATH|O_NOFOLLOW walk when the
// kernel has no openat2. With `no_xdev` no mount point may be crossed either.
// An empty `rel` reopens `dir_fd` itself. A symlink on the way is
// INVALID_ARGUMENT; a missing component NOT_FOUND.
absl::StatusOr<UniqueFd> OpenBeneath(int dir_fd, absl::string_view rel, int flags,
                                     bool no_xdev = false);

// Makes OpenBeneath use the O_PATH walk even where openat2 exists (tests).
void ForceOpenPathWalkForTesting(bool force);

// Opens the absolute `path`, which must lie lexically inside one of `roots`,
// beneath that root with OpenBeneath. The root itself is opened normally (it
// comes from the daemon's flags). PERMISSION_DENIED when no root holds it.
absl::StatusOr<UniqueFd> OpenUnderRoots(const std::vector<std::string>& roots,
                                        absl::string_view path, int flags);

// mkdirat(dir_fd, name) unless it exists, then OpenBeneath(name, O_PATH |
// O_DIRECTORY): an existing symlink or non-directory is refused.
absl::StatusOr<UniqueFd> MakeDirBeneath(int dir_fd, absl::string_view name, mode_t mode);

// "/proc/self/fd/N": names exactly the object an fd holds, for interfaces
// that take a path.
std::string FdPath(int fd);

// Where an fd points, as the kernel prints it (readlink of FdPath).
absl::StatusOr<std::string> FdTarget(int fd);

// The kernel's mount id of the mount an fd lies on (statx STATX_MNT_ID).
absl::StatusOr<int> MountIdOf(int fd);

}  // namespace sc

#endif  // DAEMON_BASE_PATHS_H_
