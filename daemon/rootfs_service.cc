// Rootfs lifecycle RPCs: PrepareRootfs, ReleaseRootfs, BindMount,
// GetInstance, ListInstances, CheckRootfs.
//
// State lives in the mount table only (instances.h derives it from
// /proc/self/mountinfo), so a restarted daemon re-adopts what is mounted. Every
// path from a request is opened without following symlinks (paths.h) and
// every mount targets the opened fd (mounts.h).
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/defaults.h"
#include "daemon/fs_util.h"
#include "daemon/instance_mounts.h"
#include "daemon/instances.h"
#include "daemon/layer_record.h"
#include "daemon/mountinfo.h"
#include "daemon/mounts.h"
#include "daemon/paths.h"
#include "daemon/provider.h"
#include "daemon/service.h"
#include "daemon/status_util.h"
#include "spdlog/spdlog.h"

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

std::string RefName(const v1::InstanceRef& ref) {
  return absl::StrCat(ref.namespace_().substr(0, 63), "/", ref.name().substr(0, 63));
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

// How a pod relates to an instance, from what it has mounted (seen through
// /proc/<peer>/root): its provider pod mounts the instance directory (the
// work directory with the upper layer), its consumer pods mount only its
// rootfs (the overlay when prepared, the bare directory before).
enum class PodRelation { kNone, kConsumer, kProvider };

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

// The relation of a pod to an instance directory that may not exist (none).
absl::StatusOr<PodRelation> PodRelationTo(const Peer& peer,
                                          const absl::StatusOr<UniqueFd>& instance) {
  if (!instance.ok()) return PodRelation::kNone;
  return PodRelationTo(peer, instance->get());
}

void FillMount(const MountInfoEntry& e, v1::MountEntry* out) {
  out->set_mount_id(static_cast<uint32_t>(e.id));
  out->set_target(e.target);
  out->set_fstype(e.fstype);
  out->set_source(e.source);
  out->set_options(absl::StrCat(e.vfs_options, ",", e.fs_options));
}

v1::Instance::State ToProto(InstanceStatus status) {
  switch (status) {
    case InstanceStatus::kReleased:
      return v1::Instance::RELEASED;
    case InstanceStatus::kReady:
      return v1::Instance::READY;
    case InstanceStatus::kPartial:
      break;
  }
  return v1::Instance::PARTIAL;
}

void FillInstance(const InstanceLayout& layout, const InstanceView& view, v1::Instance* out) {
  out->mutable_ref()->set_namespace_(layout.ns);
  out->mutable_ref()->set_name(layout.name);
  out->set_state(ToProto(view.status));
  out->set_instance_dir(layout.dir);
  out->set_rootfs(layout.rootfs);
  for (const std::string& dir : view.layers.lowerdirs) out->add_lower_dirs(dir);
  out->set_upper_dir(view.has_overlay ? view.layers.upperdir : layout.upper);
  out->set_work_dir(view.has_overlay ? view.layers.workdir : layout.work);
  for (const MountInfoEntry& e : view.mounts) FillMount(e, out->add_mounts());
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
                                          const v1::ExplicitLayers& layers) {
  if (layers.paths_size() < 1 || layers.paths_size() > kMaxLayers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layers: give 1 to ", kMaxLayers, " paths, not ", layers.paths_size()));
  }
  if (config.layer_roots.empty()) {
    return absl::FailedPreconditionError(
        "explicit layers are disabled: the daemon has no --layer_root");
  }
  Lowers lowers;
  for (int i = 0; i < layers.paths_size(); ++i) {
    const std::string& path = layers.paths(i);
    std::string what = absl::StrCat("layers.paths[", i, "]");
    if (absl::Status s = CheckRequestPath(path, true, what); !s.ok()) return s;
    absl::StatusOr<UniqueFd> fd = OpenUnderRoots(config.layer_roots, path, O_PATH | O_DIRECTORY);
    if (!fd.ok()) {
      return absl::Status(fd.status().code(), absl::StrCat(what, ": ", fd.status().message()));
    }
    lowers.fds.push_back(*std::move(fd));
    lowers.described.push_back(path);
  }
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

}  // namespace

grpc::Status MountHelperService::PrepareRootfs(grpc::ServerContext* context,
                                               const v1::PrepareRootfsRequest* request,
                                               v1::Instance* response) {
  constexpr const char* kMethod = "PrepareRootfs";
  KeyedLimiter::Slot call_slot;
  absl::StatusOr<std::shared_ptr<const Peer>> caller = Caller(context, kMethod, &call_slot);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const Peer& peer = **caller;
  Details details = {{"instance", RefName(request->instance())}};
  if (peer.kind() == PeerKind::kUnknown) {
    return Finish(kMethod, peer, peer.RefuseUnknown("only operators and pods may prepare a rootfs"),
                  details, true);
  }
  const v1::InstanceRef& ref = request->instance();
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
    return Finish(kMethod, peer, s, details);
  }
  if (request->lower_case() == v1::PrepareRootfsRequest::LOWER_NOT_SET) {
    return Finish(kMethod, peer,
                  absl::InvalidArgumentError("give the lower layers: `layers` or `provider`"),
                  details);
  }
  if (request->has_provider() && !peer.pod()) {
    return Finish(kMethod, peer,
                  absl::InvalidArgumentError(
                      "`provider` takes the layers from the caller's own pod; an operator has no "
                      "pod and must give explicit `layers`"),
                  details);
  }

  absl::StatusOr<std::pair<UniqueFd, std::string>> base = OpenBase(config_);
  if (!base.ok()) return Finish(kMethod, peer, base.status(), details);
  InstanceLayout layout = LayoutFor(base->second, ref.namespace_(), ref.name());
  details.emplace_back("instance_dir", layout.dir);

  // Pods act only on an instance directory they have mounted, which the
  // kubelet created for them: a pod never makes the daemon create one. An
  // operator's new instance gets its directory only once its layers have
  // been found good (below): a refused request leaves nothing on the node.
  absl::StatusOr<UniqueFd> instance = OpenInstanceDir(base->first.get(), layout, false);
  const bool create = peer.is_operator() && absl::IsNotFound(instance.status());
  if (peer.kind() == PeerKind::kPod) {
    absl::StatusOr<PodRelation> relation = PodRelationTo(peer, instance);
    if (!relation.ok() && !absl::IsNotFound(relation.status())) {
      return Finish(kMethod, peer, relation.status(), details);
    }
    if (!relation.ok() || *relation == PodRelation::kNone) {
      return Finish(kMethod, peer,
                    absl::PermissionDeniedError(absl::StrCat(
                        "pod ", peer.pod()->pod_uid, " has not mounted ", layout.dir, " or ",
                        layout.rootfs, " (mount the instance directory into the pod first)")),
                    details, true);
    }
    // A consumer must not choose the layers every other consumer runs on, nor
    // hold a daemon thread waiting for a provider that is not its own.
    if (*relation == PodRelation::kConsumer) {
      return Finish(
          kMethod, peer,
          absl::PermissionDeniedError(absl::StrCat(
              "pod ", peer.pod()->pod_uid, " has mounted only the rootfs of instance ",
              RefName(ref), ": preparing it is for its provider pod, which mounts ", layout.dir)),
          details, true);
    }
  }
  if (!instance.ok() && !create) return Finish(kMethod, peer, instance.status(), details);

  Lowers lowers;
  if (request->has_layers()) {
    absl::StatusOr<Lowers> opened = OpenExplicitLayers(config_, request->layers());
    if (!opened.ok()) {
      return Finish(kMethod, peer, opened.status(), details,
                    absl::IsPermissionDenied(opened.status()));
    }
    lowers = *std::move(opened);
  } else {
    absl::Duration wait = request->provider().wait_ms() == 0
                              ? config_.provider_wait
                              : absl::Milliseconds(request->provider().wait_ms());
    if (wait > config_.provider_wait_max) wait = config_.provider_wait_max;
    KeyedLimiter::Slot wait_slot = provider_waits_per_pod_.TryAcquire(peer.pod()->pod_uid);
    if (!wait_slot.held()) {
      return Finish(kMethod, peer,
                    absl::ResourceExhaustedError(absl::StrCat(
                        "this pod has ", provider_waits_per_pod_.max_per_key(),
                        " PrepareRootfs calls waiting for its rootfs container, its maximum "
                        "(--max_provider_waits_per_pod); retry when they end")),
                    details, true);
    }
    // The pod's own cgroup is searched, not the node's /proc; NOT_FOUND (its
    // hierarchy is not mounted here) falls back to /proc.
    absl::StatusOr<UniqueFd> pod_cgroup = OpenPodCgroupDir(peer.proc_dir(), *peer.pod());
    if (!pod_cgroup.ok() && !absl::IsNotFound(pod_cgroup.status())) {
      return Finish(kMethod, peer, pod_cgroup.status(), details);
    }
    absl::StatusOr<ProviderProcess> provider =
        WaitForProvider(peer.pod()->pod_uid, pod_cgroup.ok() ? pod_cgroup->get() : -1, wait,
                        [context] { return context->IsCancelled(); });
    if (!provider.ok()) return Finish(kMethod, peer, provider.status(), details);
    details.emplace_back("provider_pid", absl::StrCat(provider->pid));
    absl::StatusOr<ProviderLayers> layers = OpenProviderLayers(*provider);
    if (!layers.ok()) return Finish(kMethod, peer, layers.status(), details);
    lowers.fds = std::move(layers->fds);
    lowers.described = std::move(layers->described);
  }
  if (absl::Status s = FinishLowers(&lowers); !s.ok()) return Finish(kMethod, peer, s, details);
  details.emplace_back("layers", absl::StrJoin(lowers.paths, ":"));
  if (create) {
    instance = OpenInstanceDir(base->first.get(), layout, true);
    if (!instance.ok()) return Finish(kMethod, peer, instance.status(), details);
  }

  std::lock_guard<std::mutex> lock(rootfs_mu_);
  absl::StatusOr<InstanceView> view = CurrentView(base->first.get(), layout);
  if (!view.ok()) return Finish(kMethod, peer, view.status(), details);
  if (!view->foreign.empty()) {
    return Finish(kMethod, peer,
                  absl::FailedPreconditionError(absl::StrCat(layout.rootfs, ": ", view->foreign,
                                                             "; release the instance first")),
                  details);
  }
  if (view->has_overlay) {
    absl::StatusOr<std::string> upper = FdTarget(instance->get());
    std::string want_upper = upper.ok() ? *upper + "/upper" : layout.upper;
    if (view->layers.lowerdirs != lowers.paths || view->layers.upperdir != want_upper) {
      return Finish(kMethod, peer,
                    absl::FailedPreconditionError(absl::StrCat(
                        layout.dir, " is prepared with other layers (",
                        absl::StrJoin(view->layers.lowerdirs, ":"), " upper ",
                        view->layers.upperdir, "); release it before changing its layers")),
                    details);
    }
  }
  bool created = false;
  if (view->status != InstanceStatus::kReady) {
    details.emplace_back("from_state", InstanceStatusName(view->status));
    // Where mountinfo will not show the layers, they are recorded first: a
    // daemon stopped right after the mount still knows what it mounted.
    const bool record_layers =
        !view->has_overlay && OverlayLayerPassingInUse() == OverlayLayerPassing::kProcFdPaths;
    LayerRecord record;
    if (record_layers) {
      absl::StatusOr<std::string> dir = FdTarget(instance->get());
      if (!dir.ok()) return Finish(kMethod, peer, dir.status(), details);
      record.layers.lowerdirs = lowers.paths;
      record.layers.upperdir = *dir + "/upper";
      record.layers.workdir = *dir + "/work";
      if (absl::Status s = WriteLayerRecord(base->first.get(), layout, record); !s.ok()) {
        return Finish(kMethod, peer, s, details);
      }
    }
    absl::StatusOr<int> mounted = CompleteInstance(instance->get(), *view, lowers.raw());
    if (mounted.ok() && record_layers) {
      absl::StatusOr<UniqueFd> rootfs =
          OpenBeneath(instance->get(), "rootfs", O_PATH | O_DIRECTORY);
      struct stat st {};
      if (!rootfs.ok() || fstat(rootfs->get(), &st) != 0) {
        mounted = rootfs.ok() ? ErrnoStatus(errno, "fstat the rootfs") : rootfs.status();
      } else {
        record.devno = st.st_dev;
        if (absl::Status s = WriteLayerRecord(base->first.get(), layout, record); !s.ok()) {
          mounted = s;
        }
      }
    }
    absl::StatusOr<InstanceView> after = mounted.ok()
                                             ? CurrentView(base->first.get(), layout)
                                             : absl::StatusOr<InstanceView>(mounted.status());
    if (after.ok() && after->status != InstanceStatus::kReady) {
      after = absl::InternalError(
          absl::StrCat("still missing after prepare: ", absl::StrJoin(after->missing, ", ")));
    }
    if (!after.ok()) {
      // Never leave a half-mounted instance behind: roll back all of it.
      absl::StatusOr<ReleaseCounts> rolled = UnmountInstance(instance->get(), layout);
      details.emplace_back("rolled_back", rolled.ok() ? absl::StrCat(rolled->unmounted)
                                                      : std::string(rolled.status().message()));
      return Finish(kMethod, peer, after.status(), details);
    }
    created = *mounted > 0;
    details.emplace_back("mounted", absl::StrCat(*mounted));
    view = std::move(after);
  } else {
    // READY since an older daemon, which mounted the overlay without
    // nosuid,nodev: added in place (CompleteInstance does it otherwise).
    absl::StatusOr<UniqueFd> rootfs = OpenBeneath(instance->get(), "rootfs", O_PATH | O_DIRECTORY);
    absl::Status attrs =
        rootfs.ok() ? SetMountAttrs(rootfs->get(), kRootfsMountAttrs) : rootfs.status();
    if (!attrs.ok()) return Finish(kMethod, peer, attrs, details);
  }
  FillInstance(layout, *view, response);
  response->set_created(created);
  details.emplace_back("created", created ? "true" : "false");
  return Finish(kMethod, peer, absl::OkStatus(), details);
}

