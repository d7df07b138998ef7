// The rootfs RPCs at the service edge: PrepareRootfs, ReleaseRootfs,
// BindMount, GetInstance, ListInstances, CheckRootfs. Each reads: the caller,
// the policy (policy.h), the operation (rootfs_ops.h), the audit record, the
// reply.
//
// Until the daemon's files are laid out by concern (issue 16, item 3), this
// file also holds the mount steps of an instance that rootfs_ops.cc calls
// (rootfs_mounts.h).
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/fs_util.h"
#include "daemon/instances.h"
#include "daemon/mountinfo.h"
#include "daemon/mounts.h"
#include "daemon/paths.h"
#include "daemon/policy.h"
#include "daemon/rootfs_mounts.h"
#include "daemon/rootfs_ops.h"
#include "daemon/service.h"
#include "daemon/status_util.h"
#include "spdlog/spdlog.h"

namespace sc {
namespace {

std::string RefName(const v1::InstanceRef& ref) {
  return InstanceRefName(ref.namespace_(), ref.name());
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

}  // namespace

// The mount steps of an instance (rootfs_mounts.h).

// Unmounts everything at or below the instance's rootfs, deepest first, in
// an order that never leaves an instance looking READY while it is not whole,
// whenever the release stops (a SIGKILL of the daemon): the next Prepare
// completes only the steps it finds missing (CompleteInstance), so a step
// must be either whole or missing. The proc/sys bind, the sign that the proc
// step is done, goes first (from then on the instance is PARTIAL); the
// recursive binds of /dev and /sys each go as one unit (their copies of the
// node's mounts below them are detached with them, at once), never copy by
// copy.
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

// Binds `name` in `dir_fd` read-only over itself, unless it is a mount point
// already (a previous, interrupted prepare did it) or does not exist (the
// kernel lacks it). Returns whether it mounted.
absl::StatusOr<bool> ReadOnlyOverSelf(int dir_fd, const char* name) {
  absl::StatusOr<UniqueFd> fd = OpenBeneath(dir_fd, name, O_PATH);
  if (!fd.ok()) {
    if (absl::IsNotFound(fd.status())) return false;
    return fd.status();
  }
  absl::StatusOr<int> dir_mnt = MountIdOf(dir_fd);
  absl::StatusOr<int> mnt = MountIdOf(fd->get());
  if (!dir_mnt.ok()) return dir_mnt.status();
  if (!mnt.ok()) return mnt.status();
  if (*dir_mnt != *mnt) return false;
  uint64_t attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  if (absl::Status s = BindAt(fd->get(), fd->get(), false, attrs, false); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("read-only /proc/", name, ": ", s.message()));
  }
  return true;
}

absl::StatusOr<UniqueFd> OpenHostDir(const char* path) {
  UniqueFd fd(open(path, O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open ", path));
  return fd;
}

// Mounts what `view` says is missing, in order. Returns how many mounts it
// made.
absl::StatusOr<int> CompleteInstance(int instance_fd, const InstanceView& view,
                                     const std::vector<int>& lower_fds) {
  int mounted = 0;
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
    ++mounted;
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
    for (const std::string& m : view.missing) {
      if (m == rel) return true;
    }
    return false;
  };
  constexpr uint64_t kNoSuidDevExec = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  if (missing("proc")) {
    absl::StatusOr<UniqueFd> at = MakeDirBeneath(rootfs->get(), "proc", 0555);
    if (!at.ok()) return at.status();
    if (absl::Status s = MountEmptyProcAt(kNoSuidDevExec, at->get()); !s.ok()) return s;
    ++mounted;
  }
  if (missing("proc/sys")) {
    // A workload runs without capabilities but possibly as uid 0, and root
    // owns these files: kernel knobs (sysctl) and sysrq-trigger (which can
    // reboot the node) must not be writable through the rootfs. Read-only
    // binds over them, as container runtimes do; proc/sys last, since the
    // state derivation takes it as the sign that this step is done.
    absl::StatusOr<UniqueFd> proc = OpenBeneath(rootfs->get(), "proc", O_PATH | O_DIRECTORY);
    if (!proc.ok()) return proc.status();
    for (const char* name : {"sysrq-trigger", "irq", "bus", "fs", "sys"}) {
      absl::StatusOr<bool> done = ReadOnlyOverSelf(proc->get(), name);
      if (!done.ok()) return done.status();
      if (*done) ++mounted;
    }
  }
  if (missing("dev")) {
    absl::StatusOr<UniqueFd> at = MakeDirBeneath(rootfs->get(), "dev", 0755);
    if (!at.ok()) return at.status();
    absl::StatusOr<UniqueFd> src = OpenHostDir("/dev");
    if (!src.ok()) return src.status();
    // Slave: host device changes reach the rootfs, nothing goes back.
    if (absl::Status s =
            BindAt(src->get(), at->get(), true, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, true);
        !s.ok()) {
      return s;
    }
    ++mounted;
  }
  absl::StatusOr<UniqueFd> dev = OpenBeneath(rootfs->get(), "dev", O_PATH | O_DIRECTORY);
  if (!dev.ok()) return dev.status();
  if (missing("dev/pts")) {
    absl::StatusOr<UniqueFd> at = MakeDirBeneath(dev->get(), "pts", 0755);
    if (!at.ok()) return at.status();
    // A devpts of its own: ptys allocated through <rootfs>/dev/ptmx (which
    // finds its "pts" sibling) appear as <rootfs>/dev/pts/N, so a terminal's
    // name resolves inside the chroot. ptmxmode 0666 lets a process without
    // capabilities open ptmx; mode/gid are the usual tty group 5 and 0620.
    if (absl::Status s = MountNewAt(
            "devpts", {{"newinstance", ""}, {"ptmxmode", "0666"}, {"mode", "0620"}, {"gid", "5"}},
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, at->get());
        !s.ok()) {
      return s;
    }
    ++mounted;
  }
  if (missing("dev/shm")) {
    absl::StatusOr<UniqueFd> at = MakeDirBeneath(dev->get(), "shm", 01777);
    if (!at.ok()) return at.status();
    // Pages of a tmpfs are charged to the memory cgroup of the process that
    // touches them, i.e. the workload's pod.
    if (absl::Status s = MountNewAt("tmpfs", {{"mode", "1777"}}, kNoSuidDevExec, at->get());
        !s.ok()) {
      return s;
    }
    ++mounted;
  }
  if (missing("sys")) {
    absl::StatusOr<UniqueFd> at = MakeDirBeneath(rootfs->get(), "sys", 0555);
    if (!at.ok()) return at.status();
    absl::StatusOr<UniqueFd> src = OpenHostDir("/sys");
    if (!src.ok()) return src.status();
    // Read-only: root-owned sysfs files are writable by a uid-0 workload
    // even without capabilities.
    if (absl::Status s =
            BindAt(src->get(), at->get(), true, kNoSuidDevExec | MOUNT_ATTR_RDONLY, true);
        !s.ok()) {
      return s;
    }
    ++mounted;
  }
  return mounted;
}

grpc::Status MountHelperService::PrepareRootfs(grpc::ServerContext* context,
                                               const v1::PrepareRootfsRequest* request,
                                               v1::Instance* response) {
  const v1::InstanceRef& ref = request->instance();
  absl::StatusOr<Call> call = Begin(context, Method::kPrepareRootfs, {{"instance", RefName(ref)}});
  if (!call.ok()) return ToGrpcStatus(call.status());
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
    return call->Finish(s);
  }
  if (request->lower_case() == v1::PrepareRootfsRequest::LOWER_NOT_SET) {
    return call->Finish(
        absl::InvalidArgumentError("give the lower layers: `layers` or `provider`"));
  }
  Ask ask(Method::kPrepareRootfs);
  ask.provider_layers = request->has_provider();
  absl::StatusOr<NamedInstance> instance = Authorize(&*call, ref, std::move(ask));
  if (!instance.ok()) return call->Finish(instance.status());

  PrepareLayers layers;
  KeyedLimiter::Slot wait_slot;  // held while the provider is waited for
  if (request->has_layers()) {
    layers.paths.assign(request->layers().paths().begin(), request->layers().paths().end());
  } else {
    if (absl::Status s = TakeProviderWait(call->peer(), &wait_slot); !s.ok()) {
      return call->Finish(s);
    }
    layers.provider_pod = &call->peer();
    layers.wait_ms = request->provider().wait_ms();
    layers.cancelled = [context] { return context->IsCancelled(); };
  }
  absl::StatusOr<Prepared> prepared =
      PrepareInstance(config_, &*instance, layers, &rootfs_mu_, &call->details());
  if (!prepared.ok()) return call->Finish(prepared.status());
  FillInstance(prepared->state.layout, prepared->state.view, response);
  response->set_created(prepared->created);
  call->details().emplace_back("created", prepared->created ? "true" : "false");
  return call->Finish(absl::OkStatus());
}

grpc::Status MountHelperService::ReleaseRootfs(grpc::ServerContext* context,
                                               const v1::ReleaseRootfsRequest* request,
                                               v1::ReleaseRootfsResponse* response) {
  const v1::InstanceRef& ref = request->instance();
  absl::StatusOr<Call> call = Begin(
      context, Method::kReleaseRootfs,
      {{"instance", RefName(ref)}, {"delete_data", request->delete_data() ? "true" : "false"}});
  if (!call.ok()) return ToGrpcStatus(call.status());
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
    return call->Finish(s);
  }
  Ask ask(Method::kReleaseRootfs);
  ask.delete_data = request->delete_data();
  absl::StatusOr<NamedInstance> instance = Authorize(&*call, ref, std::move(ask));
  if (!instance.ok()) return call->Finish(instance.status());

