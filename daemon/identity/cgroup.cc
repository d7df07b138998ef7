#include "daemon/identity/cgroup.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sc {
namespace {

bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// A pod UID is a UUID (8-4-4-4-12, with '-' for cgroupfs and '_' for systemd)
// or, for static pods, 32 hex digits. Returns "" when `raw` is neither.
std::string NormalisePodUid(absl::string_view raw) {
  std::string uid = absl::AsciiStrToLower(raw);
  if (uid.size() == 32) {
    for (char c : uid) {
      if (!IsHex(c)) return "";
    }
    return uid;
  }
  if (uid.size() != 36) return "";
  for (size_t i = 0; i < uid.size(); ++i) {
    bool separator = i == 8 || i == 13 || i == 18 || i == 23;
    if (separator) {
      if (uid[i] != '-' && uid[i] != '_') return "";
      uid[i] = '-';
    } else if (!IsHex(uid[i])) {
      return "";
    }
  }
  return uid;
}

// Container ids are hex strings (64 for containerd, CRI-O and Docker).
bool IsContainerId(absl::string_view id) {
  if (id.size() < 12 || id.size() > 128) return false;
  for (char c : id) {
    if (!IsHex(c)) return false;
  }
  return true;
}

// The systemd driver's container scope: "<runtime>-<id>.scope", where runtime
// is cri-containerd, crio or docker. "crio-conmon-<id>.scope" is CRI-O's
// monitor, not a container.
std::string ContainerIdFromScope(absl::string_view component) {
  if (!absl::ConsumeSuffix(&component, ".scope")) return "";
  size_t dash = component.rfind('-');
  if (dash == absl::string_view::npos) return "";
  absl::string_view runtime = component.substr(0, dash);
  absl::string_view id = component.substr(dash + 1);
  if (runtime != "cri-containerd" && runtime != "crio" && runtime != "docker") {
    return "";
  }
  return IsContainerId(id) ? std::string(id) : "";
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && s.size() - i >= 4 && s[i + 1] >= '0' && s[i + 1] <= '3' &&
        s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out.push_back(
          static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool HasOption(const CgroupMount& m, absl::string_view option) {
  return std::find(m.options.begin(), m.options.end(), option) != m.options.end();
}

}  // namespace

const char* CgroupDriverName(CgroupDriver driver) {
  switch (driver) {
    case CgroupDriver::kCgroupfs:
      return "cgroupfs";
    case CgroupDriver::kSystemd:
      return "systemd";
    case CgroupDriver::kNone:
      break;
  }
  return "";
}

absl::StatusOr<std::vector<CgroupLine>> ParseCgroupFile(absl::string_view content) {
  std::vector<CgroupLine> lines;
  for (absl::string_view raw : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    // The path may itself contain ':', so split on the first two only.
    std::vector<absl::string_view> fields = absl::StrSplit(raw, absl::MaxSplits(':', 2));
    if (fields.size() != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed cgroup line (want id:controllers:path): ", raw.substr(0, 200)));
    }
    CgroupLine line;
    if (!absl::SimpleAtoi(fields[0], &line.hierarchy_id) || line.hierarchy_id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed cgroup hierarchy id: ", fields[0].substr(0, 40)));
    }
    if (fields[2].empty() || fields[2][0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("cgroup path is not absolute: ", fields[2].substr(0, 200)));
    }
    line.controllers = std::string(fields[1]);
    line.path = std::string(fields[2]);
    lines.push_back(std::move(line));
  }
  if (lines.empty()) return absl::InvalidArgumentError("empty cgroup file");
  return lines;
}

absl::StatusOr<PodCgroup> PodFromCgroupPath(absl::string_view path) {
  std::vector<absl::string_view> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  // A pod's cgroup always sits below a kubepods cgroup; a component named
  // like a pod elsewhere is not the kubelet's.
  bool under_kubepods = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::string_view part = parts[i];
    if (!under_kubepods) {
      // "kubelet-kubepods.slice" is kind's and some distributions' root.
      under_kubepods =
          part == "kubepods" || part == "kubepods.slice" || absl::EndsWith(part, "-kubepods.slice");
      continue;
    }
    PodCgroup pod;
    absl::string_view uid;
    if (absl::StartsWith(part, "pod")) {
      // cgroupfs: pod<uid>, with the QoS class as the parent (none: guaranteed).
      uid = part.substr(3);
      pod.driver = CgroupDriver::kCgroupfs;
      absl::string_view parent = parts[i - 1];
      pod.qos_class =
          (parent == "burstable" || parent == "besteffort") ? std::string(parent) : "guaranteed";
      if (i + 1 < parts.size() && IsContainerId(parts[i + 1])) {
        pod.container_id = std::string(parts[i + 1]);
      }
    } else if (size_t at = part.find("kubepods-");
               at != absl::string_view::npos && absl::EndsWith(part, ".slice")) {
      // systemd: [<root>-]kubepods[-<qos>]-pod<uid_>.slice, where a slice's
      // name repeats its parents' ("kubelet-kubepods-besteffort-pod...").
      absl::string_view name = part.substr(at + strlen("kubepods-"));
      absl::ConsumeSuffix(&name, ".slice");
      if (absl::ConsumePrefix(&name, "burstable-")) {
        pod.qos_class = "burstable";
      } else if (absl::ConsumePrefix(&name, "besteffort-")) {
        pod.qos_class = "besteffort";
      } else {
        pod.qos_class = "guaranteed";
      }
      if (!absl::ConsumePrefix(&name, "pod")) continue;
      uid = name;
      pod.driver = CgroupDriver::kSystemd;
      if (i + 1 < parts.size()) pod.container_id = ContainerIdFromScope(parts[i + 1]);
    } else {
      continue;
    }
    pod.pod_uid = NormalisePodUid(uid);
    if (pod.pod_uid.empty()) continue;
    pod.path = std::string(path);
    return pod;
  }
  return absl::NotFoundError(
      absl::StrCat("cgroup ", path.substr(0, 200), " does not name a Kubernetes pod"));
}

absl::StatusOr<PodCgroup> PodFromCgroupLines(const std::vector<CgroupLine>& lines) {
  std::optional<PodCgroup> found;
  // v2 first: on a unified or hybrid host it is the hierarchy the kubelet
  // manages when it uses v2.
  std::vector<const CgroupLine*> ordered;
  for (const CgroupLine& line : lines) {
    if (line.hierarchy_id == 0) ordered.push_back(&line);
  }
  for (const CgroupLine& line : lines) {
    if (line.hierarchy_id != 0) ordered.push_back(&line);
  }
  for (const CgroupLine* line : ordered) {
    absl::StatusOr<PodCgroup> pod = PodFromCgroupPath(line->path);
    if (!pod.ok()) continue;
    pod->hierarchy_id = line->hierarchy_id;
    if (!found) {
      found = *std::move(pod);
    } else if (found->pod_uid != pod->pod_uid) {
      return absl::FailedPreconditionError(
          absl::StrCat("cgroup hierarchies disagree about the pod: ", found->pod_uid, " in ",
                       found->path, " but ", pod->pod_uid, " in ", pod->path));
    }
  }
  if (!found) return absl::NotFoundError("no cgroup of the process names a Kubernetes pod");
  return *found;
}

std::vector<CgroupMount> ParseCgroupMounts(absl::string_view mountinfo) {
  std::vector<CgroupMount> mounts;
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 10 || dash == fields.end() || fields.end() - dash < 4) continue;
    absl::string_view fstype = *(dash + 1);
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    CgroupMount m;
    m.v2 = fstype == "cgroup2";
    m.root = Unescape(fields[3]);
    m.target = Unescape(fields[4]);
    for (absl::string_view o : absl::StrSplit(*(dash + 3), ',')) m.options.emplace_back(o);
    mounts.push_back(std::move(m));
  }
  return mounts;
}