grpc::Status MountHelperService::ReleaseRootfs(grpc::ServerContext* context,
                                               const v1::ReleaseRootfsRequest* request,
                                               v1::ReleaseRootfsResponse* response) {
  constexpr const char* kMethod = "ReleaseRootfs";
  KeyedLimiter::Slot call_slot;
  absl::StatusOr<std::shared_ptr<const Peer>> caller = Caller(context, kMethod, &call_slot);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const Peer& peer = **caller;
  Details details = {{"instance", RefName(request->instance())},
                     {"delete_data", request->delete_data() ? "true" : "false"}};
  if (peer.kind() == PeerKind::kUnknown) {
    return Finish(kMethod, peer, peer.RefuseUnknown("only operators and pods may release a rootfs"),
                  details, true);
  }
  const v1::InstanceRef& ref = request->instance();
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
    return Finish(kMethod, peer, s, details);
  }
  absl::StatusOr<std::pair<UniqueFd, std::string>> base = OpenBase(config_);
  if (!base.ok()) return Finish(kMethod, peer, base.status(), details);
  InstanceLayout layout = LayoutFor(base->second, ref.namespace_(), ref.name());
  absl::StatusOr<UniqueFd> instance = OpenInstanceDir(base->first.get(), layout, false);
  if (peer.kind() == PeerKind::kPod) {
    // The upper layer is every consumer's data, kept across pod restarts by
    // contract: no pod may delete it, whatever it has mounted.
    if (request->delete_data()) {
      return Finish(kMethod, peer,
                    absl::PermissionDeniedError(absl::StrCat(
                        "pod ", peer.pod()->pod_uid, " may not delete instance ", RefName(ref),
                        "'s data: deleting is for operators only (release without delete_data "
                        "keeps the upper layer)")),
                    details, true);
    }
    absl::StatusOr<PodRelation> relation = PodRelationTo(peer, instance);
    if (!relation.ok() || *relation == PodRelation::kNone) {
      return Finish(
          kMethod, peer,
          absl::PermissionDeniedError(absl::StrCat("pod ", peer.pod()->pod_uid, " has not mounted ",
                                                   layout.dir, " or ", layout.rootfs)),
          details, true);
    }
    if (*relation == PodRelation::kConsumer) {
      return Finish(
          kMethod, peer,
          absl::PermissionDeniedError(absl::StrCat(
              "pod ", peer.pod()->pod_uid, " has mounted only the rootfs of instance ",
              RefName(ref), ": releasing it is for its provider pod, which mounts ", layout.dir)),
          details, true);
    }
  }
  if (!instance.ok()) {
    if (absl::IsNotFound(instance.status())) {
      // Nothing there: released already (and no data to delete).
      return Finish(kMethod, peer, absl::OkStatus(), details);
    }
    return Finish(kMethod, peer, instance.status(), details);
  }
  absl::StatusOr<Identity> id = IdentityOf(instance->get());
  if (!id.ok()) return Finish(kMethod, peer, id.status(), details);
  absl::StatusOr<UniqueFd> ns_dir = OpenBeneath(base->first.get(), layout.ns, O_PATH | O_DIRECTORY);
  if (!ns_dir.ok()) return Finish(kMethod, peer, ns_dir.status(), details);
  std::string doomed;  // the instance directory's name once set aside for deletion
  {
    std::lock_guard<std::mutex> lock(rootfs_mu_);
    absl::StatusOr<ReleaseCounts> counts = UnmountInstance(instance->get(), layout);
    if (!counts.ok()) return Finish(kMethod, peer, counts.status(), details);
    response->set_unmounted(counts->unmounted);
    response->set_lazily_detached(counts->lazily);
    details.emplace_back("unmounted", absl::StrCat(counts->unmounted));
    details.emplace_back("lazily_detached", absl::StrCat(counts->lazily));
    if (request->delete_data()) {
      if (counts->lazily > 0) {
        return Finish(kMethod, peer,
                      absl::FailedPreconditionError(absl::StrCat(
                          "unmounted ", counts->unmounted, " mounts but ", counts->lazily,
                          " were busy and only detached: a process still uses the rootfs, so its "
                          "data was kept; stop it and release again with delete_data")),
                      details);
      }
      // Renamed while the lock is held, so that the instance is gone for every
      // other call at once; the tree itself is removed after the lock, which
      // other instances' calls need (a large upper layer takes seconds).
      doomed = DoomedName(layout.name);
      if (renameat(ns_dir->get(), layout.name.c_str(), ns_dir->get(), doomed.c_str()) != 0) {
        return Finish(kMethod, peer,
                      ErrnoStatus(errno, absl::StrCat("set ", layout.dir, " aside for deletion")),
                      details);
      }
    }
  }
  if (request->delete_data()) {
    absl::Time started = absl::Now();
    // Earlier deletions of this instance that a daemon restart interrupted.
    absl::Status removed = RemoveDoomedTrees(ns_dir->get(), layout.name, id->dev);
    details.emplace_back("delete_ms",
                         absl::StrCat(absl::ToInt64Milliseconds(absl::Now() - started)));
    if (!removed.ok()) {
      return Finish(kMethod, peer,
                    absl::Status(removed.code(),
                                 absl::StrCat("instance ", RefName(ref),
                                              " is released and its data set aside as ", doomed,
                                              ", but deleting it failed: ", removed.message())),
                    details);
    }
    if (absl::Status s = RemoveLayerRecord(base->first.get(), layout); !s.ok()) {
      return Finish(kMethod, peer, s, details);
    }
    response->set_data_deleted(true);
    details.emplace_back("data_deleted", "true");
  }
  return Finish(kMethod, peer, absl::OkStatus(), details);
}

