#ifndef DAEMON_ROOTFS_ROOTFS_OPS_H_
#define DAEMON_ROOTFS_ROOTFS_OPS_H_

// The work of the rootfs RPCs, on plain values (no gRPC or protobuf type):
// what rootfs_service.cc runs once the policy (policy.h) has allowed a
// request. Those that learn what the audit record should say append it to
// `details` as they go, also when they then fail.
//
// State lives in the mount table only (instances.h derives it from
// /proc/self/mountinfo), so a restarted daemon re-adopts what is mounted.
// Every path from a request is opened without following symlinks (paths.h)
// and every mount targets the opened fd (mounts.h).

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"
#include "daemon/base/config.h"
#include "daemon/identity/audit.h"
#include "daemon/identity/peer.h"
#include "daemon/identity/policy.h"
#include "daemon/rootfs/instances.h"
#include "daemon/rootfs/mountinfo.h"

namespace sc {

// "ns/name" for messages and audit records, each name cut to 63 bytes (the
// longest a valid one is) whether or not it was checked.
std::string InstanceRefName(absl::string_view ns, absl::string_view name);

// The instance a request names, looked up.
struct NamedInstance {
  UniqueFd base;          // the instance base (--instance_base), O_PATH
  InstanceLayout layout;  // under the base's real path, as mountinfo names it
  // <base>/<ns>/<name>, O_PATH; NOT_FOUND when it does not exist.
  absl::StatusOr<UniqueFd> dir = absl::NotFoundError("not looked up");
};

// Opens the instance base (created when missing: it comes from the daemon's
// flags, not from a request) and the directory of the instance that the
// checked names `ns`/`name` name (never created here).
absl::StatusOr<NamedInstance> LookUpInstance(const DaemonConfig& config, absl::string_view ns,
                                             absl::string_view name);

// What `peer`'s pod has mounted of an instance, from the mounts it sees
// through its root; kNone when the instance's directory does not exist.
absl::StatusOr<PodRelation> PodRelationTo(const Peer& peer, int instance_fd);
absl::StatusOr<PodRelation> PodRelationTo(const Peer& peer, const NamedInstance& instance);

// An instance as the mount table shows it.
struct InstanceState {
  InstanceLayout layout;
  InstanceView view;
};

// PrepareRootfs: mounts what the instance lacks (its overlay on the lower
// layers, then proc, dev, sys and what goes below them), and nothing when it
// is READY on the same layers; never leaves a half-mounted instance behind.
// An instance whose directory does not exist gets one once its layers are
// found good (the policy lets only operators name such an instance).
struct PrepareLayers {
  // Explicit layers: paths under --layer_root, top-most first.
  std::vector<std::string> paths;
  // Else the layers of the rootfs container (ROOTFS_MARKER=true) of this
  // caller's pod, waited for at most wait_ms (0: --provider_wait; never more
  // than --provider_wait_max) or until `cancelled` says so.
  const Peer* provider_pod = nullptr;
  uint32_t wait_ms = 0;
  std::function<bool()> cancelled;
};
struct Prepared {
  InstanceState state;
  bool created = false;  // something was mounted
};
absl::StatusOr<Prepared> PrepareInstance(const DaemonConfig& config, NamedInstance* instance,
                                         const PrepareLayers& layers, std::mutex* mount_mu,
                                         AuditDetails* details);

// ReleaseRootfs: unmounts the instance (a busy mount is detached lazily) and
// keeps its data unless `delete_data`. Releasing what is not mounted, or an
// instance that does not exist, succeeds.
struct Released {
  uint32_t unmounted = 0;
  uint32_t lazily_detached = 0;
  bool data_deleted = false;
};
absl::StatusOr<Released> ReleaseInstance(NamedInstance* instance, bool delete_data,
                                         std::mutex* mount_mu, AuditDetails* details);

// BindMount: binds `source`, which must lie under one of `source_roots`
// (policy.h, BindSourceRoots; none: bind mounts are disabled), at `target`
// inside the READY instance's rootfs, nosuid and nodev; the same source there
// already is a no-op. Checked with CheckBindRequest first.
struct BindRequest {
  std::string source;
  std::vector<std::string> source_roots;
  std::string target;
  bool read_only = false;
};
struct Bound {
  bool created = false;
  std::optional<MountInfoEntry> mount;  // the mount now on the target
};
absl::Status CheckBindRequest(absl::string_view ns, absl::string_view name,
                              absl::string_view source, absl::string_view target);
absl::StatusOr<Bound> BindIntoInstance(const NamedInstance& instance, const BindRequest& request,
                                       std::mutex* mount_mu);

// GetInstance: NOT_FOUND when the instance has neither a directory nor mounts.
absl::StatusOr<InstanceView> ViewInstance(const NamedInstance& instance);

// ListInstances: every instance with a mount under the base; with `visible`,
// only those whose directory opens and which it accepts.
absl::StatusOr<std::vector<InstanceState>> InstancesOnNode(
    const DaemonConfig& config, const std::function<bool(int instance_fd)>& visible);

// CheckRootfs, for an operator by the instance's name, for a pod by where it
// sees its rootfs (`path`, "" for the default) in its own mount namespace.
struct RootfsCheck {
  bool ready = false;
  bool found = false;  // `ns`/`name` is the instance checked
  std::string ns;
  std::string name;
  std::string reason;  // when not ready
};
absl::StatusOr<RootfsCheck> CheckNamedRootfs(const DaemonConfig& config, absl::string_view ns,
                                             absl::string_view name, AuditDetails* details);
absl::StatusOr<RootfsCheck> CheckPodRootfs(const DaemonConfig& config, const Peer& peer,
                                           std::string path, AuditDetails* details);

}  // namespace sc

#endif  // DAEMON_ROOTFS_ROOTFS_OPS_H_
