// The mounts that make an instance's rootfs: see instance_mounts.h.
#include "daemon/rootfs/instance_mounts.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/paths.h"
#include "daemon/base/proc_mount.h"
#include "daemon/base/raw_mounts.h"
#include "daemon/base/sys_mount.h"
#include "daemon/rootfs/mountinfo.h"
#include "daemon/rootfs/mounts.h"
#include "spdlog/spdlog.h"

namespace sc {
namespace {

// tmp in the merged view, mode 1777. It is the overlay's own directory rather
// than a tmpfs: the instance's root is persistent by contract (everything it
// changed is still there after a restart, as in the image, where /tmp is a
// plain directory), it costs no memory, and it is one mount fewer to keep in
// order. An image whose /tmp is a symlink keeps it (it resolves inside the
// rootfs once chrooted).
absl::Status PrepareTmp(int rootfs_fd) {
  if (mkdirat(rootfs_fd, "tmp", 01777) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, "mkdir <rootfs>/tmp");
  }
  absl::StatusOr<UniqueFd> tmp = OpenBeneath(rootfs_fd, "tmp", O_RDONLY | O_DIRECTORY);
  if (!tmp.ok()) {
    if (absl::IsInvalidArgument(tmp.status())) {
      spdlog::info("rootfs /tmp is a symlink in the image; left as it is");
      return absl::OkStatus();
    }
    return tmp.status();
  }
  if (fchmod(tmp->get(), 01777) != 0) return ErrnoStatus(errno, "chmod 1777 <rootfs>/tmp");
  return absl::OkStatus();
}

constexpr uint64_t kNoSuidDevExec = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
constexpr uint64_t kReadOnly = kNoSuidDevExec | MOUNT_ATTR_RDONLY;

absl::Status RawStatus(int err, absl::string_view what) {
  return err == 0 ? absl::OkStatus() : ErrnoStatus(err, what);
}

// A detached mount's fd, or the errno of its making as a status.
absl::StatusOr<UniqueFd> Made(int fd, absl::string_view what) {
  if (fd < 0) return ErrnoStatus(errno, what);
  return UniqueFd(fd);
}

// The proc of an empty pid namespace (mounts.h), then its masks and read-only
// knobs (proc_mount.h). What an interrupted prepare left is kept.
absl::Status PrepareProc(int rootfs_fd, bool mount_proc) {
  absl::StatusOr<UniqueFd> at = MakeDirBeneath(rootfs_fd, "proc", 0555);
  if (!at.ok()) return at.status();
  if (mount_proc) {
    if (absl::Status s = MountEmptyProcAt(kNoSuidDevExec, at->get()); !s.ok()) return s;
  }
  absl::StatusOr<UniqueFd> proc = OpenBeneath(rootfs_fd, "proc", O_PATH | O_DIRECTORY);
  if (!proc.ok()) return proc.status();
  absl::StatusOr<UniqueFd> null_tree = Made(CloneDevNull(), "clone the node's /dev/null");
  if (!null_tree.ok()) return null_tree.status();
  int null_fd = null_tree->get();
  return RawStatus(FinishProc(proc->get(), &null_fd),
                   "mask /proc paths and bind its kernel knobs read-only");
}

// A devpts of the instance's own: ptys allocated through <rootfs>/dev/ptmx
// (which finds its "pts" sibling) appear as <rootfs>/dev/pts/N, so a
// terminal's name resolves inside the chroot. ptmxmode 0666 lets a process
// without capabilities open ptmx; mode/gid are the usual tty group 5 and 0620.
absl::Status MountDevpts(int dev_fd) {
  absl::StatusOr<UniqueFd> at = OpenBeneath(dev_fd, "pts", O_PATH | O_DIRECTORY);
  if (!at.ok()) return at.status();
  return MountNewAt("devpts",
                    {{"newinstance", ""}, {"ptmxmode", "0666"}, {"mode", "0620"}, {"gid", "5"}},
                    MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, at->get());
}

// Pages of a tmpfs are charged to the memory cgroup of the process that
// touches them, i.e. the workload's pod.
absl::Status MountShm(int dev_fd) {
  absl::StatusOr<UniqueFd> at = OpenBeneath(dev_fd, "shm", O_PATH | O_DIRECTORY);
  if (!at.ok()) return at.status();
  return MountNewAt("tmpfs", {{"mode", "1777"}}, kNoSuidDevExec, at->get());
}

// The instance's devpts or shm on an older /dev, cloned to be carried over
// into the new one; an empty fd when there is none to carry.
absl::StatusOr<UniqueFd> CarriedOver(int old_dev_fd, const char* name, bool present) {
  if (!present) return UniqueFd();
  return Made(CloneTree(old_dev_fd, name), absl::StrCat("clone the rootfs's /dev/", name));
}

// The default /dev (container_spec.h) as a read-only tmpfs over <rootfs>/dev,
// with the instance's devpts and shm: carried over from an older /dev that
// has them (dev_pts, dev_shm: the view says they are there), else new ones.
absl::Status PrepareDev(int rootfs_fd, bool make_dev, bool dev_pts, bool dev_shm) {
  absl::StatusOr<UniqueFd> at = MakeDirBeneath(rootfs_fd, "dev", 0755);
  if (!at.ok()) return at.status();
  UniqueFd pts, shm;
  if (make_dev) {
    absl::StatusOr<UniqueFd> old_pts = CarriedOver(at->get(), "pts", dev_pts);
    if (!old_pts.ok()) return old_pts.status();
    absl::StatusOr<UniqueFd> old_shm = CarriedOver(at->get(), "shm", dev_shm);
    if (!old_shm.ok()) return old_shm.status();
    static const char* const kMode[] = {"mode", "0755", nullptr};
    absl::StatusOr<UniqueFd> dev = Made(
        NewDetachedMount("tmpfs", kMode, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC), "tmpfs for /dev");
    if (!dev.ok()) return dev.status();
    if (absl::Status s = RawStatus(PopulateDev(dev->get(), nullptr, 0), "populate /dev"); !s.ok()) {
      return s;
    }
    if (absl::Status s = RawStatus(
            SetAttrs(dev->get(), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC),
            "make /dev read-only");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = RawStatus(AttachAt(dev->get(), at->get(), ""), "attach /dev"); !s.ok()) {
      return s;
    }
    pts = *std::move(old_pts);
    shm = *std::move(old_shm);
    at = OpenBeneath(rootfs_fd, "dev", O_PATH | O_DIRECTORY);
    if (!at.ok()) return at.status();
    dev_pts = pts.valid();
    dev_shm = shm.valid();
  }
  if (pts) {
    if (absl::Status s = RawStatus(AttachAt(pts.get(), at->get(), "pts"), "carry devpts over");
        !s.ok()) {
      return s;
    }
  } else if (!dev_pts) {
    if (absl::Status s = MountDevpts(at->get()); !s.ok()) return s;
  }
  if (shm) {
    return RawStatus(AttachAt(shm.get(), at->get(), "shm"), "carry /dev/shm over");
  }
  if (!dev_shm) return MountShm(at->get());
  return absl::OkStatus();
}

// A read-only sysfs of an empty network namespace over <rootfs>/sys, then its
// masks (sys_mount.h). Consumer pods see no interface of the node through it;
// every exec mounts the sysfs of its own network namespace over it.
absl::Status PrepareSys(int rootfs_fd, bool mount_sys) {
  absl::StatusOr<UniqueFd> at = MakeDirBeneath(rootfs_fd, "sys", 0555);
  if (!at.ok()) return at.status();
  if (mount_sys) {
    absl::StatusOr<UniqueFd> sysfs =
        Made(NewDetachedMountInEmptyNamespace("sysfs", CLONE_NEWNET, kReadOnly),
             "sysfs of an empty network namespace");
    if (!sysfs.ok()) return sysfs.status();
    if (absl::Status s = RawStatus(AttachAt(sysfs->get(), at->get(), ""), "attach /sys"); !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<UniqueFd> sys = OpenBeneath(rootfs_fd, "sys", O_PATH | O_DIRECTORY);
  if (!sys.ok()) return sys.status();
  return RawStatus(FinishSys(sys->get(), nullptr, 0), "mask /sys paths");
}

// How many mounts lie at or below the directory `fd` opens.
absl::StatusOr<int> MountsBelow(int fd) {
  absl::StatusOr<std::string> path = FdTarget(fd);
  if (!path.ok()) return path.status();
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return table.status();
  return static_cast<int>(std::count_if(table->begin(), table->end(), [&](const MountInfoEntry& e) {
    return PathAtOrBelow(e.target, *path);
  }));
}
}  // namespace

// Mounts what `view` says is missing, in order. Returns how many mounts it
// made.
absl::StatusOr<int> CompleteInstance(int instance_fd, const InstanceView& view,
                                     const std::vector<int>& lower_fds) {
  absl::StatusOr<UniqueFd> upper = MakeDirBeneath(instance_fd, "upper", 0755);
  if (!upper.ok()) return upper.status();
  absl::StatusOr<UniqueFd> work = MakeDirBeneath(instance_fd, "work", 0700);
  if (!work.ok()) return work.status();
  if (!view.has_overlay) {
    absl::StatusOr<UniqueFd> dir = MakeDirBeneath(instance_fd, "rootfs", 0755);
    if (!dir.ok()) return dir.status();
    if (absl::Status s = MountOverlayAt(lower_fds, upper->get(), work->get(), dir->get());
        !s.ok()) {
      return s;
    }
  }
  // From here on "rootfs" is the overlay's root.
  absl::StatusOr<UniqueFd> rootfs = OpenBeneath(instance_fd, "rootfs", O_PATH | O_DIRECTORY);
  if (!rootfs.ok()) return rootfs.status();
  absl::StatusOr<int> inst_mnt = MountIdOf(instance_fd);
  absl::StatusOr<int> root_mnt = MountIdOf(rootfs->get());
  if (!inst_mnt.ok() || !root_mnt.ok() || *inst_mnt == *root_mnt) {
    return absl::InternalError("the overlay is not mounted on the rootfs after mounting it");
  }
  // An overlay mounted by an older daemon lacks nosuid,nodev: added in place,
  // without unmounting what running workloads use.
  if (absl::Status s = SetMountAttrs(rootfs->get(), kRootfsMountAttrs); !s.ok()) return s;
  // Shared, so that consumer pods with HostToContainer propagation see it and
  // every mount made inside it afterwards.
  if (absl::Status s = SetPropagation(rootfs->get(), MS_SHARED, false); !s.ok()) return s;
  if (absl::Status s = PrepareTmp(rootfs->get()); !s.ok()) return s;

  auto missing = [&](const char* rel) {
    return std::find(view.missing.begin(), view.missing.end(), rel) != view.missing.end();
  };
  if (missing("proc") || missing("proc masks") || missing("proc/sys")) {
    if (absl::Status s = PrepareProc(rootfs->get(), missing("proc")); !s.ok()) return s;
  }
  if (missing("dev") || missing("dev/pts") || missing("dev/shm")) {
    if (absl::Status s =
            PrepareDev(rootfs->get(), missing("dev"), !missing("dev/pts"), !missing("dev/shm"));
        !s.ok()) {
      return s;
    }
  }
  if (missing("sys") || missing("sys/firmware")) {
    if (absl::Status s = PrepareSys(rootfs->get(), missing("sys")); !s.ok()) return s;
  }
  absl::StatusOr<int> after = MountsBelow(rootfs->get());
  if (!after.ok()) return after.status();
  return *after - static_cast<int>(view.mounts.size());
}
// Unmounts everything at or below the instance's rootfs, deepest first, in
// an order that never leaves an instance looking READY while it is not whole,
// whenever the release stops (a SIGKILL of the daemon): the next Prepare
// completes only the steps it finds missing (CompleteInstance), so a step
// must be either whole or missing. The proc/sys bind, the sign that the proc
// step is done, goes first (from then on the instance is PARTIAL). An older
// daemon's recursive binds of the node's /dev and /sys (below the new mounts
// of a converted instance) each go as one unit (their copies of the node's
// mounts below them are detached with them, at once), never copy by copy.
absl::StatusOr<ReleaseCounts> UnmountInstance(int instance_fd, const InstanceLayout& layout) {
  ReleaseCounts counts;
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return table.status();
  InstanceView view = DeriveInstance(*table, layout.rootfs);
  std::set<dev_t> node_devices;
  for (const MountInfoEntry& e : *table) {
    if (!PathAtOrBelow(e.target, layout.rootfs)) node_devices.insert(e.devno);
  }
  const std::string proc_sys = layout.rootfs + "/proc/sys";
  std::vector<std::string> units;  // tops of the /dev and /sys binds
  for (const char* rel : {"/dev", "/sys"}) units.push_back(layout.rootfs + rel);
  // A copy of a node mount brought along by a unit's recursive bind.
  auto in_unit = [&](const MountInfoEntry& e) {
    for (const std::string& u : units) {
      if (e.target != u && PathAtOrBelow(e.target, u) && node_devices.count(e.devno) > 0) {
        return true;
      }
    }
    return false;
  };
  std::vector<MountInfoEntry> order = UnmountOrder(view.mounts);
  std::stable_partition(order.begin(), order.end(),
                        [&](const MountInfoEntry& e) { return PathAtOrBelow(e.target, proc_sys); });
  for (const MountInfoEntry& e : order) {
    if (in_unit(e)) continue;
    bool unit = std::find(units.begin(), units.end(), e.target) != units.end() &&
                node_devices.count(e.devno) > 0;
    // e.target is <dir>/rootfs[/...]: split into a parent below the instance
    // directory and the mount point's name.
    std::string rel = e.target.substr(layout.dir.size() + 1);
    size_t slash = rel.rfind('/');
    std::string parent_rel = slash == std::string::npos ? "" : rel.substr(0, slash);
    std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
    absl::StatusOr<UniqueFd> parent = OpenBeneath(instance_fd, parent_rel, O_PATH | O_DIRECTORY);
    if (!parent.ok()) {
      return absl::Status(parent.status().code(),
                          absl::StrCat("unmount ", e.target, ": ", parent.status().message()));
    }
    bool lazily = false;
    absl::Status s = unit ? DetachTreeAt(parent->get(), name, e.id)
                          : UnmountAt(parent->get(), name, e.id, &lazily);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("unmount ", e.target, ": ", s.message(), " (",
                                                 counts.unmounted, " unmounted before)"));
    }
    ++counts.unmounted;
    if (unit) {
      for (const MountInfoEntry& below : view.mounts) {
        if (below.target != e.target && PathAtOrBelow(below.target, e.target) && in_unit(below)) {
          ++counts.unmounted;
        }
      }
    }
    if (lazily) {
      ++counts.lazily;
      spdlog::warn("{} was busy and only lazily detached", e.target);
    }
  }
  return counts;
}

