// An instance's data on disk once deleted: see instance_data.h.
#include "daemon/rootfs/instance_data.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/unique_fd.h"
#include "daemon/base/fs_util.h"

namespace sc {
namespace {

// Removes a directory tree without following symlinks or crossing into
// another mount (which would mean something is still mounted).
absl::Status RemoveTreeAt(int parent_fd, const std::string& name, dev_t dev, int depth) {
  if (depth > 4096) return absl::FailedPreconditionError("directory tree too deep to delete");
  struct stat st {};
  if (fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, absl::StrCat("stat ", name));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(parent_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, absl::StrCat("unlink ", name));
    }
    return absl::OkStatus();
  }
  if (st.st_dev != dev) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, " is on another filesystem (mounted?)"));
  }
  int fd = openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open ", name));
  // Overlayfs' work directory leaves mode-000 directories behind.
  fchmod(fd, 0700);
  std::unique_ptr<DIR, int (*)(DIR*)> dir(fdopendir(fd), closedir);
  if (!dir) {
    UniqueFd close_it(fd);
    return ErrnoStatus(errno, absl::StrCat("fdopendir ", name));
  }
  std::vector<std::string> children;
  while (struct dirent* ent = readdir(dir.get())) {
    std::string child = ent->d_name;
    if (child != "." && child != "..") children.push_back(child);
  }
  for (const std::string& child : children) {
    if (absl::Status s = RemoveTreeAt(dirfd(dir.get()), child, dev, depth + 1); !s.ok()) return s;
  }
  if (unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("rmdir ", name));
  }
  return absl::OkStatus();
}

}  // namespace

// An instance directory being deleted is first renamed to
// ".deleting-<name>-<random>" in its namespace directory: no instance name can
// start with a dot (DNS-1123 labels, CheckInstanceNames), so it is never taken for an instance.
std::string DoomedName(const std::string& name) {
  uint64_t random = 0;
  if (getrandom(&random, sizeof(random), 0) != sizeof(random)) {
    random = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  }
  return absl::StrCat(".deleting-", name, "-", absl::Hex(random, absl::kZeroPad16));
}

// Removes every tree DoomedName gave `name` in `ns_fd`.
absl::Status RemoveDoomedTrees(int ns_fd, const std::string& name, dev_t dev) {
  const std::string prefix = absl::StrCat(".deleting-", name, "-");
  UniqueFd dir_fd(openat(ns_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return ErrnoStatus(errno, "open the instance's namespace directory");
  std::unique_ptr<DIR, int (*)(DIR*)> dir(fdopendir(dir_fd.release()), closedir);
  if (!dir) return ErrnoStatus(errno, "fdopendir the instance's namespace directory");
  std::vector<std::string> doomed;
  while (struct dirent* ent = readdir(dir.get())) {
    if (absl::StartsWith(ent->d_name, prefix) && strlen(ent->d_name) == prefix.size() + 16) {
      doomed.emplace_back(ent->d_name);
    }
  }
  for (const std::string& tree : doomed) {
    if (absl::Status s = RemoveTreeAt(dirfd(dir.get()), tree, dev, 0); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace sc
