#include "daemon/exec/cgroup_join.h"

#include <fcntl.h>

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/base/fs_util.h"
#include "daemon/identity/peer.h"

namespace sc {

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