  absl::StatusOr<Released> released =
      ReleaseInstance(&*instance, request->delete_data(), &rootfs_mu_, &call->details());
  if (!released.ok()) return call->Finish(released.status());
  response->set_unmounted(released->unmounted);
  response->set_lazily_detached(released->lazily_detached);
  response->set_data_deleted(released->data_deleted);
  return call->Finish(absl::OkStatus());
}

grpc::Status MountHelperService::BindMount(grpc::ServerContext* context,
                                           const v1::BindMountRequest* request,
                                           v1::BindMountResponse* response) {
  const v1::InstanceRef& ref = request->instance();
  absl::StatusOr<Call> call = Begin(context, Method::kBindMount,
                                    {{"instance", RefName(ref)},
                                     {"source", request->source().substr(0, 512)},
                                     {"target", request->target().substr(0, 512)},
                                     {"read_only", request->read_only() ? "true" : "false"}});
  if (!call.ok()) return ToGrpcStatus(call.status());
  if (absl::Status s =
          CheckBindRequest(ref.namespace_(), ref.name(), request->source(), request->target());
      !s.ok()) {
    return call->Finish(s);
  }
  Ask ask(Method::kBindMount);
  ask.source = request->source();
  ask.bind_roots = config_.bind_roots;
  absl::StatusOr<NamedInstance> instance = Authorize(&*call, ref, std::move(ask));
  if (!instance.ok()) return call->Finish(instance.status());

  BindRequest bind;
  bind.source = request->source();
  bind.source_roots = BindSourceRoots(WhoIs(call->peer()), config_.bind_roots);
  bind.target = request->target();
  bind.read_only = request->read_only();
  absl::StatusOr<Bound> bound = BindIntoInstance(*instance, bind, &rootfs_mu_);
  if (!bound.ok()) return call->Finish(bound.status());
  if (bound->mount) FillMount(*bound->mount, response->mutable_mount());
  response->set_created(bound->created);
  call->details().emplace_back("created", bound->created ? "true" : "false");
  return call->Finish(absl::OkStatus());
}

