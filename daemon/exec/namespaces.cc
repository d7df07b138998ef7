#include "daemon/exec/namespaces.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "daemon/base/fs_util.h"
#include "daemon/identity/peer.h"

namespace sc {
namespace {

absl::StatusOr<UniqueFd> OpenNs(const Peer& peer, const char* name) {
  std::string rel = absl::StrCat("ns/", name);
  UniqueFd fd(openat(peer.proc_dir(), rel.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    // ENOENT or ESRCH once the caller has exited (a zombie has no ns).
    if (absl::Status alive = peer.CheckAliveAfterProcFailure(); !alive.ok()) return alive;
    return ErrnoStatus(err, absl::StrCat("open the caller's /proc/<pid>/", rel));
  }
  return fd;
}

absl::StatusOr<bool> SameAsMine(int fd, const char* name) {
  struct stat theirs {
  }, mine{};
  std::string self = absl::StrCat("/proc/self/ns/", name);
  if (fstat(fd, &theirs) != 0) return ErrnoStatus(errno, "fstat namespace");
  if (stat(self.c_str(), &mine) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", self));
  return theirs.st_dev == mine.st_dev && theirs.st_ino == mine.st_ino;
}

}  // namespace

absl::StatusOr<NamespaceHandles> OpenPeerNamespaces(const Peer& peer) {
  NamespaceHandles ns;
  struct Slot {
    const char* name;
    UniqueFd* fd;
  };
  Slot slots[] = {{"user", &ns.user}, {"mnt", &ns.mnt},       {"uts", &ns.uts}, {"ipc", &ns.ipc},
                  {"net", &ns.net},   {"cgroup", &ns.cgroup}, {"pid", &ns.pid}};
  for (Slot& slot : slots) {
    absl::StatusOr<UniqueFd> fd = OpenNs(peer, slot.name);
    if (!fd.ok()) return fd.status();
    *slot.fd = *std::move(fd);
  }
  absl::StatusOr<bool> same_user = SameAsMine(ns.user.get(), "user");
  if (!same_user.ok()) return same_user.status();
  if (*same_user) ns.user.reset();
  if (absl::Status alive = peer.CheckAlive(); !alive.ok()) return alive;
  return ns;
}

}  // namespace sc
