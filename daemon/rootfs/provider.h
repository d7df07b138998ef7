#ifndef DAEMON_ROOTFS_PROVIDER_H_
#define DAEMON_ROOTFS_PROVIDER_H_

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "daemon/identity/cgroup.h"
#include "daemon/rootfs/mountinfo.h"
#include "daemon/rootfs/overlay.h"

namespace sc {

// True when a NUL-separated environment block (/proc/<pid>/environ) holds the
// entry ROOTFS_MARKER=true exactly.
bool EnvironHasRootfsMarker(absl::string_view environ);

// The overlay a process's root stands on, from its own mountinfo (where its
// root is "/"): the top-most mount on "/", when it is an overlay whose root
// is the overlay's root. nullopt when the root is something else.
absl::StatusOr<std::optional<OverlayLayers>> RootOverlayOf(
    const std::vector<MountInfoEntry>& table);

// The rootfs container of a pod, found and pinned.
struct ProviderProcess {
  pid_t pid = 0;
  UniqueFd pidfd;
  UniqueFd proc_dir;  // /proc/<pid>, verified against the pidfd
};

// Scans /proc once for a process whose cgroup names `pod_uid` and whose
// environment holds ROOTFS_MARKER=true. NOT_FOUND when there is none.
absl::StatusOr<ProviderProcess> FindProvider(absl::string_view pod_uid);

// The same, among the processes of the pod's cgroup directory
// `pod_cgroup_fd` and its container directories only.
absl::StatusOr<ProviderProcess> FindProviderInCgroup(int pod_cgroup_fd, absl::string_view pod_uid);

// Looks for the provider until it is found, `wait` runs out
// (DEADLINE_EXCEEDED) or `cancelled` says so (CANCELLED): in the pod's cgroup
// `pod_cgroup_fd` (woken by inotify when a container's cgroup appears), or
// in all of /proc when that is -1.
absl::StatusOr<ProviderProcess> WaitForProvider(absl::string_view pod_uid, int pod_cgroup_fd,
                                                absl::Duration wait,
                                                const std::function<bool()>& cancelled);

// The cgroup directory of the pod a peer's process belongs to (the parent of
// its container's), opened; NOT_FOUND when its hierarchy is not mounted here.
absl::StatusOr<UniqueFd> OpenPodCgroupDir(int peer_proc_dir, const PodCgroup& pod);

// The lower layers of a provider, opened (O_PATH directories):
//   * its root is an overlay: that overlay's lower directories, as the kernel
//     recorded them, opened without following symlinks. Its upper directory
//     is left out on purpose: it is the container's private, live writable
//     layer (runtime-made mount points, whatever it wrote since it started),
//     not part of the image, and overlayfs' behaviour is undefined when a
//     lower layer changes under a mounted overlay;
//   * otherwise its root directory itself (/proc/<pid>/root), which only
//     works when it is in the daemon's mount namespace (overlayfs cannot
//     use another namespace's mount as a layer): FAILED_PRECONDITION else.
struct ProviderLayers {
  std::vector<UniqueFd> fds;
  std::vector<std::string> described;  // for the audit log and messages
  bool from_overlay = false;
};
absl::StatusOr<ProviderLayers> OpenProviderLayers(const ProviderProcess& provider);

}  // namespace sc

#endif  // DAEMON_ROOTFS_PROVIDER_H_
