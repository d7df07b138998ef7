// The daemon's record of an instance's layers (daemon/rootfs/layer_record.h), for
// kernels whose mountinfo shows /proc/self/fd/N instead of the layers' paths.
#include "daemon/rootfs/layer_record.h"

#include <sys/sysmacros.h>

#include <catch2/catch.hpp>

namespace sc {
namespace {

InstanceView OverlayView(std::vector<std::string> lowers, std::string upper, dev_t devno) {
  InstanceView view;
  view.has_overlay = true;
  view.status = InstanceStatus::kReady;
  view.overlay.devno = devno;
  view.layers.lowerdirs = std::move(lowers);
  view.layers.upperdir = std::move(upper);
  return view;
}

}  // namespace

TEST_CASE("a layer record round-trips, odd paths included", "[layer_record]") {
  LayerRecord record;
  record.layers.lowerdirs = {"/var/lib/a b", "/x:y,z", "/new\nline", "/back\\slash"};
  record.layers.upperdir = "/base/ns/name/upper";
  record.layers.workdir = "/base/ns/name/work";
  record.devno = makedev(0, 57);
  absl::StatusOr<LayerRecord> back = ParseLayerRecord(FormatLayerRecord(record));
  REQUIRE(back.ok());
  CHECK(back->layers.lowerdirs == record.layers.lowerdirs);
  CHECK(back->layers.upperdir == record.layers.upperdir);
  CHECK(back->layers.workdir == record.layers.workdir);
  REQUIRE(back->devno.has_value());
  CHECK(*back->devno == makedev(0, 57));
  record.devno.reset();
  back = ParseLayerRecord(FormatLayerRecord(record));
  REQUIRE(back.ok());
  CHECK_FALSE(back->devno.has_value());
}

TEST_CASE("a damaged layer record is refused, never half read", "[layer_record]") {
  for (const char* text : {"", "upper /u\n", "lower /l\n", "upper /u\nlower /l\nmystery 1\n",
                           "upper /u\nlower /l\ndevno x:1\n", "upper /u\nlower \\q\n"}) {
    INFO(text);
    CHECK(absl::IsDataLoss(ParseLayerRecord(text).status()));
  }
}

TEST_CASE("the record stands in for /proc/self/fd/N layers of its own mount only",
          "[layer_record]") {
  LayerRecord record;
  record.layers.lowerdirs = {"/layers/image"};
  record.layers.upperdir = "/base/ns/a/upper";
  record.devno = makedev(0, 40);

  InstanceView real = OverlayView({"/layers/image"}, "/base/ns/a/upper", makedev(0, 40));
  CHECK_FALSE(ShowsProcFdPaths(real.layers));
  ApplyLayerRecord(record, &real);
  CHECK(real.layers.lowerdirs == std::vector<std::string>{"/layers/image"});

  InstanceView fds = OverlayView({"/proc/self/fd/12"}, "/proc/self/fd/13", makedev(0, 40));
  CHECK(ShowsProcFdPaths(fds.layers));
  ApplyLayerRecord(record, &fds);
  CHECK(fds.has_overlay);
  CHECK(fds.layers.lowerdirs == record.layers.lowerdirs);
  CHECK(fds.layers.upperdir == record.layers.upperdir);

  // Written before the mount, the daemon stopped before it added the devno.
  LayerRecord early = record;
  early.devno.reset();
  InstanceView fresh = OverlayView({"/proc/self/fd/9"}, "/proc/self/fd/10", makedev(0, 99));
  ApplyLayerRecord(early, &fresh);
  CHECK(fresh.has_overlay);
  CHECK(fresh.layers.lowerdirs == record.layers.lowerdirs);

  InstanceView other = OverlayView({"/proc/self/fd/12"}, "/proc/self/fd/13", makedev(0, 41));
  ApplyLayerRecord(record, &other);
  CHECK_FALSE(other.has_overlay);
  CHECK(other.status == InstanceStatus::kPartial);
  CHECK(other.foreign.find("belongs to another mount") != std::string::npos);

  InstanceView missing = OverlayView({"/proc/self/fd/12"}, "/proc/self/fd/13", makedev(0, 40));
  ApplyLayerRecord(absl::NotFoundError("open ns/a: No such file"), &missing);
  CHECK_FALSE(missing.has_overlay);
  CHECK(missing.foreign.find("is missing") != std::string::npos);
}

}  // namespace sc
