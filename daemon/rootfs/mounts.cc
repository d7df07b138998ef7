#include "daemon/rootfs/mounts.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/unique_fd.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/paths.h"
#include "daemon/base/raw_mounts.h"

namespace sc {
namespace {

// The fs context keeps the kernel's reason for a failed fsconfig; it is far
// more useful in a message than the bare errno ("overlayfs: failed to ...").
std::string ContextLog(int fs_fd) {
  std::string log;
  char buf[512];
  for (int i = 0; i < 8; ++i) {
    ssize_t n = read(fs_fd, buf, sizeof(buf) - 1);
    if (n <= 0) break;
    if (!log.empty()) log += "; ";
    log.append(buf, static_cast<size_t>(n));
    while (!log.empty() && log.back() == '\n') log.pop_back();
  }
  return log;
}

absl::Status FsError(int err, int fs_fd, absl::string_view what) {
  std::string log = ContextLog(fs_fd);
  return ErrnoStatus(err, log.empty() ? std::string(what) : absl::StrCat(what, " [", log, "]"));
}

absl::Status Attach(int mount_fd, int target_fd, absl::string_view what) {
  if (move_mount(mount_fd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) !=
      0) {
    return ErrnoStatus(errno, absl::StrCat("move_mount(", what, ")"));
  }
  return absl::OkStatus();
}

absl::Status CreateAndAttach(int fs_fd, uint64_t attrs, int target_fd, absl::string_view what) {
  if (fsconfig(fs_fd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return FsError(errno, fs_fd, absl::StrCat("create ", what));
  }
  UniqueFd mnt(fsmount(fs_fd, FSMOUNT_CLOEXEC, static_cast<unsigned int>(attrs)));
  if (!mnt) return FsError(errno, fs_fd, absl::StrCat("fsmount(", what, ")"));
  // Until attached, the mount is detached and vanishes with its fd.
  return Attach(mnt.get(), target_fd, what);
}

}  // namespace

namespace {

std::atomic<int> forced_passing{-1};

OverlayLayerPassing ProbeOverlayLayerPassing() {
  UniqueFd fs(fsopen("overlay", FSOPEN_CLOEXEC));
  UniqueFd dir(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fs || !dir) return OverlayLayerPassing::kProcFdPaths;
  // Nothing is created: the context is dropped with its fd.
  return fsconfig(fs.get(), FSCONFIG_SET_FD, "lowerdir+", nullptr, dir.get()) == 0
             ? OverlayLayerPassing::kByFd
             : OverlayLayerPassing::kProcFdPaths;
}

}  // namespace

const char* OverlayLayerPassingName(OverlayLayerPassing passing) {
  return passing == OverlayLayerPassing::kByFd ? "layers by fd (fsconfig FSCONFIG_SET_FD)"
                                               : "layers as /proc/self/fd/N in the option string";
}

OverlayLayerPassing OverlayLayerPassingInUse() {
  static const OverlayLayerPassing probed = ProbeOverlayLayerPassing();
  int forced = forced_passing.load();
  return forced < 0 ? probed : static_cast<OverlayLayerPassing>(forced);
}

void ForceOverlayLayerPassing(OverlayLayerPassing passing) {
  forced_passing.store(static_cast<int>(passing));
}

absl::Status MountOverlayAt(const std::vector<int>& lower_fds, int upper_fd, int work_fd,
                            int target_fd) {
  UniqueFd fs(fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fs) return ErrnoStatus(errno, "fsopen(overlay)");
  if (OverlayLayerPassingInUse() == OverlayLayerPassing::kByFd) {
    for (int fd : lower_fds) {
      if (fsconfig(fs.get(), FSCONFIG_SET_FD, "lowerdir+", nullptr, fd) != 0) {
        return FsError(errno, fs.get(), "overlay lowerdir+ by fd");
      }
    }
    if (fsconfig(fs.get(), FSCONFIG_SET_FD, "upperdir", nullptr, upper_fd) != 0) {
      return FsError(errno, fs.get(), "overlay upperdir by fd");
    }
    if (fsconfig(fs.get(), FSCONFIG_SET_FD, "workdir", nullptr, work_fd) != 0) {
      return FsError(errno, fs.get(), "overlay workdir by fd");
    }
  } else {
    if (lower_fds.size() > static_cast<size_t>(kMaxProcFdLayers)) {
      return absl::InvalidArgumentError(
          absl::StrCat(lower_fds.size(),
                       " lower layers do not fit overlayfs' one-page option "
                       "string on this kernel (at most ",
                       kMaxProcFdLayers, "; Linux 6.13 takes layers by fd without that limit)"));
    }
    std::vector<std::string> lowers;
    for (int fd : lower_fds) lowers.push_back(FdPath(fd));
    // Each value is its own fsconfig call; the kernel joins them into the one
    // page of legacy mount data (or parses them one by one, Linux 6.5+).
    const std::pair<const char*, std::string> options[] = {
        {"lowerdir", absl::StrJoin(lowers, ":")},
        {"upperdir", FdPath(upper_fd)},
        {"workdir", FdPath(work_fd)},
    };
    for (const auto& [key, value] : options) {
      if (fsconfig(fs.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) != 0) {
        return FsError(errno, fs.get(), absl::StrCat("overlay ", key, "=", value));
      }
    }
  }
  // nosuid, nodev: a workload may run as uid 0 without capabilities; a
  // setuid-root file it writes into the upper layer, or a device node an
  // image ships, must give nothing to a process that has no no_new_privs
  // (another container of a consumer pod sees the rootfs through its hostPath).
  return CreateAndAttach(fs.get(), kRootfsMountAttrs, target_fd, "overlay");
}

absl::Status SetMountAttrs(int mount_fd, uint64_t attrs) {
  struct mount_attr attr {};
  attr.attr_set = attrs;
  if (mount_setattr(mount_fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0) {
    return ErrnoStatus(errno, "mount_setattr(attributes)");
  }
  return absl::OkStatus();
}

absl::Status MountNewAt(const char* fstype, const std::vector<FsOption>& options, uint64_t attrs,
                        int target_fd) {
  UniqueFd fs(fsopen(fstype, FSOPEN_CLOEXEC));
  if (!fs) return ErrnoStatus(errno, absl::StrCat("fsopen(", fstype, ")"));
  for (const FsOption& option : options) {
    int rc =
        option.value.empty()
            ? fsconfig(fs.get(), FSCONFIG_SET_FLAG, option.key.c_str(), nullptr, 0)
            : fsconfig(fs.get(), FSCONFIG_SET_STRING, option.key.c_str(), option.value.c_str(), 0);
    if (rc != 0) {
      return FsError(errno, fs.get(),
                     absl::StrCat(fstype, " option ", option.key, option.value.empty() ? "" : "=",
                                  option.value));
    }
  }
  return CreateAndAttach(fs.get(), attrs, target_fd, fstype);
}

absl::Status MountEmptyProcAt(uint64_t attrs, int target_fd) {
  UniqueFd proc(NewDetachedMountInEmptyNamespace("proc", CLONE_NEWPID, attrs));
  if (!proc) return ErrnoStatus(errno, "proc of a new pid namespace");
  return Attach(proc.get(), target_fd, "proc");
}

absl::Status SetPropagation(int mount_fd, uint64_t propagation, bool recursive) {
  struct mount_attr attr {};
  attr.propagation = propagation;
  unsigned int flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
  if (mount_setattr(mount_fd, "", flags, &attr, sizeof(attr)) != 0) {
    return ErrnoStatus(errno, "mount_setattr(propagation)");
  }
  return absl::OkStatus();
}

absl::Status BindAt(int source_fd, int target_fd, bool recursive, uint64_t attrs, bool slave) {
  unsigned int flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH;
  if (recursive) flags |= AT_RECURSIVE;
  UniqueFd tree(open_tree(source_fd, "", flags));
  if (!tree) return ErrnoStatus(errno, "open_tree(OPEN_TREE_CLONE)");
  // Attributes are set while the tree is detached, so it is never visible
  // writable or with the source's propagation.
  struct mount_attr attr {};
  attr.attr_set = attrs;
  if (slave) attr.propagation = MS_SLAVE;
  if (attrs != 0 || slave) {
    unsigned int set_flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
    if (mount_setattr(tree.get(), "", set_flags, &attr, sizeof(attr)) != 0) {
      return ErrnoStatus(errno, "mount_setattr(detached bind)");
    }
  }
  return Attach(tree.get(), target_fd, "bind");
}

namespace {

// The top-most mount on `name` must be `expected_id`.
absl::Status CheckMountId(int parent_fd, const std::string& name, int expected_id) {
  struct statx stx {};
  if (statx(parent_fd, name.c_str(), AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) != 0) {
    return ErrnoStatus(errno, absl::StrCat("statx ", name));
  }
  if (static_cast<int>(stx.stx_mnt_id) != expected_id) {
    return absl::AbortedError(absl::StrCat("the mount on ", name, " is ", stx.stx_mnt_id,
                                           ", not the expected ", expected_id,
                                           " (the mount table changed; retry)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status DetachTreeAt(int parent_fd, const std::string& name, int expected_id) {
  if (absl::Status s = CheckMountId(parent_fd, name, expected_id); !s.ok()) return s;
  std::string path = absl::StrCat(FdPath(parent_fd), "/", name);
  if (umount2(path.c_str(), UMOUNT_NOFOLLOW | MNT_DETACH) != 0) {
    return ErrnoStatus(errno, absl::StrCat("umount(MNT_DETACH) ", name));
  }
  return absl::OkStatus();
}

absl::Status UnmountAt(int parent_fd, const std::string& name, int expected_id, bool* lazily) {
  *lazily = false;
  if (absl::Status s = CheckMountId(parent_fd, name, expected_id); !s.ok()) return s;
  // The parent is pinned by fd, the last component is a mount point (which
  // cannot be renamed or replaced while mounted) and is not followed.
  std::string path = absl::StrCat(FdPath(parent_fd), "/", name);
  if (umount2(path.c_str(), UMOUNT_NOFOLLOW) == 0) return absl::OkStatus();
  if (errno != EBUSY) return ErrnoStatus(errno, absl::StrCat("umount ", name));
  if (umount2(path.c_str(), UMOUNT_NOFOLLOW | MNT_DETACH) != 0) {
    return ErrnoStatus(errno, absl::StrCat("umount(MNT_DETACH) ", name));
  }
  *lazily = true;
  return absl::OkStatus();
}

}  // namespace sc
