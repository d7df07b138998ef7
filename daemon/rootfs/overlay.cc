#include "daemon/rootfs/overlay.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sc {
namespace {

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

}  // namespace

std::string UnmangleMountInfo(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() && IsOctal(text[i + 1]) && IsOctal(text[i + 2]) &&
        IsOctal(text[i + 3])) {
      int value = (text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 + (text[i + 3] - '0');
      if (value <= 0xff) {
        out += static_cast<char>(value);
        i += 3;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

std::string EscapeOverlayPath(absl::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (char c : path) {
    if (c == '\\' || c == ':' || c == ',') out += '\\';
    out += c;
  }
  return out;
}

std::string BuildLowerdirOption(const std::vector<std::string>& lowerdirs) {
  std::string out = "lowerdir=";
  for (size_t i = 0; i < lowerdirs.size(); ++i) {
    if (i > 0) out += ':';
    out += EscapeOverlayPath(lowerdirs[i]);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> SplitLowerdirValue(absl::string_view value) {
  std::vector<std::string> dirs;
  std::string current;
  bool pending = false;  // a separator was seen: another entry must follow
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\\') {
      if (i + 1 >= value.size()) {
        return absl::InvalidArgumentError("lowerdir ends with a lone backslash");
      }
      current += value[++i];
      pending = false;
      continue;
    }
    if (c == ':') {
      if (current.empty()) {
        return absl::InvalidArgumentError(
            "lowerdir has an empty entry (data-only layers '::' are not supported)");
      }
      dirs.push_back(std::move(current));
      current.clear();
      pending = true;
      continue;
    }
    current += c;
    pending = false;
  }
  if (current.empty()) {
    return absl::InvalidArgumentError(pending ? "lowerdir ends with ':'" : "lowerdir is empty");
  }
  dirs.push_back(std::move(current));
  return dirs;
}

absl::StatusOr<OverlayLayers> ParseOverlayOptions(absl::string_view fs_options) {
  OverlayLayers layers;
  bool legacy = false;
  bool appended = false;
  // The kernel prints ',' inside a value as \054, so a raw ',' always
  // separates options.
  for (absl::string_view option : absl::StrSplit(fs_options, ',', absl::SkipEmpty())) {
    absl::string_view value = option;
    if (absl::ConsumePrefix(&value, "lowerdir+=")) {
      appended = true;
      std::string dir = UnmangleMountInfo(value);
      if (dir.empty()) return absl::InvalidArgumentError("empty lowerdir+ entry");
      layers.lowerdirs.push_back(std::move(dir));
    } else if (absl::ConsumePrefix(&value, "lowerdir=")) {
      if (legacy) return absl::InvalidArgumentError("lowerdir given twice");
      legacy = true;
      absl::StatusOr<std::vector<std::string>> dirs = SplitLowerdirValue(UnmangleMountInfo(value));
      if (!dirs.ok()) return dirs.status();
      layers.lowerdirs = *std::move(dirs);
    } else if (absl::ConsumePrefix(&value, "upperdir=")) {
      layers.upperdir = UnmangleMountInfo(value);
    } else if (absl::ConsumePrefix(&value, "workdir=")) {
      layers.workdir = UnmangleMountInfo(value);
    }
  }
  if (legacy && appended) {
    return absl::InvalidArgumentError("overlay options mix lowerdir= and lowerdir+=");
  }
  if (layers.lowerdirs.empty()) return absl::InvalidArgumentError("overlay has no lowerdir");
  return layers;
}

}  // namespace sc
