#include "daemon/rootfs/instances.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/names.h"
#include "daemon/base/container_spec.h"

namespace sc {
namespace {

std::string Join(absl::string_view dir, absl::string_view rel) {
  if (rel.empty()) return std::string(dir);
  return absl::StrCat(dir, "/", rel);
}

// Device numbers of the mounts on `target` in the table.
std::set<dev_t> DevicesOn(const std::vector<MountInfoEntry>& table, absl::string_view target) {
  std::set<dev_t> devs;
  for (const MountInfoEntry& e : table) {
    if (e.target == target) devs.insert(e.devno);
  }
  return devs;
}

bool HasOption(absl::string_view options, absl::string_view option) {
  for (absl::string_view o : absl::StrSplit(options, ',')) {
    if (o == option) return true;
  }
  return false;
}

// The mount a lookup of `target` ends on, among `mounts` (those at or below
// one directory): the top of the stack of mounts on `target`, provided the
// mount that stack sits on is itself visible, up to one outside the set. A
// converted instance keeps an older /dev below its new one: what is mounted
// on that older /dev is hidden with it.
const MountInfoEntry* VisibleMountOn(const std::vector<MountInfoEntry>& mounts,
                                     absl::string_view target) {
  std::map<int, const MountInfoEntry*> by_id;
  for (const MountInfoEntry& e : mounts) by_id[e.id] = &e;
  auto on_top = [&](const MountInfoEntry& e) {
    for (const MountInfoEntry& o : mounts) {
      if (o.target == e.target && o.parent_id == e.id) return false;
    }
    return true;
  };
  auto visible = [&](const MountInfoEntry* e) {
    for (size_t depth = 0; depth < mounts.size(); ++depth) {
      if (!on_top(*e)) return false;
      // Down the stack to the mount it sits on.
      const MountInfoEntry* below = e;
      for (auto it = by_id.find(below->parent_id);
           it != by_id.end() && it->second->target == below->target && it->second != e;
           it = by_id.find(below->parent_id)) {
        below = it->second;
      }
      auto parent = by_id.find(below->parent_id);
      if (parent == by_id.end()) return true;
      e = parent->second;
    }
    return false;  // a cycle: a table we misread
  };
  for (const MountInfoEntry& e : mounts) {
    if (e.target == target && visible(&e)) return &e;
  }
  return nullptr;
}

std::string CleanBase(absl::string_view base) {
  std::string out(base);
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace

absl::Status CheckInstanceNames(absl::string_view ns, absl::string_view name) {
  std::string error = Dns1123LabelError(std::string_view(ns.data(), ns.size()));
  if (!error.empty()) return absl::InvalidArgumentError(absl::StrCat("namespace: ", error));
  error = Dns1123LabelError(std::string_view(name.data(), name.size()));
  if (!error.empty()) return absl::InvalidArgumentError(absl::StrCat("name: ", error));
  return absl::OkStatus();
}

InstanceLayout LayoutFor(absl::string_view base, absl::string_view ns, absl::string_view name) {
  InstanceLayout layout;
  layout.ns = std::string(ns);
  layout.name = std::string(name);
  std::string b = CleanBase(base);
  layout.dir = absl::StrCat(b == "/" ? "" : b, "/", ns, "/", name);
  layout.rootfs = layout.dir + "/rootfs";
  layout.upper = layout.dir + "/upper";
  layout.work = layout.dir + "/work";
  return layout;
}

const std::vector<RequiredMount>& RequiredMounts() {
  static const std::vector<RequiredMount> kMounts = {
      {"", "overlay"},
      {"proc", "proc"},
      {"proc masks", "masked /proc paths"},
      {"proc/sys", "read-only /proc/sys"},
      {"dev", "read-only tmpfs /dev"},
      {"dev/pts", "devpts"},
      {"dev/shm", "tmpfs"},
      {"sys", "read-only sysfs of its own"},
      {"sys/firmware", "masked /sys/firmware"},
  };
  return kMounts;
}

const char* InstanceStatusName(InstanceStatus status) {
  switch (status) {
    case InstanceStatus::kReleased:
      return "released";
    case InstanceStatus::kReady:
      return "ready";
    case InstanceStatus::kPartial:
      break;
  }
  return "partial";
}

namespace {

// What the instance stands on, the lowest mount on the rootfs itself: its
// overlay and layers, or why it is foreign.
void FindOverlay(absl::string_view rootfs, InstanceView* view) {
  const MountInfoEntry* base = nullptr;
  for (const MountInfoEntry& e : view->mounts) {
    if (e.target == rootfs) {
      base = &e;
      break;
    }
  }
  if (base == nullptr) {
    view->foreign = "mounts exist below the rootfs but nothing is mounted on the rootfs itself";
  } else if (base->fstype != "overlay") {
    view->foreign = absl::StrCat("a ", base->fstype, " (not an overlay) is mounted on the rootfs");
  } else {
    absl::StatusOr<OverlayLayers> layers = ParseOverlayOptions(base->fs_options);
    if (!layers.ok()) {
      view->foreign =
          absl::StrCat("the overlay's options are unreadable: ", layers.status().message());
    } else {
      view->has_overlay = true;
      view->overlay = *base;
      view->layers = *std::move(layers);
    }
  }
}

// Which of RequiredMounts() are there, each as a container gets it and not
// the node's: not what the table has at /dev, /dev/pts and /dev/shm (an
// older daemon's /dev bind shows those again), not a sysfs of the node's.
void FindRequiredMounts(const std::vector<MountInfoEntry>& table, absl::string_view rootfs,
                        InstanceView* view) {
  std::set<dev_t> host_dev = DevicesOn(table, "/dev");
  std::set<dev_t> host_pts = DevicesOn(table, "/dev/pts");
  std::set<dev_t> host_shm = DevicesOn(table, "/dev/shm");
  std::set<dev_t> sysfs;
  for (const MountInfoEntry& e : table) {
    if (e.fstype == "sysfs" && !PathAtOrBelow(e.target, rootfs)) sysfs.insert(e.devno);
  }
  const MountInfoEntry* dev = VisibleMountOn(view->mounts, Join(rootfs, "dev"));
  const MountInfoEntry* sys = VisibleMountOn(view->mounts, Join(rootfs, "sys"));
  // Whether what a lookup of <rootfs>/`rel` ends on is a `fstype` other than
  // the table's own `not_devices` (the node's copies an older /dev bind has).
  auto visible = [&](absl::string_view rel, absl::string_view fstype,
                     const std::set<dev_t>& not_devices) {
    const MountInfoEntry* e = VisibleMountOn(view->mounts, Join(rootfs, rel));
    return e != nullptr && e->fstype == fstype && not_devices.count(e->devno) == 0;
  };
  for (const RequiredMount& m : RequiredMounts()) {
    absl::string_view rel = m.rel;
    bool found = false;
    if (rel.empty()) {
      found = view->has_overlay;
    } else if (rel == "proc masks") {
      for (const char* masked : kMaskedProcPaths) {
        std::string target = Join(rootfs, absl::StrCat("proc/", masked));
        for (const MountInfoEntry& e : view->mounts) found = found || e.target == target;
      }
    } else if (rel == "dev") {
      found = dev != nullptr && dev->fstype == "tmpfs" && HasOption(dev->vfs_options, "ro") &&
              host_dev.count(dev->devno) == 0;
    } else if (rel == "dev/pts") {
      found = visible(rel, "devpts", host_pts);
    } else if (rel == "dev/shm") {
      found = visible(rel, "tmpfs", host_shm);
    } else if (rel == "sys") {
      found = sys != nullptr && sys->fstype == "sysfs" && HasOption(sys->vfs_options, "ro") &&
              sysfs.count(sys->devno) == 0;
    } else if (rel == "sys/firmware") {
      found = visible(rel, "tmpfs", {});
    } else {
      std::string target = Join(rootfs, rel);
      for (const MountInfoEntry& e : view->mounts) {
        if (e.target != target) continue;
        if (rel == "proc") {
          found = found || e.fstype == "proc";
        } else if (rel == "proc/sys") {
          found = found || (e.fstype == "proc" && HasOption(e.vfs_options, "ro"));
        }
      }
    }
    (found ? view->present : view->missing).emplace_back(rel);
  }
}

}  // namespace

InstanceView DeriveInstance(const std::vector<MountInfoEntry>& table, absl::string_view rootfs) {
  InstanceView view;
  for (const MountInfoEntry& e : table) {
    if (PathAtOrBelow(e.target, rootfs)) view.mounts.push_back(e);
  }
  if (view.mounts.empty()) {
    for (const RequiredMount& m : RequiredMounts()) view.missing.emplace_back(m.rel);
    return view;
  }

  FindOverlay(rootfs, &view);
  FindRequiredMounts(table, rootfs, &view);
  if (!view.foreign.empty()) {
    view.status = InstanceStatus::kPartial;
  } else if (view.missing.empty()) {
    view.status = InstanceStatus::kReady;
  } else {
    view.status = InstanceStatus::kPartial;
  }
  return view;
}

std::vector<std::pair<std::string, std::string>> InstancesInTable(
    const std::vector<MountInfoEntry>& table, absl::string_view base) {
  std::set<std::pair<std::string, std::string>> found;
  std::string b = CleanBase(base);
  std::string prefix = b == "/" ? "/" : b + "/";
  for (const MountInfoEntry& e : table) {
    absl::string_view rest = e.target;
    if (!absl::ConsumePrefix(&rest, prefix)) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(rest, '/');
    if (parts.size() < 3 || parts[2] != "rootfs") continue;
    if (!CheckInstanceNames(parts[0], parts[1]).ok()) continue;
    found.emplace(std::string(parts[0]), std::string(parts[1]));
  }
  return {found.begin(), found.end()};
}

std::vector<MountInfoEntry> UnmountOrder(const std::vector<MountInfoEntry>& mounts) {
  std::map<int, const MountInfoEntry*> by_id;
  for (const MountInfoEntry& e : mounts) by_id[e.id] = &e;
  // Depth within the set: a child or a stacked mount has its parent in the
  // set, so it is deeper than the parent and goes first.
  auto depth = [&](const MountInfoEntry& e) {
    int d = 0;
    const MountInfoEntry* cur = &e;
    std::set<int> seen;
    while (true) {
      auto it = by_id.find(cur->parent_id);
      if (it == by_id.end() || !seen.insert(cur->id).second) break;
      cur = it->second;
      ++d;
    }
    return d;
  };
  std::vector<std::pair<int, size_t>> order;
  for (size_t i = 0; i < mounts.size(); ++i) order.emplace_back(depth(mounts[i]), i);
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<MountInfoEntry> out;
  for (const auto& [d, i] : order) out.push_back(mounts[i]);
  return out;
}

}  // namespace sc
