#ifndef DAEMON_ROOTFS_INSTANCES_H_
#define DAEMON_ROOTFS_INSTANCES_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/rootfs/mountinfo.h"
#include "daemon/rootfs/overlay.h"

namespace sc {

// Where an instance lives: <base>/<namespace>/<name>/{upper,work,rootfs}.
struct InstanceLayout {
  std::string ns;
  std::string name;
  std::string dir;
  std::string rootfs;
  std::string upper;
  std::string work;
};

// Checks both names (DNS-1123 labels) before they touch a path:
// INVALID_ARGUMENT otherwise.
absl::Status CheckInstanceNames(absl::string_view ns, absl::string_view name);

// The layout for checked names under `base` (an absolute path).
InstanceLayout LayoutFor(absl::string_view base, absl::string_view ns, absl::string_view name);

// The mounts that make a prepared rootfs, relative to it, in mount order.
// "" is the overlay itself.
struct RequiredMount {
  const char* rel;
  const char* what;
};
const std::vector<RequiredMount>& RequiredMounts();

enum class InstanceStatus { kReleased, kReady, kPartial };
const char* InstanceStatusName(InstanceStatus status);

// What the mount table says about one instance.
struct InstanceView {
  InstanceStatus status = InstanceStatus::kReleased;
  // Every mount at or below the rootfs, in mount-table order (outermost
  // first).
  std::vector<MountInfoEntry> mounts;
  // The overlay at the rootfs, when there is one.
  bool has_overlay = false;
  MountInfoEntry overlay;
  OverlayLayers layers;
  // Something other than our overlay is mounted on the rootfs (or the
  // overlay's options are unreadable): the instance must not be touched.
  std::string foreign;
  // Which of RequiredMounts() are in place (by rel).
  std::vector<std::string> present;
  std::vector<std::string> missing;
};

// Derives the state of the instance whose rootfs is at `rootfs` from a
// mount table (a pure function: unit tests feed fixtures). A mount counts as
// in place when:
//   ""            an overlay mounted on the rootfs itself;
//   proc          a proc mount on <rootfs>/proc;
//   proc masks    a mount on any of the masked /proc paths (container_spec.h);
//   proc/sys      a read-only proc mount on <rootfs>/proc/sys;
//   dev           what a lookup of <rootfs>/dev ends on (the top of the
//                 mounts there) is a read-only tmpfs that is not the
//                 table's own /dev (an older daemon's bind of the node's
//                 /dev counts as missing: it is converted);
//   dev/pts, dev/shm
//                 what a lookup of those paths ends on is a devpts, a tmpfs,
//                 not the table's own /dev/pts, /dev/shm (what is mounted on
//                 an older /dev covered by a new one is hidden with it);
//   sys           what a lookup of <rootfs>/sys ends on is a read-only
//                 sysfs of a device no sysfs outside the rootfs has (the
//                 node's, bound in by an older daemon, counts as missing);
//   sys/firmware  what a lookup of <rootfs>/sys/firmware ends on is a tmpfs.
InstanceView DeriveInstance(const std::vector<MountInfoEntry>& table, absl::string_view rootfs);

// Instances with a mount on <base>/<ns>/<name>/rootfs in the table, as
// (namespace, name) pairs with valid names, sorted, without duplicates.
std::vector<std::pair<std::string, std::string>> InstancesInTable(
    const std::vector<MountInfoEntry>& table, absl::string_view base);

// The mounts of `view` in the order they must be unmounted: children before
// their parents, stacked mounts before what they cover.
std::vector<MountInfoEntry> UnmountOrder(const std::vector<MountInfoEntry>& mounts);

}  // namespace sc

#endif  // DAEMON_ROOTFS_INSTANCES_H_