bool IsOlderDaemonsInstance(const InstanceView& view) {
  static const std::set<std::string> kNew = {"proc masks", "dev", "sys", "sys/firmware"};
  return view.has_overlay && view.foreign.empty() && !view.missing.empty() &&
         std::all_of(view.missing.begin(), view.missing.end(),
                     [](const std::string& m) { return kNew.count(m) > 0; });
}

void ConvertOlderInstances(const std::string& base) {
  UniqueFd base_fd(open(base.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!base_fd) return;  // nothing prepared yet
  absl::StatusOr<std::string> real = FdTarget(base_fd.get());
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!real.ok() || !table.ok()) {
    spdlog::warn("cannot look for instances to convert: {}",
                 (real.ok() ? table.status() : real.status()).ToString());
    return;
  }
  for (const auto& [ns, name] : InstancesInTable(*table, *real)) {
    InstanceLayout layout = LayoutFor(*real, ns, name);
    InstanceView view = DeriveInstance(*table, layout.rootfs);
    if (!IsOlderDaemonsInstance(view)) continue;
    absl::StatusOr<UniqueFd> instance =
        OpenBeneath(base_fd.get(), absl::StrCat(ns, "/", name), O_PATH | O_DIRECTORY);
    absl::StatusOr<int> mounted =
        instance.ok() ? CompleteInstance(instance->get(), view, {}) : instance.status();
    if (mounted.ok()) {
      spdlog::info("instance {}/{}: converted to a container's /dev, /sys and /proc ({} mounts)",
                   ns, name, *mounted);
    } else {
      spdlog::warn("instance {}/{}: not converted ({}); its provider's next prepare tries again",
                   ns, name, mounted.status().ToString());
    }
  }
}

}  // namespace sc
