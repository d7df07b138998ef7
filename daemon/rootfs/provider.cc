#include "daemon/rootfs/provider.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/defaults.h"
#include "daemon/base/fs_util.h"
#include "daemon/base/paths.h"
#include "daemon/base/syscalls.h"
#include "daemon/identity/cgroup.h"

namespace sc {
namespace {

constexpr size_t kMaxEnvironBytes = 1 << 20;
constexpr size_t kMaxCgroupBytes = 64 << 10;
// How often a waiting call reads the pod's cgroup again when no event came.
constexpr absl::Duration kRescanInterval = absl::Milliseconds(100);

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};

bool Alive(int pidfd) { return PidfdSendSignal(pidfd, 0, nullptr, 0) == 0; }

}  // namespace

bool EnvironHasRootfsMarker(absl::string_view environ) {
  for (absl::string_view entry : absl::StrSplit(environ, '\0')) {
    if (entry == kRootfsMarker) return true;
  }
  return false;
}

absl::StatusOr<std::optional<OverlayLayers>> RootOverlayOf(
    const std::vector<MountInfoEntry>& table) {
  const MountInfoEntry* top = nullptr;
  for (const MountInfoEntry& e : table) {
    // Later entries on the same mount point are stacked on earlier ones.
    if (e.target == "/") top = &e;
  }
  if (top == nullptr) return absl::NotFoundError("the process's mountinfo has no mount on /");
  if (top->fstype != "overlay" || top->root != "/") return std::optional<OverlayLayers>();
  absl::StatusOr<OverlayLayers> layers = ParseOverlayOptions(top->fs_options);
  if (!layers.ok()) return layers.status();
  return std::optional<OverlayLayers>(*std::move(layers));
}

