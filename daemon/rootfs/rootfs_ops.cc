#include "daemon/rootfs/rootfs_ops.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/defaults.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/paths.h"
#include "daemon/rootfs/instance_data.h"
#include "daemon/rootfs/instance_mounts.h"
#include "daemon/rootfs/layer_record.h"
#include "daemon/rootfs/mounts.h"
#include "daemon/rootfs/provider.h"

namespace sc {
namespace {

constexpr int kMaxLayers = 128;

struct Identity {
  dev_t dev;
  ino_t ino;
  bool operator==(const Identity& o) const { return dev == o.dev && ino == o.ino; }
};

absl::StatusOr<Identity> IdentityOf(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, "fstat");
  return Identity{st.st_dev, st.st_ino};
}

// A path outside every allow-listed root is a refusal of the request (audited
// "deny"), whoever asks; other failures to open it are errors.
absl::Status RefusedWhenOutsideRoots(absl::Status status) {
  return absl::IsPermissionDenied(status) ? AsDenial(std::move(status)) : status;
}

// The instance base as the kernel names it (mountinfo targets are real paths),
// created when missing (it comes from the daemon's flags, not a request).
absl::StatusOr<std::pair<UniqueFd, std::string>> OpenBase(const DaemonConfig& config) {
  std::string base = config.instance_base.empty() ? kDefaultInstanceBase : config.instance_base;
  if (base[0] != '/') return absl::FailedPreconditionError("--instance_base must be absolute");
  UniqueFd fd(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, "open /");
  for (const std::string& part : PathComponents(base)) {
    if (mkdirat(fd.get(), part.c_str(), 0711) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, absl::StrCat("mkdir instance base ", base));
    }
    UniqueFd next(openat(fd.get(), part.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!next) return ErrnoStatus(errno, absl::StrCat("open instance base ", base));
    fd = std::move(next);
  }
  absl::StatusOr<std::string> real = FdTarget(fd.get());
  if (!real.ok()) return real.status();
  return std::make_pair(std::move(fd), *std::move(real));
}

// Opens <base>/<ns>/<name>; creates it when `create`. NOT_FOUND when missing.
absl::StatusOr<UniqueFd> OpenInstanceDir(int base_fd, const InstanceLayout& layout, bool create) {
  if (create) {
    absl::StatusOr<UniqueFd> ns = MakeDirBeneath(base_fd, layout.ns, 0711);
    if (!ns.ok()) return ns.status();
    return MakeDirBeneath(ns->get(), layout.name, 0711);
  }
  return OpenBeneath(base_fd, absl::StrCat(layout.ns, "/", layout.name), O_PATH | O_DIRECTORY);
}

std::string RefName(const InstanceLayout& layout) {
  return InstanceRefName(layout.ns, layout.name);
}

// What the mount table says of an instance, with the layers the daemon
// recorded where mountinfo shows only /proc/self/fd/N (layer_record.h).
InstanceView ViewOf(const std::vector<MountInfoEntry>& table, int base_fd,
                    const InstanceLayout& layout) {
  InstanceView view = DeriveInstance(table, layout.rootfs);
  if (view.has_overlay && ShowsProcFdPaths(view.layers)) {
    ApplyLayerRecord(ReadLayerRecord(base_fd, layout), &view);
  }
  return view;
}

absl::StatusOr<InstanceView> CurrentView(int base_fd, const InstanceLayout& layout) {
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return table.status();
  return ViewOf(*table, base_fd, layout);
}

// The layers of a request, opened.
struct Lowers {
  std::vector<UniqueFd> fds;
  std::vector<std::string> paths;  // as the kernel will print them
  std::vector<std::string> described;
  std::vector<int> raw() const {
    std::vector<int> out;
    for (const UniqueFd& fd : fds) out.push_back(fd.get());
    return out;
  }
};

absl::StatusOr<Lowers> OpenExplicitLayers(const DaemonConfig& config,
                                          const std::vector<std::string>& paths) {
  const int count = static_cast<int>(paths.size());
  if (count < 1 || count > kMaxLayers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layers: give 1 to ", kMaxLayers, " paths, not ", count));
  }
  if (config.layer_roots.empty()) {
    return absl::FailedPreconditionError(
        "explicit layers are disabled: the daemon has no --layer_root");
  }
  Lowers lowers;
  for (int i = 0; i < count; ++i) {
    const std::string& path = paths[i];
    std::string what = absl::StrCat("layers.paths[", i, "]");
    if (absl::Status s = CheckRequestPath(path, true, what); !s.ok()) return s;
    absl::StatusOr<UniqueFd> fd = OpenUnderRoots(config.layer_roots, path, O_PATH | O_DIRECTORY);
    if (!fd.ok()) {
      return RefusedWhenOutsideRoots(
          absl::Status(fd.status().code(), absl::StrCat(what, ": ", fd.status().message())));
    }
    lowers.fds.push_back(*std::move(fd));
    lowers.described.push_back(path);
  }
  return lowers;
}

// The layers of the rootfs container of `pod`'s pod, once it runs.
absl::StatusOr<Lowers> WaitForProviderLayers(const DaemonConfig& config, const Peer& pod,
                                             const PrepareLayers& layers, AuditDetails* details) {
  absl::Duration wait =
      layers.wait_ms == 0 ? config.provider_wait : absl::Milliseconds(layers.wait_ms);
  if (wait > config.provider_wait_max) wait = config.provider_wait_max;
  // The pod's own cgroup is searched, not the node's /proc; NOT_FOUND (its
  // hierarchy is not mounted here) falls back to /proc.
  absl::StatusOr<UniqueFd> pod_cgroup = OpenPodCgroupDir(pod.proc_dir(), *pod.pod());
  if (!pod_cgroup.ok() && !absl::IsNotFound(pod_cgroup.status())) return pod_cgroup.status();
  std::function<bool()> cancelled = layers.cancelled;
  if (!cancelled) cancelled = [] { return false; };
  absl::StatusOr<ProviderProcess> provider = WaitForProvider(
      pod.pod()->pod_uid, pod_cgroup.ok() ? pod_cgroup->get() : -1, wait, cancelled);
  if (!provider.ok()) return provider.status();
  details->emplace_back("provider_pid", absl::StrCat(provider->pid));
  absl::StatusOr<ProviderLayers> opened = OpenProviderLayers(*provider);
  if (!opened.ok()) return opened.status();
  Lowers lowers;
  lowers.fds = std::move(opened->fds);
  lowers.described = std::move(opened->described);
  return lowers;
}

absl::Status FinishLowers(Lowers* lowers) {
  for (const UniqueFd& fd : lowers->fds) {
    absl::StatusOr<std::string> path = FdTarget(fd.get());
    if (!path.ok()) return path.status();
    lowers->paths.push_back(*std::move(path));
  }
  return absl::OkStatus();
}

// Mounts what `view` lacks with `lowers`, recording the layers first where
// mountinfo will not show them; rolls all of the instance's mounts back when
// it is not READY afterwards (but for the conversion of an older daemon's
// instance, IsOlderDaemonsInstance). Returns the view after, and whether it
// mounted.
absl::StatusOr<InstanceView> CompleteOrRollBack(const NamedInstance& instance,
                                                const InstanceView& view, const Lowers& lowers,
                                                bool* created, AuditDetails* details) {
  int instance_fd = instance.dir->get();
  details->emplace_back("from_state", InstanceStatusName(view.status));
  // Where mountinfo will not show the layers, they are recorded first: a
  // daemon stopped right after the mount still knows what it mounted.
  const bool record_layers =
      !view.has_overlay && OverlayLayerPassingInUse() == OverlayLayerPassing::kProcFdPaths;
  LayerRecord record;
  if (record_layers) {
    absl::StatusOr<std::string> dir = FdTarget(instance_fd);
    if (!dir.ok()) return dir.status();
    record.layers.lowerdirs = lowers.paths;
    record.layers.upperdir = *dir + "/upper";
    record.layers.workdir = *dir + "/work";
    if (absl::Status s = WriteLayerRecord(instance.base.get(), instance.layout, record); !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<int> mounted = CompleteInstance(instance_fd, view, lowers.raw());
  if (mounted.ok() && record_layers) {
    absl::StatusOr<UniqueFd> rootfs = OpenBeneath(instance_fd, "rootfs", O_PATH | O_DIRECTORY);
    struct stat st {};
    if (!rootfs.ok() || fstat(rootfs->get(), &st) != 0) {
      mounted = rootfs.ok() ? ErrnoStatus(errno, "fstat the rootfs") : rootfs.status();
    } else {
      record.devno = st.st_dev;
      if (absl::Status s = WriteLayerRecord(instance.base.get(), instance.layout, record);
          !s.ok()) {
        mounted = s;
      }
    }
  }
  absl::StatusOr<InstanceView> after = mounted.ok()
                                           ? CurrentView(instance.base.get(), instance.layout)
                                           : absl::StatusOr<InstanceView>(mounted.status());
  if (after.ok() && after->status != InstanceStatus::kReady) {
    after = absl::InternalError(
        absl::StrCat("still missing after prepare: ", absl::StrJoin(after->missing, ", ")));
  }
  if (!after.ok() && IsOlderDaemonsInstance(view)) {
    // A conversion that failed: what running workloads use stays mounted.
    details->emplace_back("rolled_back", "0 (a conversion: left as it was)");
    return after.status();
  }
  if (!after.ok()) {
    // Never leave a half-mounted instance behind: roll back all of it.
    absl::StatusOr<ReleaseCounts> rolled = UnmountInstance(instance_fd, instance.layout);
    details->emplace_back("rolled_back", rolled.ok() ? absl::StrCat(rolled->unmounted)
                                                     : std::string(rolled.status().message()));
    return after.status();
  }
  *created = *mounted > 0;
  details->emplace_back("mounted", absl::StrCat(*mounted));
  return after;
}

// The steps of BindIntoInstance.

// A bind mount's source, opened under its roots: a regular file or a
// directory.
struct BindSource {
  UniqueFd fd;
  struct stat st {};
  bool is_dir = false;
};
absl::StatusOr<BindSource> OpenBindSource(const BindRequest& request) {
  absl::StatusOr<UniqueFd> source = OpenUnderRoots(request.source_roots, request.source, O_PATH);
  if (!source.ok()) {
    return RefusedWhenOutsideRoots(
        absl::Status(source.status().code(), absl::StrCat("source: ", source.status().message())));
  }
  BindSource src;
  src.fd = *std::move(source);
  if (fstat(src.fd.get(), &src.st) != 0) return ErrnoStatus(errno, "fstat source");
  src.is_dir = S_ISDIR(src.st.st_mode);
  if (!src.is_dir && !S_ISREG(src.st.st_mode)) {
    return absl::InvalidArgumentError("source must be a regular file or a directory");
  }
  return src;
}

// The rootfs of the instance, which must be READY, opened and checked to be
// the overlay the mount table shows. Under the mount lock.
absl::StatusOr<UniqueFd> OpenReadyRootfs(const NamedInstance& instance) {
  absl::StatusOr<InstanceView> view = CurrentView(instance.base.get(), instance.layout);
  if (!view.ok()) return view.status();
  if (view->status != InstanceStatus::kReady) {
    return absl::FailedPreconditionError(absl::StrCat("instance ", RefName(instance.layout), " is ",
                                                      InstanceStatusName(view->status),
                                                      ", not ready: prepare it first"));
  }
  absl::StatusOr<UniqueFd> rootfs =
      OpenBeneath(instance.dir->get(), "rootfs", O_PATH | O_DIRECTORY);
  if (!rootfs.ok()) return rootfs.status();
  absl::StatusOr<int> root_mnt = MountIdOf(rootfs->get());
  if (!root_mnt.ok() || *root_mnt != view->overlay.id) {
    return absl::AbortedError("the rootfs changed while it was opened; retry");
  }
  return rootfs;
}

// The target's parent. Parents: created as needed, never through a symlink
// and never across a mount point (no binding into proc, sys, dev or another
// bind mount).
absl::StatusOr<UniqueFd> MakeTargetParents(int rootfs_fd,
                                           const std::vector<std::string>& target_parts) {
  UniqueFd parent(fcntl(rootfs_fd, F_DUPFD_CLOEXEC, 3));
  if (!parent) return ErrnoStatus(errno, "dup");
  for (size_t i = 0; i + 1 < target_parts.size(); ++i) {
    const std::string& part = target_parts[i];
    if (mkdirat(parent.get(), part.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, absl::StrCat("mkdir ", part));
    }
    absl::StatusOr<UniqueFd> next = OpenBeneath(parent.get(), part, O_PATH | O_DIRECTORY, true);
    if (!next.ok()) {
      return absl::Status(next.status().code(), absl::StrCat("target: ", next.status().message()));
    }
    parent = *std::move(next);
  }
  return parent;
}

// The target `leaf` in `parent_fd`, made like the source (a directory, an
// empty file) when missing, and of the source's kind.
struct BindTarget {
  UniqueFd fd;
  struct stat st {};
};
absl::StatusOr<BindTarget> OpenBindTarget(int parent_fd, const std::string& leaf, bool is_dir) {
  struct stat leaf_st {};
  if (fstatat(parent_fd, leaf.c_str(), &leaf_st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) return ErrnoStatus(errno, absl::StrCat("stat target ", leaf));
    if (is_dir) {
      if (mkdirat(parent_fd, leaf.c_str(), 0755) != 0 && errno != EEXIST) {
        return ErrnoStatus(errno, "create target directory");
      }
    } else {
      UniqueFd created(openat(parent_fd, leaf.c_str(),
                              O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644));
      if (!created && errno != EEXIST) return ErrnoStatus(errno, "create target file");
    }
  }
  absl::StatusOr<UniqueFd> target = OpenBeneath(parent_fd, leaf, O_PATH);
  if (!target.ok()) {
    return absl::Status(target.status().code(),
                        absl::StrCat("target: ", target.status().message()));
  }
  BindTarget tgt;
  tgt.fd = *std::move(target);
  if (fstat(tgt.fd.get(), &tgt.st) != 0) return ErrnoStatus(errno, "fstat target");
  if (S_ISDIR(tgt.st.st_mode) != is_dir || (!is_dir && !S_ISREG(tgt.st.st_mode))) {
    return absl::InvalidArgumentError(
        absl::StrCat("target exists as a ", S_ISDIR(tgt.st.st_mode) ? "directory" : "non-directory",
                     " but the source is a ", is_dir ? "directory" : "file"));
  }
  return tgt;
}

// The mount now on `leaf` in `parent_fd`, as the mount table shows it.
std::optional<MountInfoEntry> MountNowAt(int parent_fd, const std::string& leaf) {
  std::optional<MountInfoEntry> mount;
  absl::StatusOr<UniqueFd> now = OpenBeneath(parent_fd, leaf, O_PATH);
  absl::StatusOr<int> now_mnt = now.ok() ? MountIdOf(now->get()) : now.status();
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (now_mnt.ok() && table.ok()) {
    for (const MountInfoEntry& e : *table) {
      if (e.id == *now_mnt) mount = e;
    }
  }
  return mount;
}

}  // namespace

std::string InstanceRefName(absl::string_view ns, absl::string_view name) {
  return absl::StrCat(ns.substr(0, 63), "/", name.substr(0, 63));
}

absl::StatusOr<NamedInstance> LookUpInstance(const DaemonConfig& config, absl::string_view ns,
                                             absl::string_view name) {
  absl::StatusOr<std::pair<UniqueFd, std::string>> base = OpenBase(config);
  if (!base.ok()) return base.status();
  NamedInstance instance;
  instance.base = std::move(base->first);
  instance.layout = LayoutFor(base->second, ns, name);
  instance.dir = OpenInstanceDir(instance.base.get(), instance.layout, false);
  return instance;
}

// Its provider pod mounts the instance directory (the work directory with the
// upper layer), its consumer pods mount only its rootfs (the overlay when
// prepared, the bare directory before).
absl::StatusOr<PodRelation> PodRelationTo(const Peer& peer, int instance_fd) {
  absl::StatusOr<Identity> dir = IdentityOf(instance_fd);
  if (!dir.ok()) return dir.status();
  std::optional<Identity> rootfs;
  if (absl::StatusOr<UniqueFd> fd = OpenBeneath(instance_fd, "rootfs", O_PATH | O_DIRECTORY);
      fd.ok()) {
    if (absl::StatusOr<Identity> id = IdentityOf(fd->get()); id.ok()) rootfs = *id;
  }
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadMountInfoAt(peer.proc_dir());
  if (!table.ok()) return table.status();
  UniqueFd root(openat(peer.proc_dir(), "root", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return ErrnoStatus(errno, "open /proc/<peer>/root");
  PodRelation relation = PodRelation::kNone;
  for (const MountInfoEntry& e : *table) {
    absl::StatusOr<UniqueFd> fd = OpenBeneath(root.get(), e.target, O_PATH);
    if (!fd.ok()) continue;
    absl::StatusOr<Identity> id = IdentityOf(fd->get());
    if (!id.ok()) continue;
    if (*id == *dir) {
      relation = PodRelation::kProvider;
      break;
    }
    if (rootfs && *id == *rootfs) relation = PodRelation::kConsumer;
  }
  if (absl::Status alive = peer.CheckAlive(); !alive.ok()) return alive;
  return relation;
}

absl::StatusOr<PodRelation> PodRelationTo(const Peer& peer, const NamedInstance& instance) {
  if (!instance.dir.ok()) return PodRelation::kNone;
  return PodRelationTo(peer, instance.dir->get());
}

absl::StatusOr<Prepared> PrepareInstance(const DaemonConfig& config, NamedInstance* instance,
                                         const PrepareLayers& layers, std::mutex* mount_mu,
                                         AuditDetails* details) {
  // A refused request leaves nothing on the node: a new instance gets its
  // directory only once its layers have been found good.
  const bool create = absl::IsNotFound(instance->dir.status());
  if (!instance->dir.ok() && !create) return instance->dir.status();

  absl::StatusOr<Lowers> lowers =
      layers.provider_pod != nullptr
          ? WaitForProviderLayers(config, *layers.provider_pod, layers, details)
          : OpenExplicitLayers(config, layers.paths);
  if (!lowers.ok()) return lowers.status();
  if (absl::Status s = FinishLowers(&*lowers); !s.ok()) return s;
  details->emplace_back("layers", absl::StrJoin(lowers->paths, ":"));
  if (create) {
    instance->dir = OpenInstanceDir(instance->base.get(), instance->layout, true);
    if (!instance->dir.ok()) return instance->dir.status();
  }

  const InstanceLayout& layout = instance->layout;
  std::lock_guard<std::mutex> lock(*mount_mu);
  absl::StatusOr<InstanceView> view = CurrentView(instance->base.get(), layout);
  if (!view.ok()) return view.status();
  if (!view->foreign.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(layout.rootfs, ": ", view->foreign, "; release the instance first"));
  }
  if (view->has_overlay) {
    absl::StatusOr<std::string> upper = FdTarget(instance->dir->get());
    std::string want_upper = upper.ok() ? *upper + "/upper" : layout.upper;
    if (view->layers.lowerdirs != lowers->paths || view->layers.upperdir != want_upper) {
      return absl::FailedPreconditionError(
          absl::StrCat(layout.dir, " is prepared with other layers (",
                       absl::StrJoin(view->layers.lowerdirs, ":"), " upper ", view->layers.upperdir,
                       "); release it before changing its layers"));
    }
  }
  Prepared prepared;
  prepared.state.layout = layout;
  if (view->status != InstanceStatus::kReady) {
    view = CompleteOrRollBack(*instance, *view, *lowers, &prepared.created, details);
    if (!view.ok()) return view.status();
  } else {
    // READY since an older daemon, which mounted the overlay without
    // nosuid,nodev: added in place (CompleteInstance does it otherwise).
    absl::StatusOr<UniqueFd> rootfs =
        OpenBeneath(instance->dir->get(), "rootfs", O_PATH | O_DIRECTORY);
    absl::Status attrs =
        rootfs.ok() ? SetMountAttrs(rootfs->get(), kRootfsMountAttrs) : rootfs.status();
    if (!attrs.ok()) return attrs;
  }
  prepared.state.view = *std::move(view);
  return prepared;
}

absl::StatusOr<Released> ReleaseInstance(NamedInstance* instance, bool delete_data,
                                         std::mutex* mount_mu, AuditDetails* details) {
  Released released;
  if (!instance->dir.ok()) {
    // Nothing there: released already (and no data to delete).
    if (absl::IsNotFound(instance->dir.status())) return released;
    return instance->dir.status();
  }
  const InstanceLayout& layout = instance->layout;
  absl::StatusOr<Identity> id = IdentityOf(instance->dir->get());
  if (!id.ok()) return id.status();
  absl::StatusOr<UniqueFd> ns_dir =
      OpenBeneath(instance->base.get(), layout.ns, O_PATH | O_DIRECTORY);
  if (!ns_dir.ok()) return ns_dir.status();
  std::string doomed;  // the instance directory's name once set aside for deletion
  {
    std::lock_guard<std::mutex> lock(*mount_mu);
    absl::StatusOr<ReleaseCounts> counts = UnmountInstance(instance->dir->get(), layout);
    if (!counts.ok()) return counts.status();
    released.unmounted = counts->unmounted;
    released.lazily_detached = counts->lazily;
    details->emplace_back("unmounted", absl::StrCat(counts->unmounted));
    details->emplace_back("lazily_detached", absl::StrCat(counts->lazily));
    if (delete_data) {
      if (counts->lazily > 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "unmounted ", counts->unmounted, " mounts but ", counts->lazily,
            " were busy and only detached: a process still uses the rootfs, so its data was "
            "kept; stop it and release again with delete_data"));
      }
      // Renamed while the lock is held, so that the instance is gone for every
      // other call at once; the tree itself is removed after the lock, which
      // other instances' calls need (a large upper layer takes seconds).
      doomed = DoomedName(layout.name);
      if (renameat(ns_dir->get(), layout.name.c_str(), ns_dir->get(), doomed.c_str()) != 0) {
        return ErrnoStatus(errno, absl::StrCat("set ", layout.dir, " aside for deletion"));
      }
    }
  }
  if (delete_data) {
    absl::Time started = absl::Now();
    // Earlier deletions of this instance that a daemon restart interrupted.
    absl::Status removed = RemoveDoomedTrees(ns_dir->get(), layout.name, id->dev);
    details->emplace_back("delete_ms",
                          absl::StrCat(absl::ToInt64Milliseconds(absl::Now() - started)));
    if (!removed.ok()) {
      return absl::Status(
          removed.code(),
          absl::StrCat("instance ", RefName(layout), " is released and its data set aside as ",
                       doomed, ", but deleting it failed: ", removed.message()));
    }
    if (absl::Status s = RemoveLayerRecord(instance->base.get(), layout); !s.ok()) return s;
    released.data_deleted = true;
    details->emplace_back("data_deleted", "true");
  }
  return released;
}

absl::Status CheckBindRequest(absl::string_view ns, absl::string_view name,
                              absl::string_view source, absl::string_view target) {
  if (absl::Status s = CheckInstanceNames(ns, name); !s.ok()) return s;
  if (absl::Status s = CheckRequestPath(source, true, "source"); !s.ok()) return s;
  if (absl::Status s = CheckRequestPath(target, true, "target"); !s.ok()) return s;
  if (PathComponents(target).empty()) {
    return absl::InvalidArgumentError("target must not be the rootfs itself");
  }
  return absl::OkStatus();
}

absl::StatusOr<Bound> BindIntoInstance(const NamedInstance& instance, const BindRequest& request,
                                       std::mutex* mount_mu) {
  if (!instance.dir.ok()) {
    return absl::Status(
        instance.dir.status().code(),
        absl::StrCat("instance ", RefName(instance.layout), ": ", instance.dir.status().message()));
  }
  if (request.source_roots.empty()) {
    return absl::FailedPreconditionError("bind mounts are disabled: no --bind_root");
  }
  absl::StatusOr<BindSource> source = OpenBindSource(request);
  if (!source.ok()) return source.status();

  std::lock_guard<std::mutex> lock(*mount_mu);
  absl::StatusOr<UniqueFd> rootfs = OpenReadyRootfs(instance);
  if (!rootfs.ok()) return rootfs.status();
  const std::vector<std::string> target_parts = PathComponents(request.target);
  absl::StatusOr<UniqueFd> parent = MakeTargetParents(rootfs->get(), target_parts);
  if (!parent.ok()) return parent.status();
  const std::string& leaf = target_parts.back();
  absl::StatusOr<BindTarget> target = OpenBindTarget(parent->get(), leaf, source->is_dir);
  if (!target.ok()) return target.status();
  absl::StatusOr<int> parent_mnt = MountIdOf(parent->get());
  absl::StatusOr<int> target_mnt = MountIdOf(target->fd.get());
  if (!parent_mnt.ok() || !target_mnt.ok()) {
    return parent_mnt.ok() ? target_mnt.status() : parent_mnt.status();
  }
  Bound bound;
  if (*target_mnt != *parent_mnt) {
    // Something is mounted there already: the same source is a no-op.
    if (target->st.st_dev != source->st.st_dev || target->st.st_ino != source->st.st_ino) {
      return absl::FailedPreconditionError(
          absl::StrCat(absl::string_view(request.target).substr(0, 256),
                       " already has another mount; release the instance to change it"));
    }
  } else {
    uint64_t attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (request.read_only) attrs |= MOUNT_ATTR_RDONLY;
    if (absl::Status s = BindAt(source->fd.get(), target->fd.get(), true, attrs, false); !s.ok()) {
      return s;
    }
    bound.created = true;
  }
  // Report the mount now on the target.
  bound.mount = MountNowAt(parent->get(), leaf);
  return bound;
}

absl::StatusOr<InstanceView> ViewInstance(const NamedInstance& instance) {
  absl::StatusOr<InstanceView> view = CurrentView(instance.base.get(), instance.layout);
  if (!view.ok()) return view.status();
  if (!instance.dir.ok() && view->mounts.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no instance ", RefName(instance.layout), " on this node"));
  }
  return view;
}

absl::StatusOr<std::vector<InstanceState>> InstancesOnNode(
    const DaemonConfig& config, const std::function<bool(int instance_fd)>& visible) {
  absl::StatusOr<std::pair<UniqueFd, std::string>> base = OpenBase(config);
  if (!base.ok()) return base.status();
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return table.status();
  std::vector<InstanceState> out;
  for (const auto& [ns, name] : InstancesInTable(*table, base->second)) {
    InstanceLayout layout = LayoutFor(base->second, ns, name);
    if (visible) {
      absl::StatusOr<UniqueFd> dir = OpenInstanceDir(base->first.get(), layout, false);
      if (!dir.ok() || !visible(dir->get())) continue;
    }
    InstanceView view = ViewOf(*table, base->first.get(), layout);
    out.push_back({std::move(layout), std::move(view)});
  }
  return out;
}

absl::StatusOr<RootfsCheck> CheckNamedRootfs(const DaemonConfig& config, absl::string_view ns,
                                             absl::string_view name, AuditDetails* details) {
  absl::StatusOr<std::pair<UniqueFd, std::string>> base = OpenBase(config);
  if (!base.ok()) return base.status();
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return table.status();
  details->emplace_back("instance", InstanceRefName(ns, name));
  if (absl::Status s = CheckInstanceNames(ns, name); !s.ok()) return s;
  InstanceLayout layout = LayoutFor(base->second, ns, name);
  InstanceView view = ViewOf(*table, base->first.get(), layout);
  RootfsCheck check;
  check.ready = view.status == InstanceStatus::kReady;
  if (check.ready) {
    check.found = true;
    check.ns = std::string(ns);
    check.name = std::string(name);
  } else {
    check.reason =
        absl::StrCat("instance ", RefName(layout), " is ", InstanceStatusName(view.status));
  }
  details->emplace_back("ready", check.ready ? "true" : "false");
  return check;
}

absl::StatusOr<RootfsCheck> CheckPodRootfs(const DaemonConfig& config, const Peer& peer,
                                           std::string path, AuditDetails* details) {
  absl::StatusOr<std::pair<UniqueFd, std::string>> base = OpenBase(config);
  if (!base.ok()) return base.status();
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return table.status();
  if (path.empty()) path = config.pod_rootfs_path;
  if (path.empty()) path = kDefaultPodRootfsPath;
  details->emplace_back("rootfs_path", path.substr(0, 512));
  if (absl::Status s = CheckRequestPath(path, true, "rootfs_path"); !s.ok()) return s;
  UniqueFd root(openat(peer.proc_dir(), "root", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return ErrnoStatus(errno, "open /proc/<peer>/root");
  RootfsCheck check;
  absl::StatusOr<UniqueFd> seen = OpenBeneath(root.get(), path, O_PATH | O_DIRECTORY);
  if (!seen.ok()) {
    check.reason = absl::StrCat(path, " cannot be opened in the pod: ", seen.status().message());
    return check;
  }
  absl::StatusOr<Identity> seen_id = IdentityOf(seen->get());
  if (!seen_id.ok()) return seen_id.status();
  if (absl::Status alive = peer.CheckAlive(); !alive.ok()) return alive;
  check.reason = absl::StrCat(path, " is not the rootfs of a prepared instance (yet)");
  for (const auto& [ns, name] : InstancesInTable(*table, base->second)) {
    InstanceLayout layout = LayoutFor(base->second, ns, name);
    absl::StatusOr<UniqueFd> dir = OpenInstanceDir(base->first.get(), layout, false);
    if (!dir.ok()) continue;
    absl::StatusOr<UniqueFd> rootfs = OpenBeneath(dir->get(), "rootfs", O_PATH | O_DIRECTORY);
    if (!rootfs.ok()) continue;
    absl::StatusOr<Identity> id = IdentityOf(rootfs->get());
    if (!id.ok() || !(*id == *seen_id)) continue;
    InstanceView view = ViewOf(*table, base->first.get(), layout);
    check.found = true;
    check.ns = ns;
    check.name = name;
    details->emplace_back("instance", absl::StrCat(ns, "/", name));
    if (view.status == InstanceStatus::kReady) {
      check.ready = true;
      check.reason.clear();
    } else {
      check.reason = absl::StrCat(path, " is instance ", ns, "/", name, ", which is ",
                                  InstanceStatusName(view.status));
    }
    break;
  }
  details->emplace_back("ready", check.ready ? "true" : "false");
  return check;
}

}  // namespace sc