absl::StatusOr<std::string> CgroupDirFor(const CgroupLine& line,
                                         const std::vector<CgroupMount>& mounts) {
  bool v2 = line.hierarchy_id == 0 && line.controllers.empty();
  for (const CgroupMount& m : mounts) {
    if (m.v2 != v2) continue;
    if (!v2) {
      bool all = !line.controllers.empty();
      for (absl::string_view c : absl::StrSplit(line.controllers, ',')) {
        all = all && HasOption(m, c);
      }
      if (!all) continue;
    }
    // The path is relative to the daemon's cgroup namespace root; a mount of
    // a sub-tree (root != "/") holds only what lies below its root.
    absl::string_view rel = line.path;
    if (m.root != "/") {
      if (!absl::ConsumePrefix(&rel, m.root) || (!rel.empty() && rel[0] != '/')) continue;
    }
    if (rel.find("/../") != absl::string_view::npos || absl::EndsWith(rel, "/..")) {
      return absl::InvalidArgumentError(absl::StrCat("cgroup path with '..': ", line.path));
    }
    return absl::StrCat(m.target, rel == "/" ? "" : rel);
  }
  return absl::NotFoundError(absl::StrCat("cgroup hierarchy ", line.hierarchy_id, " (",
                                          line.controllers, ") is not mounted in the daemon"));
}

}  // namespace sc