namespace {

// `pid` pinned and checked: its cgroup names `pod_uid` and its environment
// holds the marker. NOT_FOUND otherwise (also when it is gone).
absl::StatusOr<ProviderProcess> CheckCandidate(int proc_fd, pid_t pid, absl::string_view pod_uid) {
  // Pin first, then read: what is read through proc_dir while the pidfd is
  // alive belongs to that process.
  UniqueFd pidfd(PidfdOpen(pid, 0));
  if (!pidfd) return absl::NotFoundError("gone");
  std::string name = absl::StrCat(pid);
  UniqueFd proc_dir(openat(proc_fd, name.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!proc_dir) return absl::NotFoundError("gone");
  absl::StatusOr<std::string> cgroup = ReadFileAt(proc_dir.get(), "cgroup", kMaxCgroupBytes);
  if (!cgroup.ok()) return absl::NotFoundError("no cgroup");
  absl::StatusOr<std::vector<CgroupLine>> lines = ParseCgroupFile(*cgroup);
  if (!lines.ok()) return absl::NotFoundError("bad cgroup");
  absl::StatusOr<PodCgroup> pod = PodFromCgroupLines(*lines);
  if (!pod.ok() || pod->pod_uid != pod_uid) return absl::NotFoundError("another pod");
  absl::StatusOr<std::string> environ = ReadFileAt(proc_dir.get(), "environ", kMaxEnvironBytes);
  if (!environ.ok() || !EnvironHasRootfsMarker(*environ)) return absl::NotFoundError("no marker");
  if (!Alive(pidfd.get())) return absl::NotFoundError("gone");
  ProviderProcess found;
  found.pid = pid;
  found.pidfd = std::move(pidfd);
  found.proc_dir = std::move(proc_dir);
  return found;
}

absl::Status NoMarker(absl::string_view pod_uid) {
  return absl::NotFoundError(
      absl::StrCat("no process of pod ", pod_uid, " has ", kRootfsMarker, " in its environment"));
}

// The pids listed in <dir>/cgroup.procs and in those of its subdirectories,
// `depth` levels down (a pod's cgroup holds one directory per container).
void CollectCgroupPids(int dir_fd, int depth, std::vector<pid_t>* pids) {
  if (absl::StatusOr<std::string> procs = ReadFileAt(dir_fd, "cgroup.procs", 1 << 20); procs.ok()) {
    for (absl::string_view line : absl::StrSplit(*procs, '\n', absl::SkipEmpty())) {
      pid_t pid = 0;
      if (absl::SimpleAtoi(line, &pid) && pid > 0) pids->push_back(pid);
    }
  }
  if (depth == 0) return;
  UniqueFd list_fd(openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!list_fd) return;
  std::unique_ptr<DIR, DirCloser> dir(fdopendir(list_fd.release()));
  if (!dir) return;
  while (struct dirent* ent = readdir(dir.get())) {
    if (ent->d_type != DT_DIR || ent->d_name[0] == '.') continue;
    UniqueFd sub(
        openat(dirfd(dir.get()), ent->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (sub) CollectCgroupPids(sub.get(), depth - 1, pids);
  }
}

}  // namespace

absl::StatusOr<ProviderProcess> FindProvider(absl::string_view pod_uid) {
  std::unique_ptr<DIR, DirCloser> proc(opendir("/proc"));
  if (!proc) return ErrnoStatus(errno, "opendir /proc");
  while (struct dirent* ent = readdir(proc.get())) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(ent->d_name, &pid) || pid <= 0) continue;
    absl::StatusOr<ProviderProcess> found = CheckCandidate(dirfd(proc.get()), pid, pod_uid);
    if (found.ok()) return found;
  }
  return NoMarker(pod_uid);
}

absl::StatusOr<ProviderProcess> FindProviderInCgroup(int pod_cgroup_fd, absl::string_view pod_uid) {
  UniqueFd proc(open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!proc) return ErrnoStatus(errno, "open /proc");
  std::vector<pid_t> pids;
  CollectCgroupPids(pod_cgroup_fd, 2, &pids);
  for (pid_t pid : pids) {
    absl::StatusOr<ProviderProcess> found = CheckCandidate(proc.get(), pid, pod_uid);
    if (found.ok()) return found;
  }
  return NoMarker(pod_uid);
}

absl::StatusOr<ProviderProcess> WaitForProvider(absl::string_view pod_uid, int pod_cgroup_fd,
                                                absl::Duration wait,
                                                const std::function<bool()>& cancelled) {
  absl::Time deadline = absl::Now() + wait;
  // A container's cgroup directory appears as it starts: inotify wakes the
  // wait at once. A process that joins or execs in an existing cgroup makes
  // no event, so the pod's cgroup (a few files, not the node's /proc) is
  // read again at least every kRescanInterval.
  UniqueFd events;
  if (pod_cgroup_fd >= 0) {
    events.reset(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (events && inotify_add_watch(events.get(), FdPath(pod_cgroup_fd).c_str(),
                                    IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_ONLYDIR) < 0) {
      events.reset();
    }
  }
  while (true) {
    absl::StatusOr<ProviderProcess> found =
        pod_cgroup_fd >= 0 ? FindProviderInCgroup(pod_cgroup_fd, pod_uid) : FindProvider(pod_uid);
    if (found.ok() || !absl::IsNotFound(found.status())) return found;
    if (cancelled && cancelled()) return absl::CancelledError("the caller went away");
    absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(found.status().message(), " after waiting ", absl::FormatDuration(wait),
                       "; start the pod's rootfs container with ", kRootfsMarker));
    }
    absl::Duration nap = std::min(kRescanInterval, deadline - now);
    if (events) {
      pollfd pfd{events.get(), POLLIN, 0};
      poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(nap)) + 1);
      char drain[4096];
      while (read(events.get(), drain, sizeof(drain)) > 0) {
      }
    } else {
      std::this_thread::sleep_for(absl::ToChronoMilliseconds(nap));
    }
  }
}

