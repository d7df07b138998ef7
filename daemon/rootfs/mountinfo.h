#ifndef DAEMON_ROOTFS_MOUNTINFO_H_
#define DAEMON_ROOTFS_MOUNTINFO_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sc {

// One line of /proc/<pid>/mountinfo, with the kernel's octal escapes (\040...)
// of root, target and source undone by libmount. Superblock options are kept
// as the kernel printed them, still escaped (overlay.h splits, then
// unescapes).
struct MountInfoEntry {
  int id = 0;
  int parent_id = 0;
  dev_t devno = 0;
  std::string root;    // the mount's root inside its filesystem
  std::string target;  // mount point, relative to the reading process's root
  std::string vfs_options;
  std::string optional_fields;  // "shared:5 master:3" ...
  std::string fstype;
  std::string source;
  std::string fs_options;  // superblock options
  bool shared = false;
  bool slave = false;
};

// Parses mountinfo text with libmount. A pure function (the text is handed to
// libmount through a memory stream) so that unit tests and fuzzers can feed it
// fixtures. Any line libmount cannot read, or that does not start with the two
// mount ids, makes the whole text INVALID_ARGUMENT: a misread mount table is
// never half-used.
absl::StatusOr<std::vector<MountInfoEntry>> ParseMountInfo(absl::string_view text);

// Reads and parses "mountinfo" relative to `proc_dir_fd` (an fd of /proc/<pid>
// or of /proc/self).
absl::StatusOr<std::vector<MountInfoEntry>> ReadMountInfoAt(int proc_dir_fd);

// The daemon's own mount table (/proc/self/mountinfo).
absl::StatusOr<std::vector<MountInfoEntry>> ReadSelfMountInfo();

// True when `path` is `dir` or lies below it (component-wise, so "/a/bc" is not
// below "/a/b").
bool PathAtOrBelow(absl::string_view path, absl::string_view dir);

}  // namespace sc

#endif  // DAEMON_ROOTFS_MOUNTINFO_H_