grpc::Status MountHelperService::GetInstance(grpc::ServerContext* context,
                                             const v1::GetInstanceRequest* request,
                                             v1::Instance* response) {
  const v1::InstanceRef& ref = request->instance();
  absl::StatusOr<Call> call = Begin(context, Method::kGetInstance, {{"instance", RefName(ref)}});
  if (!call.ok()) return ToGrpcStatus(call.status());
  if (absl::Status s = CheckInstanceNames(ref.namespace_(), ref.name()); !s.ok()) {
    return call->Finish(s);
  }
  absl::StatusOr<NamedInstance> instance = Authorize(&*call, ref, Ask(Method::kGetInstance));
  if (!instance.ok()) return call->Finish(instance.status());

  absl::StatusOr<InstanceView> view = ViewInstance(*instance);
  if (!view.ok()) return call->Finish(view.status());
  FillInstance(instance->layout, *view, response);
  call->details().emplace_back("state", InstanceStatusName(view->status));
  return call->Finish(absl::OkStatus());
}

grpc::Status MountHelperService::ListInstances(grpc::ServerContext* context,
                                               const v1::ListInstancesRequest*,
                                               v1::ListInstancesResponse* response) {
  absl::StatusOr<Call> call = Begin(context, Method::kListInstances, {});
  if (!call.ok()) return ToGrpcStatus(call.status());
  const Peer& peer = call->peer();
  if (absl::Status s = Decide(WhoIs(peer), Ask(Method::kListInstances)); !s.ok()) {
    return call->Finish(s);
  }
  // A pod's list holds what GetInstance would show it, which depends on what
  // it has mounted of each instance (an operator's answer does not).
  std::function<bool(int)> visible;
  if (peer.kind() == PeerKind::kPod) {
    visible = [&peer](int instance_fd) {
      Who who = WhoIs(peer);
      absl::StatusOr<PodRelation> relation = PodRelationTo(peer, instance_fd);
      who.relation = relation.ok() ? *relation : PodRelation::kNone;
      return Decide(who, Ask(Method::kGetInstance)).ok();
    };
  }
  absl::StatusOr<std::vector<InstanceState>> listed = InstancesOnNode(config_, visible);
  if (!listed.ok()) return call->Finish(listed.status());
  for (const InstanceState& state : *listed) {
    FillInstance(state.layout, state.view, response->add_instances());
  }
  call->details().emplace_back("count", absl::StrCat(response->instances_size()));
  return call->Finish(absl::OkStatus());
}

