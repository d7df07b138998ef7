#include "daemon/rootfs/layer_record.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/unique_fd.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/paths.h"

namespace sc {
namespace {

constexpr const char kStateDir[] = ".state";
constexpr size_t kMaxRecordBytes = 1 << 20;

absl::StatusOr<UniqueFd> OpenStateDir(int base_fd, const InstanceLayout& layout, bool create) {
  if (!create) {
    return OpenBeneath(base_fd, absl::StrCat(kStateDir, "/", layout.ns), O_PATH | O_DIRECTORY);
  }
  absl::StatusOr<UniqueFd> state = MakeDirBeneath(base_fd, kStateDir, 0700);
  if (!state.ok()) return state.status();
  return MakeDirBeneath(state->get(), layout.ns, 0700);
}

}  // namespace

std::string FormatLayerRecord(const LayerRecord& record) {
  std::string out;
  absl::StrAppend(&out, "upper ", absl::CEscape(record.layers.upperdir), "\n");
  absl::StrAppend(&out, "work ", absl::CEscape(record.layers.workdir), "\n");
  for (const std::string& lower : record.layers.lowerdirs) {
    absl::StrAppend(&out, "lower ", absl::CEscape(lower), "\n");
  }
  if (record.devno) {
    absl::StrAppend(&out, "devno ", major(*record.devno), ":", minor(*record.devno), "\n");
  }
  return out;
}

absl::StatusOr<LayerRecord> ParseLayerRecord(absl::string_view text) {
  LayerRecord record;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    std::string value;
    if (kv.first != "devno" && !absl::CUnescape(kv.second, &value)) {
      return absl::DataLossError(absl::StrCat("layer record: bad escape in ", kv.first));
    }
    if (kv.first == "upper") {
      record.layers.upperdir = value;
    } else if (kv.first == "work") {
      record.layers.workdir = value;
    } else if (kv.first == "lower") {
      record.layers.lowerdirs.push_back(value);
    } else if (kv.first == "devno") {
      std::pair<absl::string_view, absl::string_view> mm = absl::StrSplit(kv.second, ':');
      unsigned int maj = 0, min = 0;
      if (!absl::SimpleAtoi(mm.first, &maj) || !absl::SimpleAtoi(mm.second, &min)) {
        return absl::DataLossError("layer record: bad devno");
      }
      record.devno = makedev(maj, min);
    } else {
      return absl::DataLossError(absl::StrCat("layer record: unknown line ", line.substr(0, 64)));
    }
  }
  if (record.layers.lowerdirs.empty() || record.layers.upperdir.empty()) {
    return absl::DataLossError("layer record: no lower or upper layer");
  }
  return record;
}

absl::Status WriteLayerRecord(int base_fd, const InstanceLayout& layout,
                              const LayerRecord& record) {
  absl::StatusOr<UniqueFd> dir = OpenStateDir(base_fd, layout, true);
  if (!dir.ok()) return dir.status();
  // O_PATH fds cannot be written through: reopen the directory for *at calls.
  UniqueFd dir_fd(openat(dir->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return ErrnoStatus(errno, "open the layer record directory");
  const std::string tmp = absl::StrCat(".", layout.name, ".tmp");
  UniqueFd out(openat(dir_fd.get(), tmp.c_str(),
                      O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return ErrnoStatus(errno, "create the layer record");
  const std::string text = FormatLayerRecord(record);
  if (write(out.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return ErrnoStatus(errno, "write the layer record");
  }
  if (fsync(out.get()) != 0) return ErrnoStatus(errno, "fsync the layer record");
  if (renameat(dir_fd.get(), tmp.c_str(), dir_fd.get(), layout.name.c_str()) != 0) {
    return ErrnoStatus(errno, "rename the layer record");
  }
  return absl::OkStatus();
}

absl::StatusOr<LayerRecord> ReadLayerRecord(int base_fd, const InstanceLayout& layout) {
  absl::StatusOr<UniqueFd> dir = OpenStateDir(base_fd, layout, false);
  if (!dir.ok()) return dir.status();
  // The directory was opened beneath the base without symlinks; the file
  // itself is opened with O_NOFOLLOW.
  absl::StatusOr<std::string> text = ReadFileAt(dir->get(), layout.name.c_str(), kMaxRecordBytes);
  if (!text.ok()) return text.status();
  return ParseLayerRecord(*text);
}

absl::Status RemoveLayerRecord(int base_fd, const InstanceLayout& layout) {
  absl::StatusOr<UniqueFd> dir = OpenStateDir(base_fd, layout, false);
  if (absl::IsNotFound(dir.status())) return absl::OkStatus();
  if (!dir.ok()) return dir.status();
  UniqueFd dir_fd(openat(dir->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return ErrnoStatus(errno, "open the layer record directory");
  if (unlinkat(dir_fd.get(), layout.name.c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, "remove the layer record");
  }
  return absl::OkStatus();
}

bool ShowsProcFdPaths(const OverlayLayers& layers) {
  if (absl::StartsWith(layers.upperdir, "/proc/self/fd/")) return true;
  for (const std::string& lower : layers.lowerdirs) {
    if (absl::StartsWith(lower, "/proc/self/fd/")) return true;
  }
  return false;
}

void ApplyLayerRecord(const absl::StatusOr<LayerRecord>& record, InstanceView* view) {
  if (!view->has_overlay || !ShowsProcFdPaths(view->layers)) return;
  if (record.ok() && (!record->devno || *record->devno == view->overlay.devno)) {
    view->layers = record->layers;
    return;
  }
  view->foreign = absl::StrCat(
      "the overlay shows its layers as /proc/self/fd/N and the daemon's record of them ",
      record.ok() ? "belongs to another mount"
                  : absl::StrCat("is missing (", record.status().message(), ")"));
  view->has_overlay = false;
  view->status = InstanceStatus::kPartial;
}

}  // namespace sc
