#include "daemon/exec/cgroup_join.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/base/fs_util.h"
#include "daemon/identity/peer.h"

namespace sc {
namespace {

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

absl::Status AddViewDir(const std::string& dir, bool v2, int dir_fd,
                        const std::vector<CgroupMount>& mounts, CgroupHandles* handles) {
  // The hierarchy's mount is the longest target the directory lies in.
  const CgroupMount* mount = nullptr;
  for (const CgroupMount& m : mounts) {
    if (m.v2 != v2) continue;
    if (dir != m.target && !absl::StartsWith(dir, m.target + "/")) continue;
    if (mount == nullptr || m.target.size() > mount->target.size()) mount = &m;
  }
  if (mount == nullptr) return absl::OkStatus();
  std::string name = mount->target.substr(mount->target.rfind('/') + 1);
  if (name.empty() || name == "." || name == ".." || name.size() > 60) return absl::OkStatus();
  for (const CgroupHandles::ViewDir& v : handles->view) {
    if (v.name == name) return absl::OkStatus();
  }
  UniqueFd copy(fcntl(dir_fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) return ErrnoStatus(errno, "dup a cgroup directory");
  handles->view.push_back({std::move(name), std::move(copy)});
  return absl::OkStatus();
}

absl::StatusOr<CgroupHandles> OpenPeerCgroups(const Peer& peer) {
  absl::StatusOr<std::string> content = ReadFileAt(peer.proc_dir(), "cgroup", 64 * 1024);
  if (!content.ok()) {
    // The caller's exit, if that is why (its /proc entries go with it).
    if (absl::Status alive = peer.CheckAliveAfterProcFailure(); !alive.ok()) return alive;
    return content.status();
  }
  absl::StatusOr<std::vector<CgroupLine>> lines = ParseCgroupFile(*content);
  if (!lines.ok()) return lines.status();
  UniqueFd self_proc(open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC));
  absl::StatusOr<std::string> mountinfo = ReadFileAt(self_proc.get(), "mountinfo", 4 << 20);
  if (!mountinfo.ok()) return mountinfo.status();
  std::vector<CgroupMount> mounts = ParseCgroupMounts(*mountinfo);

  CgroupHandles handles;
  for (const CgroupLine& line : *lines) {
    absl::StatusOr<std::string> dir = CgroupDirFor(line, mounts);
    // A hierarchy the daemon cannot see (e.g. v1 "misc" not mounted) cannot
    // be joined by anyone on this node; the pod's limits live elsewhere.
    if (absl::IsNotFound(dir.status())) continue;
    if (!dir.ok()) return dir.status();
    bool v2 = line.hierarchy_id == 0 && line.controllers.empty();
    UniqueFd dfd(open(dir->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (!dfd) return ErrnoStatus(errno, absl::StrCat("open the caller's cgroup ", *dir));
    UniqueFd procs(openat(dfd.get(), "cgroup.procs", O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!procs) return ErrnoStatus(errno, absl::StrCat("open ", *dir, "/cgroup.procs"));
    if (absl::Status s = AddViewDir(*dir, v2, dfd.get(), mounts, &handles); !s.ok()) return s;
    if (v2) {
      handles.v2_dir = std::move(dfd);
      handles.v2_procs = std::move(procs);
    } else {
      handles.v1_procs.push_back(std::move(procs));
    }
    handles.paths.push_back(*dir);
  }
  // A pure v2 node's one hierarchy is /sys/fs/cgroup itself.
  if (handles.v1_procs.empty() && handles.view.size() == 1) handles.view[0].name.clear();
  if (absl::Status alive = peer.CheckAlive(); !alive.ok()) return alive;
  return handles;
}

}  // namespace sc
