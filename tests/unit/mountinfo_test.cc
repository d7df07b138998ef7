#include "daemon/rootfs/mountinfo.h"

#include <sys/sysmacros.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/unit/fixture.h"

namespace sc {
namespace {

std::string Fixture(const std::string& name) { return test::ReadFixture("mountinfo/" + name); }

}  // namespace

TEST_CASE("a host mount table is read line by line with libmount", "[mountinfo]") {
  auto table = ParseMountInfo(Fixture("host-private.txt"));
  REQUIRE(table.ok());
  REQUIRE(table->size() == 19);
  const MountInfoEntry& dev = (*table)[2];
  CHECK(dev.id == 24);
  CHECK(dev.parent_id == 27);
  CHECK(major(dev.devno) == 0);
  CHECK(minor(dev.devno) == 6);
  CHECK(dev.root == "/");
  CHECK(dev.target == "/dev");
  CHECK(dev.fstype == "devtmpfs");
  CHECK(dev.source == "devtmpfs");
  CHECK(dev.vfs_options == "rw,relatime");
  CHECK(dev.fs_options == "rw,size=12334524k,nr_inodes=3083631,mode=755");
  CHECK_FALSE(dev.shared);
  CHECK_FALSE(dev.slave);
}

TEST_CASE("propagation fields say shared and slave", "[mountinfo]") {
  auto table = ParseMountInfo(Fixture("kind-node-shared.txt"));
  REQUIRE(table.ok());
  REQUIRE(table->size() == 8);
  CHECK((*table)[0].shared);
  CHECK_FALSE((*table)[0].slave);
  CHECK((*table)[3].shared);
  CHECK((*table)[3].slave);
  CHECK((*table)[3].optional_fields == "shared:6 master:4");
  CHECK((*table)[4].root == "/var/lib/docker/volumes/kind/_data");
}

TEST_CASE("escaped targets are unescaped, options kept as printed", "[mountinfo]") {
  auto table = ParseMountInfo(Fixture("escaped.txt"));
  REQUIRE(table.ok());
  REQUIRE(table->size() == 2);
  CHECK((*table)[1].target == "/tmp/sc-test-exp/m two");
  CHECK((*table)[1].fs_options.find("lowerdir+=/tmp/sc-test-exp/a\\054b") != std::string::npos);
}

TEST_CASE("a table that is not mountinfo is refused whole", "[mountinfo]") {
  CHECK(ParseMountInfo(Fixture("malformed.txt")).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ParseMountInfo(Fixture("fstab-shaped.txt")).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(ParseMountInfo("1 2 x\n").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(ParseMountInfo(std::string("1 2 0:1 / /a\0b rw - ext4 x rw\n", 30)).status().code() ==
        absl::StatusCode::kInvalidArgument);
  auto empty = ParseMountInfo("");
  REQUIRE(empty.ok());
  CHECK(empty->empty());
}

TEST_CASE("the live mount table parses", "[mountinfo]") {
  auto table = ReadSelfMountInfo();
  REQUIRE(table.ok());
  CHECK_FALSE(table->empty());
}

TEST_CASE("paths below a directory are matched by component", "[mountinfo]") {
  CHECK(PathAtOrBelow("/a/b", "/a/b"));
  CHECK(PathAtOrBelow("/a/b/c", "/a/b"));
  CHECK_FALSE(PathAtOrBelow("/a/bc", "/a/b"));
  CHECK_FALSE(PathAtOrBelow("/a", "/a/b"));
  CHECK(PathAtOrBelow("/x", "/"));
}

}  // namespace sc
