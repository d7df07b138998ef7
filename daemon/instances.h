#ifndef DAEMON_INSTANCES_H_
#define DAEMON_INSTANCES_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/mountinfo.h"
#include "daemon/overlay.h"

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
//   ""         an overlay mounted on the rootfs itself;
//   proc       a proc mount on <rootfs>/proc;
//   proc/sys   a read-only proc mount on <rootfs>/proc/sys;
//   dev, sys   a mount on <rootfs>/dev (resp. /sys) of the same device as the
//              table's own /dev (resp. sysfs);
//   dev/pts    a devpts, dev/shm a tmpfs, on those paths, that is not one of
//              the copies the recursive /dev bind brought along (those share
//              a device number with the table's own /dev/pts, /dev/shm).
InstanceView DeriveInstance(const std::vector<MountInfoEntry>& table, absl::string_view rootfs);

// Instances with a mount on <base>/<ns>/<name>/rootfs in the table, as
// (namespace, name) pairs with valid names, sorted, without duplicates.
std::vector<std::pair<std::string, std::string>> InstancesInTable(
    const std::vector<MountInfoEntry>& table, absl::string_view base);

// The mounts of `view` in the order they must be unmounted: children before
// their parents, stacked mounts before what they cover.
std::vector<MountInfoEntry> UnmountOrder(const std::vector<MountInfoEntry>& mounts);

}  // namespace sc

#endif  // DAEMON_INSTANCES_H_
