#include "daemon/provider.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/defaults.h"
#include "daemon/cgroup.h"
#include "daemon/fs_util.h"
#include "daemon/paths.h"
#include "daemon/syscalls.h"

namespace sc {
namespace {

constexpr size_t kMaxEnvironBytes = 1 << 20;
constexpr size_t kMaxCgroupBytes = 64 << 10;
// How often the /proc scan is repeated while waiting: a container starts in
// hundreds of milliseconds; this keeps the scan cheap.
constexpr absl::Duration kPollInterval = absl::Milliseconds(100);

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

absl::StatusOr<ProviderProcess> FindProvider(absl::string_view pod_uid) {
  std::unique_ptr<DIR, DirCloser> proc(opendir("/proc"));
  if (!proc) return ErrnoStatus(errno, "opendir /proc");
  while (struct dirent* ent = readdir(proc.get())) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(ent->d_name, &pid) || pid <= 0) continue;
    // Pin first, then read: what is read through proc_dir while the pidfd
    // is alive belongs to that process.
    UniqueFd pidfd(PidfdOpen(pid, 0));
    if (!pidfd) continue;  // gone already
    UniqueFd proc_dir(openat(dirfd(proc.get()), ent->d_name, O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!proc_dir) continue;
    absl::StatusOr<std::string> cgroup = ReadFileAt(proc_dir.get(), "cgroup", kMaxCgroupBytes);
    if (!cgroup.ok()) continue;
    absl::StatusOr<std::vector<CgroupLine>> lines = ParseCgroupFile(*cgroup);
    if (!lines.ok()) continue;
    absl::StatusOr<PodCgroup> pod = PodFromCgroupLines(*lines);
    if (!pod.ok() || pod->pod_uid != pod_uid) continue;
    absl::StatusOr<std::string> environ = ReadFileAt(proc_dir.get(), "environ", kMaxEnvironBytes);
    if (!environ.ok() || !EnvironHasRootfsMarker(*environ)) continue;
    if (!Alive(pidfd.get())) continue;
    ProviderProcess found;
    found.pid = pid;
    found.pidfd = std::move(pidfd);
    found.proc_dir = std::move(proc_dir);
    return found;
  }
  return absl::NotFoundError(
      absl::StrCat("no process of pod ", pod_uid, " has ", kRootfsMarker, " in its environment"));
}

absl::StatusOr<ProviderProcess> WaitForProvider(absl::string_view pod_uid, absl::Duration wait,
                                                const std::function<bool()>& cancelled) {
  absl::Time deadline = absl::Now() + wait;
  while (true) {
    absl::StatusOr<ProviderProcess> found = FindProvider(pod_uid);
    if (found.ok() || !absl::IsNotFound(found.status())) return found;
    if (cancelled && cancelled()) return absl::CancelledError("the caller went away");
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(found.status().message(), " after waiting ", absl::FormatDuration(wait),
                       "; start the pod's rootfs container with ", kRootfsMarker));
    }
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(kPollInterval));
  }
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
