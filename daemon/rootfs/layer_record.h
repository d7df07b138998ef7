#ifndef DAEMON_ROOTFS_LAYER_RECORD_H_
#define DAEMON_ROOTFS_LAYER_RECORD_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/rootfs/instances.h"
#include "daemon/rootfs/overlay.h"

namespace sc {

// What the daemon records of an instance's overlay, for kernels whose
// mountinfo does not show the layers' paths (layers handed over as
// /proc/self/fd/N, mounts.h): the real paths, written before the overlay is
// mounted, and the overlay's device number once it is. Kept in
// <base>/.state/<namespace>/<name>, out of every pod's reach (pods mount
// their instance directory or rootfs, never the base; no namespace name
// starts with a dot).
struct LayerRecord {
  OverlayLayers layers;
  std::optional<dev_t> devno;  // unset between the write and the mount
};

// Replaces the record (a temporary file renamed over it).
absl::Status WriteLayerRecord(int base_fd, const InstanceLayout& layout, const LayerRecord& record);

// The record, or NOT_FOUND.
absl::StatusOr<LayerRecord> ReadLayerRecord(int base_fd, const InstanceLayout& layout);

// Removes the record; a missing one is fine.
absl::Status RemoveLayerRecord(int base_fd, const InstanceLayout& layout);

// The text form (one "key value" line each, values C-escaped), exposed for
// the unit tests and the fuzzer.
std::string FormatLayerRecord(const LayerRecord& record);
absl::StatusOr<LayerRecord> ParseLayerRecord(absl::string_view text);

// Whether mountinfo shows `layers` as the magic links they were given as,
// rather than paths.
bool ShowsProcFdPaths(const OverlayLayers& layers);

// In `view`, the layers the record names instead of /proc/self/fd/N strings,
// when the record belongs to the overlay mounted now (its device number, or
// none yet: the daemon stopped between mount and record). Otherwise the
// view is left as it is, and when it shows /proc/self/fd/N strings that no
// record explains, it is marked foreign: the daemon cannot tell what is
// mounted there.
void ApplyLayerRecord(const absl::StatusOr<LayerRecord>& record, InstanceView* view);

}  // namespace sc

#endif  // DAEMON_ROOTFS_LAYER_RECORD_H_
