#include "daemon/rootfs/instances.h"

#include <sys/sysmacros.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <sstream>

#include "daemon/rootfs/provider.h"

namespace sc {
namespace {

constexpr char kRootfs[] = "/var/lib/stoppablecontainer/team-a/box/rootfs";

std::vector<MountInfoEntry> Table(const std::string& name) {
  std::ifstream in(std::string(SC_FIXTURES) + "/mountinfo/" + name);
  REQUIRE(in.good());
  std::stringstream content;
  content << in.rdbuf();
  auto table = ParseMountInfo(content.str());
  REQUIRE(table.ok());
  return *table;
}

}  // namespace

TEST_CASE("names are DNS-1123 labels before they become paths", "[instances]") {
  CHECK(CheckInstanceNames("team-a", "box").ok());
  CHECK_FALSE(CheckInstanceNames("..", "box").ok());
  CHECK_FALSE(CheckInstanceNames("team-a", "a/b").ok());
  CHECK_FALSE(CheckInstanceNames("Team", "box").ok());
  CHECK_FALSE(CheckInstanceNames("", "box").ok());
  CHECK_FALSE(CheckInstanceNames("a", std::string(64, 'a')).ok());
  InstanceLayout l = LayoutFor("/var/lib/stoppablecontainer/", "team-a", "box");
  CHECK(l.dir == "/var/lib/stoppablecontainer/team-a/box");
  CHECK(l.rootfs == kRootfs);
  CHECK(l.upper == "/var/lib/stoppablecontainer/team-a/box/upper");
  CHECK(l.work == "/var/lib/stoppablecontainer/team-a/box/work");
}

TEST_CASE("a fully mounted instance is READY, with its layers", "[instances]") {
  InstanceView view = DeriveInstance(Table("instance-ready-oci.txt"), kRootfs);
  CHECK(view.status == InstanceStatus::kReady);
  CHECK(view.foreign.empty());
  CHECK(view.missing.empty());
  REQUIRE(view.has_overlay);
  CHECK(view.overlay.id == 44);
  CHECK(view.layers.lowerdirs.size() == 2);
  CHECK(view.layers.upperdir == "/var/lib/stoppablecontainer/team-a/box/upper");
  CHECK(view.mounts.size() == 14);
  CHECK(view.mounts.front().target == kRootfs);
}

TEST_CASE("an instance an older daemon prepared lacks what a container gets", "[instances]") {
  // The node's /dev and /sys bound in, no masked paths: what the next
  // prepare adds over them.
  InstanceView view = DeriveInstance(Table("instance-ready.txt"), kRootfs);
  CHECK(view.status == InstanceStatus::kPartial);
  CHECK(view.missing == std::vector<std::string>{"proc masks", "dev", "sys", "sys/firmware"});
  CHECK(view.present == std::vector<std::string>{"", "proc", "proc/sys", "dev/pts", "dev/shm"});
  // Once converted, the new mounts cover the old ones: READY, the old binds
  // still below them.
  InstanceView converted = DeriveInstance(Table("instance-converted.txt"), kRootfs);
  CHECK(converted.status == InstanceStatus::kReady);
  CHECK(converted.missing.empty());
  CHECK(converted.mounts.size() == view.mounts.size() + 7);
}

TEST_CASE("copies brought by the /dev bind do not count as our devpts and shm", "[instances]") {
  // Overlay, proc and the /dev bind with the host's pts/shm copies: partial.
  InstanceView view = DeriveInstance(Table("instance-partial.txt"), kRootfs);
  CHECK(view.status == InstanceStatus::kPartial);
  CHECK(view.missing == std::vector<std::string>{"proc masks", "proc/sys", "dev", "dev/pts",
                                                 "dev/shm", "sys", "sys/firmware"});
  CHECK(view.present == std::vector<std::string>{"", "proc"});
}

TEST_CASE("a writable /dev, or a /sys of the node's, is not a container's", "[instances]") {
  auto table = Table("instance-ready-oci.txt");
  for (MountInfoEntry& e : table) {
    if (e.target == std::string(kRootfs) + "/dev") e.vfs_options = "rw,nosuid,noexec,relatime";
  }
  CHECK(DeriveInstance(table, kRootfs).missing == std::vector<std::string>{"dev"});
  table = Table("instance-ready-oci.txt");
  for (MountInfoEntry& e : table) {
    if (e.target == std::string(kRootfs) + "/sys") e.devno = makedev(0, 22);  // the node's sysfs
  }
  CHECK(DeriveInstance(table, kRootfs).missing == std::vector<std::string>{"sys"});
}

TEST_CASE("an instance with nothing mounted is RELEASED", "[instances]") {
  InstanceView view = DeriveInstance(Table("host-private.txt"), kRootfs);
  CHECK(view.status == InstanceStatus::kReleased);
  CHECK(view.mounts.empty());
  CHECK(view.missing.size() == RequiredMounts().size());
}

TEST_CASE("something else on the rootfs is foreign", "[instances]") {
  auto table = Table("kind-node-shared.txt");
  InstanceView bad = DeriveInstance(table, "/var/lib/stoppablecontainer/Bad_NS/x/rootfs");
  CHECK_FALSE(bad.foreign.empty());
  CHECK(bad.status == InstanceStatus::kPartial);
  InstanceView web = DeriveInstance(table, "/var/lib/stoppablecontainer/demo/web/rootfs");
  CHECK(web.foreign.empty());
  CHECK(web.has_overlay);
  CHECK(web.status == InstanceStatus::kPartial);  // no proc, dev, sys
}

TEST_CASE("instances are listed from the table, invalid names skipped", "[instances]") {
  auto found = InstancesInTable(Table("kind-node-shared.txt"), "/var/lib/stoppablecontainer");
  CHECK(found == std::vector<std::pair<std::string, std::string>>{{"demo", "db"}, {"demo", "web"}});
  auto ready = InstancesInTable(Table("instance-ready.txt"), "/var/lib/stoppablecontainer/");
  CHECK(ready == std::vector<std::pair<std::string, std::string>>{{"team-a", "box"}});
}

TEST_CASE("unmount order puts children and stacked mounts first", "[instances]") {
  InstanceView view = DeriveInstance(Table("instance-converted.txt"), kRootfs);
  std::vector<MountInfoEntry> order = UnmountOrder(view.mounts);
  REQUIRE(order.size() == view.mounts.size());
  CHECK(order.back().id == 44);  // the overlay last
  std::map<int, size_t> position;
  for (size_t i = 0; i < order.size(); ++i) position[order[i].id] = i;
  for (const MountInfoEntry& e : order) {
    if (position.count(e.parent_id)) {
      INFO(e.id << " under " << e.parent_id);
      CHECK(position[e.id] < position[e.parent_id]);
    }
  }
}

TEST_CASE("the provider's root overlay gives its image layers", "[provider]") {
  auto layers = RootOverlayOf(Table("containerd-container.txt"));
  REQUIRE(layers.ok());
  REQUIRE(layers->has_value());
  CHECK((*layers)->lowerdirs.size() == 2);
  // A root that is not an overlay: none.
  auto host = RootOverlayOf(Table("host-private.txt"));
  REQUIRE(host.ok());
  CHECK_FALSE(host->has_value());
}

TEST_CASE("the rootfs marker is one exact environment entry", "[provider]") {
  using namespace std::string_literals;
  CHECK(EnvironHasRootfsMarker("PATH=/bin\0ROOTFS_MARKER=true\0"s));
  CHECK(EnvironHasRootfsMarker("ROOTFS_MARKER=true"s));
  CHECK_FALSE(EnvironHasRootfsMarker("ROOTFS_MARKER=truex\0"s));
  CHECK_FALSE(EnvironHasRootfsMarker("XROOTFS_MARKER=true\0"s));
  CHECK_FALSE(EnvironHasRootfsMarker("ROOTFS_MARKER=false\0"s));
  CHECK_FALSE(EnvironHasRootfsMarker(""s));
}

}  // namespace sc