grpc::Status MountHelperService::BindMount(grpc::ServerContext* context,
                                           const v1::BindMountRequest* request,
                                           v1::BindMountResponse* response) {
  constexpr const char* kMethod = "BindMount";
  KeyedLimiter::Slot call_slot;
  absl::StatusOr<std::shared_ptr<const Peer>> caller = Caller(context, kMethod, &call_slot);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const Peer& peer = **caller;
  Details details = {{"instance", RefName(request->instance())},
                     {"source", request->source().substr(0, 512)},
                     {"target", request->target().substr(0, 512)},
                     {"read_only", request->read_only() ? "true" : "false"}};
  if (peer.kind() == PeerKind::kUnknown) {
    return Finish(kMethod, peer, peer.RefuseUnknown("only operators and pods may bind-mount"),
                  details, true);
  }
  const v1::InstanceRef& ref = request->instance();
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
    return Finish(kMethod, peer, s, details);
  }
  if (absl::Status s = CheckRequestPath(request->source(), true, "source"); !s.ok()) {
    return Finish(kMethod, peer, s, details);
  }
  if (absl::Status s = CheckRequestPath(request->target(), true, "target"); !s.ok()) {
    return Finish(kMethod, peer, s, details);
  }
  std::vector<std::string> target_parts = PathComponents(request->target());
  if (target_parts.empty()) {
    return Finish(kMethod, peer, absl::InvalidArgumentError("target must not be the rootfs itself"),
                  details);
  }
  absl::StatusOr<std::pair<UniqueFd, std::string>> base = OpenBase(config_);
  if (!base.ok()) return Finish(kMethod, peer, base.status(), details);
  InstanceLayout layout = LayoutFor(base->second, ref.namespace_(), ref.name());
  absl::StatusOr<UniqueFd> instance = OpenInstanceDir(base->first.get(), layout, false);
  if (peer.kind() == PeerKind::kPod) {
    absl::StatusOr<PodRelation> relation = PodRelationTo(peer, instance);
    if (!relation.ok() || *relation == PodRelation::kNone) {
      return Finish(
          kMethod, peer,
          absl::PermissionDeniedError(absl::StrCat("pod ", peer.pod()->pod_uid, " has not mounted ",
                                                   layout.dir, " or ", layout.rootfs)),
          details, true);
    }
  }
  if (!instance.ok()) {
    return Finish(
        kMethod, peer,
        absl::Status(instance.status().code(),
                     absl::StrCat("instance ", RefName(ref), ": ", instance.status().message())),
        details);
  }
  if (config_.bind_roots.empty()) {
    return Finish(kMethod, peer,
                  absl::FailedPreconditionError("bind mounts are disabled: no --bind_root"),
                  details);
  }
  // A pod binds only what is already its own: what the kubelet keeps for it
  // under <bind_root>/<its pod UID>/ (its volumes, tokens, etc-hosts), never
  // another pod's secrets nor the bind root itself.
  std::vector<std::string> source_roots = config_.bind_roots;
  if (peer.kind() == PeerKind::kPod) {
    for (std::string& root : source_roots) {
      root = absl::StrCat(absl::StripSuffix(root, "/"), "/", peer.pod()->pod_uid);
    }
  }
  absl::StatusOr<UniqueFd> source = OpenUnderRoots(source_roots, request->source(), O_PATH);
  if (peer.kind() == PeerKind::kPod && absl::IsPermissionDenied(source.status())) {
    source = absl::PermissionDeniedError(
        absl::StrCat("pod ", peer.pod()->pod_uid, " may bind only its own files: \"",
                     request->source().substr(0, 256), "\" is not inside ",
                     absl::StrJoin(source_roots, " or ")));
  }
  if (!source.ok()) {
    return Finish(
        kMethod, peer,
        absl::Status(source.status().code(), absl::StrCat("source: ", source.status().message())),
        details, absl::IsPermissionDenied(source.status()));
  }
  struct stat src_st {};
  if (fstat(source->get(), &src_st) != 0) {
    return Finish(kMethod, peer, ErrnoStatus(errno, "fstat source"), details);
  }
  const bool is_dir = S_ISDIR(src_st.st_mode);
  if (!is_dir && !S_ISREG(src_st.st_mode)) {
    return Finish(kMethod, peer,
                  absl::InvalidArgumentError("source must be a regular file or a directory"),
                  details);
  }

  std::lock_guard<std::mutex> lock(rootfs_mu_);
  absl::StatusOr<InstanceView> view = CurrentView(base->first.get(), layout);
  if (!view.ok()) return Finish(kMethod, peer, view.status(), details);
  if (view->status != InstanceStatus::kReady) {
    return Finish(kMethod, peer,
                  absl::FailedPreconditionError(absl::StrCat("instance ", RefName(ref), " is ",
                                                             InstanceStatusName(view->status),
                                                             ", not ready: prepare it first")),
                  details);
  }
  absl::StatusOr<UniqueFd> rootfs = OpenBeneath(instance->get(), "rootfs", O_PATH | O_DIRECTORY);
  if (!rootfs.ok()) return Finish(kMethod, peer, rootfs.status(), details);
  absl::StatusOr<int> root_mnt = MountIdOf(rootfs->get());
  if (!root_mnt.ok() || *root_mnt != view->overlay.id) {
    return Finish(kMethod, peer,
                  absl::AbortedError("the rootfs changed while it was opened; retry"), details);
  }
  // Parents: created as needed, never through a symlink and never across a
  // mount point (no binding into proc, sys, dev or another bind mount).
  UniqueFd parent(fcntl(rootfs->get(), F_DUPFD_CLOEXEC, 3));
  if (!parent) return Finish(kMethod, peer, ErrnoStatus(errno, "dup"), details);
  for (size_t i = 0; i + 1 < target_parts.size(); ++i) {
    const std::string& part = target_parts[i];
    if (mkdirat(parent.get(), part.c_str(), 0755) != 0 && errno != EEXIST) {
      return Finish(kMethod, peer, ErrnoStatus(errno, absl::StrCat("mkdir ", part)), details);
    }
    absl::StatusOr<UniqueFd> next = OpenBeneath(parent.get(), part, O_PATH | O_DIRECTORY, true);
    if (!next.ok()) {
      return Finish(
          kMethod, peer,
          absl::Status(next.status().code(), absl::StrCat("target: ", next.status().message())),
          details);
    }
    parent = *std::move(next);
  }
  const std::string& leaf = target_parts.back();
  struct stat leaf_st {};
  if (fstatat(parent.get(), leaf.c_str(), &leaf_st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) {
      return Finish(kMethod, peer, ErrnoStatus(errno, absl::StrCat("stat target ", leaf)), details);
    }
    if (is_dir) {
      if (mkdirat(parent.get(), leaf.c_str(), 0755) != 0 && errno != EEXIST) {
        return Finish(kMethod, peer, ErrnoStatus(errno, "create target directory"), details);
      }
    } else {
      UniqueFd created(openat(parent.get(), leaf.c_str(),
                              O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644));
      if (!created && errno != EEXIST) {
        return Finish(kMethod, peer, ErrnoStatus(errno, "create target file"), details);
      }
    }
  }
  absl::StatusOr<UniqueFd> target = OpenBeneath(parent.get(), leaf, O_PATH);
  if (!target.ok()) {
    return Finish(
        kMethod, peer,
        absl::Status(target.status().code(), absl::StrCat("target: ", target.status().message())),
        details);
  }
  struct stat tgt_st {};
  if (fstat(target->get(), &tgt_st) != 0) {
    return Finish(kMethod, peer, ErrnoStatus(errno, "fstat target"), details);
  }
  if (S_ISDIR(tgt_st.st_mode) != is_dir || (!is_dir && !S_ISREG(tgt_st.st_mode))) {
    return Finish(
        kMethod, peer,
        absl::InvalidArgumentError(absl::StrCat(
            "target exists as a ", S_ISDIR(tgt_st.st_mode) ? "directory" : "non-directory",
            " but the source is a ", is_dir ? "directory" : "file")),
        details);
  }
  absl::StatusOr<int> parent_mnt = MountIdOf(parent.get());
  absl::StatusOr<int> target_mnt = MountIdOf(target->get());
  if (!parent_mnt.ok() || !target_mnt.ok()) {
    return Finish(kMethod, peer, parent_mnt.ok() ? target_mnt.status() : parent_mnt.status(),
                  details);
  }
  bool created = false;
  if (*target_mnt != *parent_mnt) {
    // Something is mounted there already: the same source is a no-op.
    if (tgt_st.st_dev != src_st.st_dev || tgt_st.st_ino != src_st.st_ino) {
      return Finish(kMethod, peer,
                    absl::FailedPreconditionError(absl::StrCat(
                        request->target().substr(0, 256),
                        " already has another mount; release the instance to change it")),
                    details);
    }
  } else {
    uint64_t attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (request->read_only()) attrs |= MOUNT_ATTR_RDONLY;
    if (absl::Status s = BindAt(source->get(), target->get(), true, attrs, false); !s.ok()) {
      return Finish(kMethod, peer, s, details);
    }
    created = true;
  }
  // Report the mount now on the target.
  absl::StatusOr<UniqueFd> now = OpenBeneath(parent.get(), leaf, O_PATH);
  absl::StatusOr<int> now_mnt = now.ok() ? MountIdOf(now->get()) : now.status();
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (now_mnt.ok() && table.ok()) {
    for (const MountInfoEntry& e : *table) {
      if (e.id == *now_mnt) FillMount(e, response->mutable_mount());
    }
  }
  response->set_created(created);
  details.emplace_back("created", created ? "true" : "false");
  return Finish(kMethod, peer, absl::OkStatus(), details);
}

