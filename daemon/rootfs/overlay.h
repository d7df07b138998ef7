#ifndef DAEMON_ROOTFS_OVERLAY_H_
#define DAEMON_ROOTFS_OVERLAY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sc {

// The layers of an overlayfs mount as its superblock options tell them.
struct OverlayLayers {
  std::vector<std::string> lowerdirs;  // top-most first
  std::string upperdir;                // "" for a read-only overlay
  std::string workdir;
};

// Undoes the kernel's mountinfo escapes (\NNN octal: \040 space, \054 comma,
// \134 backslash, ...). Other backslashes are kept.
std::string UnmangleMountInfo(absl::string_view text);

// Escapes one directory for the legacy "lowerdir=a:b" option: overlayfs
// splits on ':' and the mount option parser on ',', both honouring '\'.
std::string EscapeOverlayPath(absl::string_view path);

// "lowerdir=<escaped>:<escaped>..." for mount(2)'s data (legacy interface).
std::string BuildLowerdirOption(const std::vector<std::string>& lowerdirs);

// Splits a legacy lowerdir value ("a:b\:c") into directories, undoing the
// '\' escapes. Data-only layers ("::") and empty entries are INVALID_ARGUMENT.
absl::StatusOr<std::vector<std::string>> SplitLowerdirValue(absl::string_view value);

// Reads the layers out of an overlay mount's superblock options as printed in
// mountinfo: both the legacy "lowerdir=a:b" form and the per-layer
// "lowerdir+=a,lowerdir+=b" form the kernel prints for layers given by fd or
// one by one. INVALID_ARGUMENT when there is no lower layer or both forms.
absl::StatusOr<OverlayLayers> ParseOverlayOptions(absl::string_view fs_options);

}  // namespace sc

#endif  // DAEMON_ROOTFS_OVERLAY_H_
