#include "daemon/rootfs/pod_rootfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/paths.h"
#include "daemon/rootfs/instances.h"
#include "daemon/rootfs/mountinfo.h"

namespace sc {
namespace {

struct InstanceName {
  std::string ns;
  std::string name;
};

// The names of a directory's entries, without "." and "..", with their
// inode numbers as readdir has them: those of the directories themselves,
// not of what is mounted on them.
std::vector<std::pair<std::string, ino_t>> Entries(int dir_fd) {
  std::vector<std::pair<std::string, ino_t>> out;
  int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return out;
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    UniqueFd owned(fd);
    return out;
  }
  while (dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    out.emplace_back(name, e->d_ino);
  }
  closedir(dir);
  return out;
}

// The instance whose rootfs directory is `dir` (device and inode), if any:
// <base>/<namespace>/<name>/rootfs.
std::optional<InstanceName> InstanceOfDirectory(int base_fd, const struct stat& dir) {
  for (const auto& [ns, ns_ino] : Entries(base_fd)) {
    UniqueFd ns_fd(openat(base_fd, ns.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!ns_fd) continue;
    for (const auto& [name, name_ino] : Entries(ns_fd.get())) {
      UniqueFd inst(
          openat(ns_fd.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      struct stat st {};
      if (!inst || fstat(inst.get(), &st) != 0 || st.st_dev != dir.st_dev) continue;
      for (const auto& [entry, ino] : Entries(inst.get())) {
        if (entry == "rootfs" && ino == dir.st_ino) return InstanceName{ns, name};
      }
    }
  }
  return std::nullopt;
}

// Why the pod's view of `path`, the bare rootfs directory of `inst`, is not
// a rootfs to run in.
absl::Status NotReady(const std::string& path, const std::string& real_base,
                      const InstanceName& inst) {
  InstanceLayout layout = LayoutFor(real_base, inst.ns, inst.name);
  std::string named = absl::StrCat(path, " is the rootfs directory of instance ", inst.ns, "/",
                                   inst.name, " with nothing mounted on it");
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(named, " (its state is unknown: ", table.status().message(), ")"));
  }
  InstanceView view = DeriveInstance(*table, layout.rootfs);
  struct stat upper {};
  bool prepared_before = lstat(layout.upper.c_str(), &upper) == 0;
  switch (view.status) {
    case InstanceStatus::kReady:
      return absl::FailedPreconditionError(absl::StrCat(
          named,
          " in this pod's view, though it is READY on the node: the pod's hostPath volume needs "
          "mountPropagation: HostToContainer to see a rootfs prepared after the pod started"));
    case InstanceStatus::kPartial:
      return absl::FailedPreconditionError(
          absl::StrCat(named,
                       ": it is PARTIAL (a prepare or release was cut short); its provider's next "
                       "PrepareRootfs completes it"));
    case InstanceStatus::kReleased:
      break;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      named,
      prepared_before
          ? ": it is RELEASED (its provider pod gave it back; the upper layer is kept): start "
            "the provider pod"
          : ": it was never prepared on this node: start its provider pod, or wait for it "
            "(sc-exec --ready)"));
}

}  // namespace

absl::StatusOr<std::pair<UniqueFd, UniqueFd>> OpenPodRootfs(const Peer& peer,
                                                            const std::string& path,
                                                            const std::string& instance_base) {
  UniqueFd root(openat(peer.proc_dir(), "root", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    int err = errno;
    // ENOENT or ESRCH once the caller has exited (a zombie has no root).
    if (absl::Status alive = peer.CheckAliveAfterProcFailure(); !alive.ok()) return alive;
    return ErrnoStatus(err, "open the caller's root (/proc/<pid>/root)");
  }
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  UniqueFd rootfs(
      static_cast<int>(syscall(SYS_openat2, root.get(), path.c_str(), &how, sizeof(how))));
  if (!rootfs) {
    int err = errno;
    if (err == ENOENT) {
      return absl::FailedPreconditionError(
          absl::StrCat(path,
                       " does not exist in the caller's mount namespace: is the rootfs "
                       "hostPath mounted into this pod?"));
    }
    return ErrnoStatus(err, absl::StrCat("open ", path, " in the caller's mount namespace"));
  }
  // A prepared rootfs is an overlay; only what is not one can be a bare
  // instance directory, and only on the instance base's filesystem: the
  // usual exec costs one fstatfs.
  struct statfs fs {};
  if (fstatfs(rootfs.get(), &fs) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstatfs ", path, " in the caller's mount namespace"));
  }
  if (fs.f_type != OVERLAYFS_SUPER_MAGIC) {
    UniqueFd base(open(instance_base.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    struct stat dir {};
    struct stat base_st {};
    if (base && fstat(rootfs.get(), &dir) == 0 && fstat(base.get(), &base_st) == 0 &&
        dir.st_dev == base_st.st_dev) {
      if (std::optional<InstanceName> inst = InstanceOfDirectory(base.get(), dir)) {
        absl::StatusOr<std::string> real = FdTarget(base.get());
        return NotReady(path, real.ok() ? *real : instance_base, *inst);
      }
    }
  }
  if (absl::Status alive = peer.CheckAlive(); !alive.ok()) return alive;
  return std::make_pair(std::move(rootfs), std::move(root));
}

}  // namespace sc
