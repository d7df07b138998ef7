#include "daemon/identity/cgroup.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/unit/fixture.h"

namespace sc {
namespace {

constexpr char kUid[] = "3f2a9c4e-7b1d-4e8a-9c2f-1a2b3c4d5e6f";
constexpr char kContainer[] = "8d5c1f2e3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d";

std::string Fixture(const std::string& name) { return test::ReadFixture("cgroup/" + name); }

absl::StatusOr<PodCgroup> PodOf(const std::string& fixture) {
  absl::StatusOr<std::vector<CgroupLine>> lines = ParseCgroupFile(Fixture(fixture));
  if (!lines.ok()) return lines.status();
  return PodFromCgroupLines(*lines);
}

}  // namespace

TEST_CASE("cgroup lines are parsed field by field", "[cgroup]") {
  auto lines = ParseCgroupFile("3:cpu,cpuacct:/a:b/c\n0::/\n");
  REQUIRE(lines.ok());
  REQUIRE(lines->size() == 2);
  CHECK((*lines)[0].hierarchy_id == 3);
  CHECK((*lines)[0].controllers == "cpu,cpuacct");
  CHECK((*lines)[0].path == "/a:b/c");  // a ':' in the path is kept
  CHECK((*lines)[1].hierarchy_id == 0);
  CHECK((*lines)[1].controllers.empty());
}

TEST_CASE("malformed cgroup files are errors, not guesses", "[cgroup]") {
  CHECK(ParseCgroupFile(Fixture("malformed.txt")).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(!ParseCgroupFile("").ok());
  CHECK(!ParseCgroupFile("x::/\n").ok());
  CHECK(!ParseCgroupFile("-1::/\n").ok());
  CHECK(!ParseCgroupFile("0::relative\n").ok());
}

TEST_CASE("the kubelet's cgroup shapes name the pod", "[cgroup]") {
  struct Case {
    const char* fixture;
    const char* qos;
    CgroupDriver driver;
    int hierarchy;
  };
  const Case cases[] = {
      {"v1-cgroupfs-burstable.txt", "burstable", CgroupDriver::kCgroupfs, 12},
      {"v1-cgroupfs-guaranteed.txt", "guaranteed", CgroupDriver::kCgroupfs, 5},
      {"v1-systemd-besteffort.txt", "besteffort", CgroupDriver::kSystemd, 10},
      {"v2-systemd-burstable.txt", "burstable", CgroupDriver::kSystemd, 0},
      {"v2-systemd-besteffort-crio.txt", "besteffort", CgroupDriver::kSystemd, 0},
      {"v2-systemd-guaranteed.txt", "guaranteed", CgroupDriver::kSystemd, 0},
      {"v2-cgroupfs-besteffort.txt", "besteffort", CgroupDriver::kCgroupfs, 0},
      {"v2-kind-besteffort.txt", "besteffort", CgroupDriver::kSystemd, 0},
  };
  for (const Case& c : cases) {
    INFO(c.fixture);
    absl::StatusOr<PodCgroup> pod = PodOf(c.fixture);
    REQUIRE(pod.ok());
    CHECK(pod->pod_uid == kUid);
    CHECK(pod->container_id == kContainer);
    CHECK(pod->qos_class == c.qos);
    CHECK(pod->driver == c.driver);
    CHECK(pod->hierarchy_id == c.hierarchy);
  }
}

TEST_CASE("a process in the pod's own cgroup has no container id", "[cgroup]") {
  absl::StatusOr<PodCgroup> pod = PodOf("v2-systemd-pod-only.txt");
  REQUIRE(pod.ok());
  CHECK(pod->pod_uid == kUid);
  CHECK(pod->container_id.empty());
}

TEST_CASE("static pods' hash UIDs are accepted", "[cgroup]") {
  absl::StatusOr<PodCgroup> pod = PodOf("v2-static-pod.txt");
  REQUIRE(pod.ok());
  CHECK(pod->pod_uid == "0123456789abcdef0123456789abcdef");
}

TEST_CASE("what is not a kubelet pod cgroup names no pod", "[cgroup]") {
  for (const char* fixture : {"host-process.txt", "pod-outside-kubepods.txt",
                              // Paths relative to another cgroup namespace
                              // cannot be placed under kubepods: the daemon
                              // must read them from the host's namespace.
                              "v2-cgroupns-relative.txt"}) {
    INFO(fixture);
    CHECK(PodOf(fixture).status().code() == absl::StatusCode::kNotFound);
  }
  CHECK(!PodFromCgroupPath("/kubepods/burstable/podnot-a-uid/abc").ok());
  CHECK(!PodFromCgroupPath("/kubepods/burstable").ok());
  CHECK(!PodFromCgroupPath("/").ok());
}

TEST_CASE("hierarchies that disagree about the pod are refused", "[cgroup]") {
  CHECK(PodOf("disagreeing.txt").status().code() == absl::StatusCode::kFailedPrecondition);
}

}  // namespace sc