grpc::Status MountHelperService::GetInstance(grpc::ServerContext* context,
                                             const v1::GetInstanceRequest* request,
                                             v1::Instance* response) {
  constexpr const char* kMethod = "GetInstance";
  KeyedLimiter::Slot call_slot;
  absl::StatusOr<std::shared_ptr<const Peer>> caller = Caller(context, kMethod, &call_slot);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const Peer& peer = **caller;
  Details details = {{"instance", RefName(request->instance())}};
  if (peer.kind() == PeerKind::kUnknown) {
    return Finish(kMethod, peer,
                  peer.RefuseUnknown("only operators and pods may inspect instances"), details,
                  true);
  }
  const v1::InstanceRef& ref = request->instance();
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
    return Finish(kMethod, peer, s, details);
  }
  absl::StatusOr<std::pair<UniqueFd, std::string>> base = OpenBase(config_);
  if (!base.ok()) return Finish(kMethod, peer, base.status(), details);
  InstanceLayout layout = LayoutFor(base->second, ref.namespace_(), ref.name());
  absl::StatusOr<UniqueFd> instance = OpenInstanceDir(base->first.get(), layout, false);
  if (peer.kind() == PeerKind::kPod) {
    absl::StatusOr<PodRelation> relation = PodRelationTo(peer, instance);
    if (!relation.ok() || *relation == PodRelation::kNone) {
      return Finish(kMethod, peer,
                    absl::PermissionDeniedError(absl::StrCat(
                        "pod ", peer.pod()->pod_uid, " has not mounted instance ", RefName(ref))),
                    details, true);
    }
  }
  absl::StatusOr<InstanceView> view = CurrentView(base->first.get(), layout);
  if (!view.ok()) return Finish(kMethod, peer, view.status(), details);
  if (!instance.ok() && view->mounts.empty()) {
    return Finish(kMethod, peer,
                  absl::NotFoundError(absl::StrCat("no instance ", RefName(ref), " on this node")),
                  details);
  }
  FillInstance(layout, *view, response);
  details.emplace_back("state", InstanceStatusName(view->status));
  return Finish(kMethod, peer, absl::OkStatus(), details);
}

