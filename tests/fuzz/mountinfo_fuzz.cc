// Mount tables are written by the kernel, but their paths, sources and
// overlay options are names that pods and runtimes chose: the mountinfo
// parser and everything derived from it must hold for any bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "daemon/rootfs/instances.h"
#include "daemon/rootfs/mountinfo.h"
#include "daemon/rootfs/overlay.h"
#include "daemon/rootfs/provider.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string content(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<sc::MountInfoEntry>> table = sc::ParseMountInfo(content);
  if (table.ok()) {
    for (const sc::MountInfoEntry& e : *table) {
      if (e.id <= 0 || e.target.empty() || e.target[0] != '/') __builtin_trap();
      if (e.fstype == "overlay") (void)sc::ParseOverlayOptions(e.fs_options);
    }
    sc::InstanceView view = sc::DeriveInstance(*table, "/var/lib/stoppablecontainer/a/b/rootfs");
    // Unmounting must cover exactly the mounts of the instance.
    if (sc::UnmountOrder(view.mounts).size() != view.mounts.size()) __builtin_trap();
    if (view.status == sc::InstanceStatus::kReady && !view.has_overlay) __builtin_trap();
    for (const auto& [ns, name] : sc::InstancesInTable(*table, "/var/lib/stoppablecontainer")) {
      if (!sc::CheckInstanceNames(ns, name).ok()) __builtin_trap();
    }
    (void)sc::RootOverlayOf(*table);
  }
  // The overlay option grammar on its own, and the escaping round trip.
  absl::StatusOr<std::vector<std::string>> dirs = sc::SplitLowerdirValue(content);
  if (dirs.ok()) {
    std::string option = sc::BuildLowerdirOption(*dirs);
    absl::StatusOr<std::vector<std::string>> back =
        sc::SplitLowerdirValue(option.substr(sizeof("lowerdir=") - 1));
    if (!back.ok() || *back != *dirs) __builtin_trap();
  }
  (void)sc::ParseOverlayOptions(content);
  (void)sc::EnvironHasRootfsMarker(content);
  return 0;
}
