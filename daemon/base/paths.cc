#include "daemon/base/paths.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/syscalls.h"

namespace sc {
namespace {

std::atomic<bool> force_walk{false};

// openat2 answers EAGAIN when a rename raced the lookup; a few retries make a
// spurious failure unlikely without looping forever under attack.
constexpr int kOpenat2Retries = 8;

absl::Status ResolveError(int err, absl::string_view rel) {
  std::string what = absl::StrCat("resolve \"", rel.substr(0, 256), "\"");
  switch (err) {
    case ELOOP:
      return absl::InvalidArgumentError(
          ErrnoMessage(err, absl::StrCat(what, ": a component is a symlink, which is refused")));
    case EXDEV:
      return absl::InvalidArgumentError(ErrnoMessage(
          err,
          absl::StrCat(what, ": it crosses a mount point or leaves its root, which is refused")));
    default:
      return ErrnoStatus(err, what);
  }
}

// Returns 0 and sets `out`, or an errno.
int WalkBeneath(int dir_fd, const std::vector<std::string>& parts, int flags, bool no_xdev,
                UniqueFd* out) {
  UniqueFd current(openat(dir_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!current) return errno;
  absl::StatusOr<int> start_mnt = MountIdOf(current.get());
  if (!start_mnt.ok()) return EOPNOTSUPP;
  UniqueFd parent;
  for (const std::string& part : parts) {
    UniqueFd next(openat(current.get(), part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return errno;
    struct stat st {};
    if (fstat(next.get(), &st) != 0) return errno;
    if (S_ISLNK(st.st_mode)) return ELOOP;
    if (no_xdev) {
      absl::StatusOr<int> mnt = MountIdOf(next.get());
      if (!mnt.ok()) return EOPNOTSUPP;
      if (*mnt != *start_mnt) return EXDEV;
    }
    parent = std::move(current);
    current = std::move(next);
  }
  if ((flags & O_DIRECTORY) != 0) {
    struct stat st {};
    if (fstat(current.get(), &st) != 0) return errno;
    if (!S_ISDIR(st.st_mode)) return ENOTDIR;
  }
  if ((flags & O_PATH) != 0) {
    *out = std::move(current);
    return 0;
  }
  // Reopen for real I/O (a "." reopen of an O_PATH fd never follows
  // anything), and check that it is still the object the walk found.
  UniqueFd fd(openat(current.get(), ".", (flags & ~O_NOFOLLOW) | O_CLOEXEC));
  if (!fd && parent && (errno == ENOTDIR)) {
    // Not a directory: open the last component from its parent.
    fd.reset(openat(parent.get(), parts.back().c_str(), flags | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!fd) return errno;
  struct stat a {
  }, b{};
  if (fstat(fd.get(), &a) != 0 || fstat(current.get(), &b) != 0) return errno;
  if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) return EAGAIN;
  *out = std::move(fd);
  return 0;
}

}  // namespace

absl::Status CheckRequestPath(absl::string_view path, bool absolute, absl::string_view what) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (path.size() >= PATH_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is longer than ", PATH_MAX, " bytes"));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, " contains a NUL byte"));
  }
  if (absolute && path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be an absolute path"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(what, " must not contain \"..\""));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> PathComponents(absl::string_view path) {
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    parts.emplace_back(part);
  }
  return parts;
}

bool PathLexicallyUnder(absl::string_view path, absl::string_view root) {
  std::vector<std::string> root_parts = PathComponents(root);
  std::vector<std::string> parts = PathComponents(path);
  return parts.size() >= root_parts.size() &&
         std::equal(root_parts.begin(), root_parts.end(), parts.begin());
}

void ForceOpenPathWalkForTesting(bool force) { force_walk = force; }

absl::StatusOr<UniqueFd> OpenBeneath(int dir_fd, absl::string_view rel, int flags, bool no_xdev) {
  if (absl::Status ok = CheckRequestPath(rel.empty() ? "." : rel, false, "path"); !ok.ok()) {
    return ok;
  }
  std::vector<std::string> parts = PathComponents(rel);
  std::string clean = parts.empty() ? "." : absl::StrJoin(parts, "/");
  if (!force_walk) {
    struct open_how how {};
    how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    if (no_xdev) how.resolve |= RESOLVE_NO_XDEV;
    for (int attempt = 0; attempt < kOpenat2Retries; ++attempt) {
      UniqueFd fd(Openat2(dir_fd, clean.c_str(), &how));
      if (fd) {
        // O_PATH|O_NOFOLLOW hands out a trailing symlink itself.
        struct stat st {};
        if (fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "fstat");
        if (S_ISLNK(st.st_mode)) return ResolveError(ELOOP, rel);
        return fd;
      }
      if (errno == EAGAIN || errno == EINTR) continue;
      if (errno == ENOSYS) break;  // kernel < 5.6: walk instead
      if (errno == ENOTDIR && (flags & O_DIRECTORY) != 0) {
        // O_DIRECTORY|O_NOFOLLOW answers ENOTDIR for a trailing symlink: say
        // that it is a symlink, not that the directory a person sees is not one.
        struct open_how plain {};
        plain.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
        plain.resolve = how.resolve;
        UniqueFd leaf(Openat2(dir_fd, clean.c_str(), &plain));
        struct stat st {};
        if (leaf && fstat(leaf.get(), &st) == 0 && S_ISLNK(st.st_mode)) {
          return ResolveError(ELOOP, rel);
        }
        errno = ENOTDIR;
      }
      return ResolveError(errno, rel);
    }
    if (errno != ENOSYS) return ResolveError(errno, rel);
  }
  int err = EAGAIN;
  for (int attempt = 0; attempt < kOpenat2Retries && err == EAGAIN; ++attempt) {
    UniqueFd fd;
    err = WalkBeneath(dir_fd, parts, flags, no_xdev, &fd);
    if (err == 0) return fd;
  }
  return ResolveError(err, rel);
}

absl::StatusOr<UniqueFd> OpenUnderRoots(const std::vector<std::string>& roots,
                                        absl::string_view path, int flags) {
  if (absl::Status ok = CheckRequestPath(path, true, "path"); !ok.ok()) return ok;
  for (const std::string& root : roots) {
    if (!PathLexicallyUnder(path, root)) continue;
    std::vector<std::string> root_parts = PathComponents(root);
    std::vector<std::string> parts = PathComponents(path);
    UniqueFd root_fd(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root_fd) return ErrnoStatus(errno, absl::StrCat("open allow-listed root ", root));
    std::vector<std::string> rest(parts.begin() + static_cast<long>(root_parts.size()),
                                  parts.end());
    return OpenBeneath(root_fd.get(), absl::StrJoin(rest, "/"), flags);
  }
  return absl::PermissionDeniedError(
      absl::StrCat("\"", path.substr(0, 256), "\" is not inside an allow-listed root (",
                   roots.empty() ? "none configured" : absl::StrJoin(roots, ", "), ")"));
}

absl::StatusOr<UniqueFd> MakeDirBeneath(int dir_fd, absl::string_view name, mode_t mode) {
  std::string n(name);
  if (mkdirat(dir_fd, n.c_str(), mode) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("mkdir ", n));
  }
  return OpenBeneath(dir_fd, n, O_PATH | O_DIRECTORY);
}

std::string FdPath(int fd) { return absl::StrCat("/proc/self/fd/", fd); }

absl::StatusOr<std::string> FdTarget(int fd) {
  char buf[PATH_MAX + 1];
  ssize_t n = readlink(FdPath(fd).c_str(), buf, PATH_MAX);
  if (n < 0) return ErrnoStatus(errno, "readlink " + FdPath(fd));
  return std::string(buf, static_cast<size_t>(n));
}

absl::StatusOr<int> MountIdOf(int fd) {
  struct statx stx {};
  if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) != 0) {
    return ErrnoStatus(errno, "statx(STATX_MNT_ID)");
  }
  if ((stx.stx_mask & STATX_MNT_ID) == 0) {
    return absl::FailedPreconditionError("the kernel does not report mount ids (STATX_MNT_ID)");
  }
  return static_cast<int>(stx.stx_mnt_id);
}

}  // namespace sc