grpc::Status MountHelperService::CheckRootfs(grpc::ServerContext* context,
                                             const v1::CheckRootfsRequest* request,
                                             v1::CheckRootfsResponse* response) {
  absl::StatusOr<Call> call = Begin(context, Method::kCheckRootfs, {});
  if (!call.ok()) return ToGrpcStatus(call.status());
  const Peer& peer = call->peer();
  if (absl::Status s = Decide(WhoIs(peer), Ask(Method::kCheckRootfs)); !s.ok()) {
    return call->Finish(s);
  }
  // An operator names the instance; a pod asks about the rootfs it sees.
  const v1::InstanceRef& ref = request->instance();
  absl::StatusOr<RootfsCheck> check =
      peer.is_operator() ? CheckNamedRootfs(config_, ref.namespace_(), ref.name(), &call->details())
                         : CheckPodRootfs(config_, peer, request->rootfs_path(), &call->details());
  if (!check.ok()) return call->Finish(check.status());
  response->set_ready(check->ready);
  if (check->found) {
    response->mutable_instance()->set_namespace_(check->ns);
    response->mutable_instance()->set_name(check->name);
  }
  if (!check->reason.empty()) response->set_reason(check->reason);
  return call->Finish(absl::OkStatus());
}

}  // namespace sc