absl::StatusOr<UniqueFd> OpenPodCgroupDir(int peer_proc_dir, const PodCgroup& pod) {
  absl::StatusOr<std::string> content = ReadFileAt(peer_proc_dir, "cgroup", kMaxCgroupBytes);
  if (!content.ok()) return content.status();
  absl::StatusOr<std::vector<CgroupLine>> lines = ParseCgroupFile(*content);
  if (!lines.ok()) return lines.status();
  for (CgroupLine line : *lines) {
    if (line.hierarchy_id != pod.hierarchy_id || line.path != pod.path) continue;
    // The pod's own cgroup is its container's parent.
    if (!pod.container_id.empty()) {
      size_t slash = line.path.rfind('/');
      if (slash == std::string::npos || slash == 0) break;
      line.path.resize(slash);
    }
    absl::StatusOr<std::string> mountinfo = ReadFileAt(AT_FDCWD, "/proc/self/mountinfo", 4 << 20);
    if (!mountinfo.ok()) return mountinfo.status();
    absl::StatusOr<std::string> dir = CgroupDirFor(line, ParseCgroupMounts(*mountinfo));
    if (!dir.ok()) return dir.status();
    UniqueFd fd(open(dir->c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return ErrnoStatus(errno, absl::StrCat("open the pod's cgroup ", *dir));
    return fd;
  }
  return absl::NotFoundError(absl::StrCat("the cgroup that names pod ", pod.pod_uid,
                                          " is no longer in the caller's cgroup file"));
}

absl::StatusOr<ProviderLayers> OpenProviderLayers(const ProviderProcess& provider) {
  absl::StatusOr<std::vector<MountInfoEntry>> table = ReadMountInfoAt(provider.proc_dir.get());
  if (!table.ok()) return table.status();
  absl::StatusOr<std::optional<OverlayLayers>> overlay = RootOverlayOf(*table);
  if (!overlay.ok()) return overlay.status();
  ProviderLayers layers;
  if (overlay->has_value()) {
    // The runtime mounted this overlay from the host's namespace, with host
    // paths; they are opened here without following any symlink.
    UniqueFd root(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) return ErrnoStatus(errno, "open /");
    for (const std::string& dir : (*overlay)->lowerdirs) {
      if (absl::Status ok = CheckRequestPath(dir, true, "provider lower layer"); !ok.ok()) {
        return ok;
      }
      absl::StatusOr<UniqueFd> fd = OpenBeneath(root.get(), dir, O_PATH | O_DIRECTORY);
      if (!fd.ok()) {
        return absl::Status(fd.status().code(), absl::StrCat("provider lower layer ", dir, ": ",
                                                             fd.status().message()));
      }
      layers.fds.push_back(*std::move(fd));
      layers.described.push_back(dir);
    }
    layers.from_overlay = true;
  } else {
    // overlayfs takes a private clone of each layer's mount, which the
    // kernel allows only for mounts of the daemon's own mount namespace (and
    // open_tree cannot clone from another one either). Entering the
    // provider's namespace to hand out a detached clone is not done yet.
    struct stat mine {
    }, theirs{};
    if (stat("/proc/self/ns/mnt", &mine) != 0) return ErrnoStatus(errno, "stat /proc/self/ns/mnt");
    if (fstatat(provider.proc_dir.get(), "ns/mnt", &theirs, 0) != 0) {
      return ErrnoStatus(errno, "stat the provider's ns/mnt");
    }
    if (mine.st_ino != theirs.st_ino || mine.st_dev != theirs.st_dev) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the rootfs container (pid ", provider.pid,
          ") does not stand on an overlay, and its root lies in another mount namespace, which "
          "overlayfs cannot take as a layer; run it with an overlay snapshotter or give "
          "explicit layers"));
    }
    UniqueFd root(openat(provider.proc_dir.get(), "root", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) return ErrnoStatus(errno, absl::StrCat("open /proc/", provider.pid, "/root"));
    layers.fds.push_back(std::move(root));
    layers.described.push_back(absl::StrCat("/proc/", provider.pid, "/root"));
  }
  if (!Alive(provider.pidfd.get())) {
    return absl::FailedPreconditionError(
        absl::StrCat("the provider process ", provider.pid, " exited while it was read"));
  }
  return layers;
}

}  // namespace sc