grpc::Status MountHelperService::ListInstances(grpc::ServerContext* context,
                                               const v1::ListInstancesRequest*,
                                               v1::ListInstancesResponse* response) {
  constexpr const char* kMethod = "ListInstances";
  KeyedLimiter::Slot call_slot;
  absl::StatusOr<std::shared_ptr<const Peer>> caller = Caller(context, kMethod, &call_slot);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const Peer& peer = **caller;
  if (peer.kind() == PeerKind::kUnknown) {
    return Finish(kMethod, peer, peer.RefuseUnknown("only operators and pods may list instances"),
                  {}, true);
  }
  absl::StatusOr<std::pair<UniqueFd, std::string>> base = OpenBase(config_);
  if (!base.ok()) return Finish(kMethod, peer, base.status());
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return Finish(kMethod, peer, table.status());
  for (const auto& [ns, name] : InstancesInTable(*table, base->second)) {
    InstanceLayout layout = LayoutFor(base->second, ns, name);
    if (peer.kind() == PeerKind::kPod) {
      absl::StatusOr<UniqueFd> instance = OpenInstanceDir(base->first.get(), layout, false);
      if (!instance.ok()) continue;
      absl::StatusOr<PodRelation> relation = PodRelationTo(peer, instance->get());
      if (!relation.ok() || *relation == PodRelation::kNone) continue;
    }
    FillInstance(layout, ViewOf(*table, base->first.get(), layout), response->add_instances());
  }
  return Finish(kMethod, peer, absl::OkStatus(),
                {{"count", absl::StrCat(response->instances_size())}});
}

