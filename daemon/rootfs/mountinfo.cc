#include "daemon/rootfs/mountinfo.h"

#include <fcntl.h>
#include <libmount/libmount.h>
#include <stdio.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/unique_fd.h"
#include "daemon/base/fs_util.h"

namespace sc {
namespace {

// A mount table can be big on a busy node (thousands of container mounts).
constexpr size_t kMaxMountInfoBytes = 64 << 20;

struct TableDeleter {
  void operator()(libmnt_table* t) const { mnt_unref_table(t); }
};
struct IterDeleter {
  void operator()(libmnt_iter* i) const { mnt_free_iter(i); }
};
struct FileCloser {
  void operator()(FILE* f) const { fclose(f); }
};

int FatalParseError(libmnt_table* table, const char* filename, int line) {
  int* bad_line = static_cast<int*>(mnt_table_get_userdata(table));
  if (bad_line != nullptr && *bad_line == 0) *bad_line = line;
  return -1;  // abort parsing: never skip a line of the kernel's table
}

std::string Str(const char* s) { return s ? std::string(s) : std::string(); }

// libmount guesses the format from the first line and would read anything
// else as an fstab, so check that every line looks like mountinfo first.
// Also returns each line's superblock options exactly as the kernel printed
// them: libmount unescapes options, which makes a ',' inside an overlay path
// (printed as \054) indistinguishable from the option separator.
absl::Status CheckLineShapes(absl::string_view text, std::vector<std::string>* raw_fs_options) {
  size_t number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    if (line.empty()) continue;
    // Fields are escaped by the kernel, so " - " only ever ends the optional
    // fields; after it come fstype, source and superblock options.
    size_t sep = line.find(" - ");
    std::vector<absl::string_view> tail;
    if (sep != absl::string_view::npos) tail = absl::StrSplit(line.substr(sep + 3), ' ');
    raw_fs_options->emplace_back(tail.size() >= 3 ? tail[2] : "");
    size_t i = 0;
    for (int field = 0; field < 2; ++field) {
      size_t start = i;
      while (i < line.size() && absl::ascii_isdigit(static_cast<unsigned char>(line[i]))) ++i;
      if (i == start || i >= line.size() || line[i] != ' ') {
        return absl::InvalidArgumentError(
            absl::StrCat("mountinfo line ", number, " does not start with two mount ids"));
      }
      ++i;
    }
    if (line.find('\0') != absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("mountinfo line ", number, " has a NUL"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool PathAtOrBelow(absl::string_view path, absl::string_view dir) {
  if (dir == "/") return absl::StartsWith(path, "/");
  if (!absl::StartsWith(path, dir)) return false;
  return path.size() == dir.size() || path[dir.size()] == '/';
}

absl::StatusOr<std::vector<MountInfoEntry>> ParseMountInfo(absl::string_view text) {
  std::vector<MountInfoEntry> entries;
  std::vector<std::string> raw_fs_options;
  if (absl::Status shapes = CheckLineShapes(text, &raw_fs_options); !shapes.ok()) return shapes;
  const size_t lines = raw_fs_options.size();
  if (lines == 0) return entries;

  // libmount reads a FILE*; a memory stream keeps this function pure.
  std::string copy(text);
  std::unique_ptr<FILE, FileCloser> stream(fmemopen(copy.data(), copy.size(), "r"));
  if (!stream) return ErrnoStatus(errno, "fmemopen(mountinfo)");
  std::unique_ptr<libmnt_table, TableDeleter> table(mnt_new_table());
  if (!table) return absl::ResourceExhaustedError("mnt_new_table failed");
  int bad_line = 0;
  mnt_table_set_userdata(table.get(), &bad_line);
  mnt_table_set_parser_errcb(table.get(), FatalParseError);
  int rc = mnt_table_parse_stream(table.get(), stream.get(), "mountinfo");
  if (rc != 0 || bad_line != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("libmount cannot parse mountinfo (line ", bad_line, ", rc ", rc, ")"));
  }
  std::unique_ptr<libmnt_iter, IterDeleter> iter(mnt_new_iter(MNT_ITER_FORWARD));
  if (!iter) return absl::ResourceExhaustedError("mnt_new_iter failed");
  libmnt_fs* fs = nullptr;
  while (mnt_table_next_fs(table.get(), iter.get(), &fs) == 0) {
    MountInfoEntry e;
    e.id = mnt_fs_get_id(fs);
    e.parent_id = mnt_fs_get_parent_id(fs);
    e.devno = mnt_fs_get_devno(fs);
    e.root = Str(mnt_fs_get_root(fs));
    e.target = Str(mnt_fs_get_target(fs));
    e.vfs_options = Str(mnt_fs_get_vfs_options(fs));
    e.optional_fields = Str(mnt_fs_get_optional_fields(fs));
    e.fstype = Str(mnt_fs_get_fstype(fs));
    e.source = Str(mnt_fs_get_source(fs));
    e.fs_options = entries.size() < lines ? raw_fs_options[entries.size()] : "";
    unsigned long propagation = 0;
    if (mnt_fs_get_propagation(fs, &propagation) == 0) {
      e.shared = (propagation & MS_SHARED) != 0;
      e.slave = (propagation & MS_SLAVE) != 0;
    }
    if (e.id <= 0 || e.target.empty() || e.target[0] != '/' || e.fstype.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("mountinfo entry ", entries.size() + 1, " lacks an id, target or type"));
    }
    entries.push_back(std::move(e));
  }
  if (entries.size() != lines) {
    return absl::InvalidArgumentError(
        absl::StrCat("libmount read ", entries.size(), " mounts from ", lines, " mountinfo lines"));
  }
  return entries;
}

absl::StatusOr<std::vector<MountInfoEntry>> ReadMountInfoAt(int proc_dir_fd) {
  absl::StatusOr<std::string> text = ReadFileAt(proc_dir_fd, "mountinfo", kMaxMountInfoBytes);
  if (!text.ok()) return text.status();
  return ParseMountInfo(*text);
}

absl::StatusOr<std::vector<MountInfoEntry>> ReadSelfMountInfo() {
  UniqueFd self(open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!self) return ErrnoStatus(errno, "open /proc/self");
  return ReadMountInfoAt(self.get());
}

}  // namespace sc
