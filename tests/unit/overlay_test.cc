#include "daemon/rootfs/overlay.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "daemon/rootfs/mountinfo.h"
#include "tests/unit/fixture.h"

namespace sc {
namespace {

std::string Fixture(const std::string& name) { return test::ReadFixture("mountinfo/" + name); }

}  // namespace

TEST_CASE("overlay paths are escaped for the legacy lowerdir option", "[overlay]") {
  CHECK(EscapeOverlayPath("/a/b") == "/a/b");
  CHECK(EscapeOverlayPath("/a:b,c\\d") == "/a\\:b\\,c\\\\d");
  CHECK(BuildLowerdirOption({"/l1", "/l:2"}) == "lowerdir=/l1:/l\\:2");
}

TEST_CASE("legacy lowerdir values split on unescaped colons", "[overlay]") {
  auto dirs = SplitLowerdirValue("/a\\:b:/c\\\\:/d,e");
  REQUIRE(dirs.ok());
  CHECK(*dirs == std::vector<std::string>{"/a:b", "/c\\", "/d,e"});
  // Round trip through the escaping.
  std::vector<std::string> odd = {"/x:y", "/p,q", "/r\\s", "/plain"};
  std::string option = BuildLowerdirOption(odd);
  auto back = SplitLowerdirValue(option.substr(std::string("lowerdir=").size()));
  REQUIRE(back.ok());
  CHECK(*back == odd);
  CHECK_FALSE(SplitLowerdirValue("/a::/data").ok());  // data-only layers
  CHECK_FALSE(SplitLowerdirValue("/a:").ok());
  CHECK_FALSE(SplitLowerdirValue("").ok());
  CHECK_FALSE(SplitLowerdirValue("/a\\").ok());
}

TEST_CASE("mountinfo octal escapes are undone", "[overlay]") {
  CHECK(UnmangleMountInfo("a\\040b\\054c\\134d") == "a b,c\\d");
  CHECK(UnmangleMountInfo("keep\\x\\12") == "keep\\x\\12");
}

TEST_CASE("overlay layers are read from both option forms the kernel prints", "[overlay]") {
  auto table = ParseMountInfo(Fixture("escaped.txt"));
  REQUIRE(table.ok());
  auto legacy = ParseOverlayOptions((*table)[0].fs_options);
  REQUIRE(legacy.ok());
  CHECK(legacy->lowerdirs ==
        std::vector<std::string>{"/tmp/sc-test-exp/l:2", "/tmp/sc-test-exp/a,b",
                                 "/tmp/sc-test-exp/c d", "/tmp/sc-test-exp/e\\f"});
  CHECK(legacy->upperdir.empty());
  auto appended = ParseOverlayOptions((*table)[1].fs_options);
  REQUIRE(appended.ok());
  CHECK(appended->lowerdirs == std::vector<std::string>{"/tmp/sc-test-exp/a,b",
                                                        "/tmp/sc-test-exp/c d",
                                                        "/tmp/sc-test-exp/e\\f"});

  auto container = ParseMountInfo(Fixture("containerd-container.txt"));
  REQUIRE(container.ok());
  auto layers = ParseOverlayOptions((*container)[0].fs_options);
  REQUIRE(layers.ok());
  REQUIRE(layers->lowerdirs.size() == 2);
  CHECK(layers->lowerdirs[0] ==
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/412/fs");
  CHECK(layers->upperdir ==
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/415/fs");
  CHECK(layers->workdir ==
        "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/415/work");
}

TEST_CASE("overlay options without layers or with both forms are refused", "[overlay]") {
  CHECK_FALSE(ParseOverlayOptions("rw,upperdir=/u,workdir=/w").ok());
  CHECK_FALSE(ParseOverlayOptions("rw,lowerdir=/a,lowerdir+=/b").ok());
  CHECK_FALSE(ParseOverlayOptions("rw,lowerdir=/a,lowerdir=/b").ok());
}

}  // namespace sc