grpc::Status MountHelperService::CheckRootfs(grpc::ServerContext* context,
                                             const v1::CheckRootfsRequest* request,
                                             v1::CheckRootfsResponse* response) {
  constexpr const char* kMethod = "CheckRootfs";
  KeyedLimiter::Slot call_slot;
  absl::StatusOr<std::shared_ptr<const Peer>> caller = Caller(context, kMethod, &call_slot);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const Peer& peer = **caller;
  if (peer.kind() == PeerKind::kUnknown) {
    return Finish(kMethod, peer, peer.RefuseUnknown("only operators and pods may check a rootfs"),
                  {}, true);
  }
  absl::StatusOr<std::pair<UniqueFd, std::string>> base = OpenBase(config_);
  if (!base.ok()) return Finish(kMethod, peer, base.status());
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadSelfMountInfo();
  if (!table.ok()) return Finish(kMethod, peer, table.status());

  if (peer.is_operator()) {
    const v1::InstanceRef& ref = request->instance();
    Details details = {{"instance", RefName(ref)}};
    if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
      return Finish(kMethod, peer, s, details);
    }
    InstanceLayout layout = LayoutFor(base->second, ref.namespace_(), ref.name());
    InstanceView view = ViewOf(*table, base->first.get(), layout);
    response->set_ready(view.status == InstanceStatus::kReady);
    if (view.status == InstanceStatus::kReady) {
      *response->mutable_instance() = ref;
    } else {
      response->set_reason(
          absl::StrCat("instance ", RefName(ref), " is ", InstanceStatusName(view.status)));
    }
    details.emplace_back("ready", response->ready() ? "true" : "false");
    return Finish(kMethod, peer, absl::OkStatus(), details);
  }

  std::string path = request->rootfs_path();
  if (path.empty()) path = config_.pod_rootfs_path;
  if (path.empty()) path = kDefaultPodRootfsPath;
  Details details = {{"rootfs_path", path.substr(0, 512)}};
  if (absl::Status s = CheckRequestPath(path, true, "rootfs_path"); !s.ok()) {
    return Finish(kMethod, peer, s, details);
  }
  UniqueFd root(openat(peer.proc_dir(), "root", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return Finish(kMethod, peer, ErrnoStatus(errno, "open /proc/<peer>/root"), details);
  absl::StatusOr<UniqueFd> seen = OpenBeneath(root.get(), path, O_PATH | O_DIRECTORY);
  if (!seen.ok()) {
    response->set_ready(false);
    response->set_reason(
        absl::StrCat(path, " cannot be opened in the pod: ", seen.status().message()));
    return Finish(kMethod, peer, absl::OkStatus(), details);
  }
  absl::StatusOr<Identity> seen_id = IdentityOf(seen->get());
  if (!seen_id.ok()) return Finish(kMethod, peer, seen_id.status(), details);
  if (absl::Status alive = peer.CheckAlive(); !alive.ok()) {
    return Finish(kMethod, peer, alive, details);
  }
  response->set_ready(false);
  response->set_reason(absl::StrCat(path, " is not the rootfs of a prepared instance (yet)"));
  for (const auto& [ns, name] : InstancesInTable(*table, base->second)) {
    InstanceLayout layout = LayoutFor(base->second, ns, name);
    absl::StatusOr<UniqueFd> instance = OpenInstanceDir(base->first.get(), layout, false);
    if (!instance.ok()) continue;
    absl::StatusOr<UniqueFd> rootfs = OpenBeneath(instance->get(), "rootfs", O_PATH | O_DIRECTORY);
    if (!rootfs.ok()) continue;
    absl::StatusOr<Identity> id = IdentityOf(rootfs->get());
    if (!id.ok() || !(*id == *seen_id)) continue;
    InstanceView view = ViewOf(*table, base->first.get(), layout);
    response->mutable_instance()->set_namespace_(ns);
    response->mutable_instance()->set_name(name);
    details.emplace_back("instance", absl::StrCat(ns, "/", name));
    if (view.status == InstanceStatus::kReady) {
      response->set_ready(true);
      response->clear_reason();
    } else {
      response->set_reason(absl::StrCat(path, " is instance ", ns, "/", name, ", which is ",
                                        InstanceStatusName(view.status)));
    }
    break;
  }
  details.emplace_back("ready", response->ready() ? "true" : "false");
  return Finish(kMethod, peer, absl::OkStatus(), details);
}

}  // namespace sc
