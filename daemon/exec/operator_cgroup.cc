#include "daemon/exec/operator_cgroup.h"

#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/base/container_spec.h"
#include "daemon/base/fs_util.h"
#include "daemon/identity/cgroup.h"
#include "spdlog/spdlog.h"

namespace sc {
namespace {

absl::Status WriteAt(int dir_fd, const char* name, absl::string_view value) {
  UniqueFd fd(openat(dir_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open ", name));
  if (write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return ErrnoStatus(errno, absl::StrCat("write '", value, "' to ", name));
  }
  return absl::OkStatus();
}

bool HasController(absl::string_view controllers, absl::string_view want) {
  for (absl::string_view c : absl::StrSplit(controllers, absl::ByAnyChar(", \n"))) {
    if (c == want) return true;
  }
  return false;
}

std::string V1Rule(const DeviceRule& r) {
  auto num = [](int32_t n) { return n < 0 ? std::string("*") : absl::StrCat(n); };
  return absl::StrCat(std::string(1, r.type), " ", num(r.major), ":", num(r.minor), " rwm");
}

absl::Status LimitDevicesV1(int dir_fd) {
  if (absl::Status s = WriteAt(dir_fd, "devices.deny", "a"); !s.ok()) return s;
  for (const DeviceRule& r : kOperatorExecDevices) {
    if (absl::Status s = WriteAt(dir_fd, "devices.allow", V1Rule(r)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

long Bpf(int cmd, bpf_attr* attr) { return syscall(SYS_bpf, cmd, attr, sizeof(*attr)); }

// Whether a device program is attached to the cgroup itself already (by
// this daemon before a restart: the directory is ours alone).
absl::StatusOr<bool> HasDeviceProgram(int dir_fd) {
  bpf_attr query{};
  query.query.target_fd = static_cast<__u32>(dir_fd);
  query.query.attach_type = BPF_CGROUP_DEVICE;
  if (Bpf(BPF_PROG_QUERY, &query) != 0) return ErrnoStatus(errno, "bpf(BPF_PROG_QUERY)");
  return query.query.prog_cnt > 0;
}

absl::Status LimitDevicesV2(int dir_fd) {
  absl::StatusOr<bool> attached = HasDeviceProgram(dir_fd);
  if (!attached.ok()) return attached.status();
  if (*attached) return absl::OkStatus();
  absl::StatusOr<UniqueFd> program = LoadOperatorDeviceProgram();
  if (!program.ok()) return program.status();
  bpf_attr attach{};
  attach.target_fd = static_cast<__u32>(dir_fd);
  attach.attach_bpf_fd = static_cast<__u32>(program->get());
  attach.attach_type = BPF_CGROUP_DEVICE;
  // Beside whatever the daemon's own pod has (runc attaches with MULTI):
  // every program must admit a device.
  attach.attach_flags = BPF_F_ALLOW_MULTI;
  if (Bpf(BPF_PROG_ATTACH, &attach) != 0) return ErrnoStatus(errno, "bpf(BPF_PROG_ATTACH)");
  return absl::OkStatus();
}

// pids.max where the controller reaches the cgroup. On v2 it must be enabled
// in the daemon's cgroup's subtree_control first, which only the root
// cgroup may do while it holds processes: pids is a threaded controller, and
// enabling it in any other cgroup with processes (the daemon's own, in a
// DaemonSet pod) makes that cgroup a thread root whose domain children then
// refuse processes (EOPNOTSUPP), the operator exec cgroup among them.
absl::Status LimitPids(int parent_fd, int dir_fd, bool v2, int64_t pids_max,
                       const std::string& where) {
  if (v2) {
    absl::StatusOr<std::string> have = ReadFileAt(dir_fd, "cgroup.controllers", 4096);
    if (!have.ok()) return have.status();
    if (!HasController(*have, "pids")) {
      // The root alone has no cgroup.type.
      bool root = faccessat(parent_fd, "cgroup.type", F_OK, 0) != 0 && errno == ENOENT;
      absl::Status enabled =
          root ? WriteAt(parent_fd, "cgroup.subtree_control", "+pids")
               : absl::FailedPreconditionError(
                     "the pids controller is not enabled below the daemon's cgroup, and "
                     "enabling it there would keep processes out of its children");
      if (!enabled.ok()) {
        spdlog::warn(
            "operator execs in {} get no pids limit of their own: {} (the daemon's pod limit "
            "still applies; their device limit is in place)",
            where, std::string(enabled.message()));
        return absl::OkStatus();
      }
    }
  }
  return WriteAt(dir_fd, "pids.max", absl::StrCat(pids_max));
}

struct Prepared {
  std::string path;
  bool v2 = false;
};

// The daemon's cgroup of each hierarchy, and the operator exec cgroup below
// it with its limits, in the hierarchies that have any.
absl::StatusOr<std::vector<Prepared>> Prepare(const OperatorCgroupOptions& options,
                                              std::vector<CgroupMount>* mounts_out) {
  UniqueFd self(open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!self) return ErrnoStatus(errno, "open /proc/self");
  absl::StatusOr<std::string> cgroup = ReadFileAt(self.get(), "cgroup", 64 * 1024);
  if (!cgroup.ok()) return cgroup.status();
  absl::StatusOr<std::vector<CgroupLine>> lines = ParseCgroupFile(*cgroup);
  if (!lines.ok()) return lines.status();
  absl::StatusOr<std::string> mountinfo = ReadFileAt(self.get(), "mountinfo", 4 << 20);
  if (!mountinfo.ok()) return mountinfo.status();
  std::vector<CgroupMount> mounts = ParseCgroupMounts(*mountinfo);

  // On a hybrid node pids is a v1 controller, which v2 then cannot have.
  bool v1_pids = false;
  for (const CgroupLine& line : *lines) {
    v1_pids = v1_pids || (line.hierarchy_id != 0 && HasController(line.controllers, "pids"));
  }
  std::vector<Prepared> out;
  bool devices_limited = false;
  for (const CgroupLine& line : *lines) {
    bool v2 = line.hierarchy_id == 0 && line.controllers.empty();
    bool devices = !v2 && HasController(line.controllers, "devices");
    bool pids = !v2 && HasController(line.controllers, "pids");
    if (!v2 && !devices && !pids) continue;
    absl::StatusOr<std::string> parent = CgroupDirFor(line, mounts);
    if (absl::IsNotFound(parent.status())) continue;
    if (!parent.ok()) return parent.status();
    UniqueFd parent_fd(open(parent->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (!parent_fd) return ErrnoStatus(errno, absl::StrCat("open the daemon's cgroup ", *parent));
    if (mkdirat(parent_fd.get(), kOperatorExecCgroup, 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, absl::StrCat("mkdir ", *parent, "/", kOperatorExecCgroup));
    }
    std::string path = absl::StrCat(*parent, "/", kOperatorExecCgroup);
    UniqueFd dir(openat(parent_fd.get(), kOperatorExecCgroup,
                        O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (!dir) return ErrnoStatus(errno, absl::StrCat("open ", path));
    absl::Status limited = absl::OkStatus();
    if (devices) limited = LimitDevicesV1(dir.get());
    if (limited.ok() && v2) limited = LimitDevicesV2(dir.get());
    if (limited.ok() && (pids || (v2 && !v1_pids))) {
      limited = LimitPids(parent_fd.get(), dir.get(), v2, options.pids_max, path);
    }
    if (!limited.ok()) {
      return absl::Status(limited.code(), absl::StrCat(path, ": ", limited.message()));
    }
    devices_limited = devices_limited || devices || v2;
    out.push_back({std::move(path), v2});
  }
  if (!devices_limited) {
    return absl::FailedPreconditionError(
        "no cgroup hierarchy can limit the devices of an operator's exec (no v1 devices "
        "controller and no cgroup v2 mounted in the daemon's namespace)");
  }
  *mounts_out = std::move(mounts);
  return out;
}

}  // namespace

absl::StatusOr<UniqueFd> LoadOperatorDeviceProgram() {
  // r2 = device type, r3 = major, r4 = minor (struct bpf_cgroup_dev_ctx);
  // a block per rule jumps to the next one on a mismatch, else admits.
  std::vector<bpf_insn> prog = {
      {BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, 0, 0},
      {BPF_ALU | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff},
      {BPF_LDX | BPF_MEM | BPF_W, BPF_REG_3, BPF_REG_1, 4, 0},
      {BPF_LDX | BPF_MEM | BPF_W, BPF_REG_4, BPF_REG_1, 8, 0},
  };
  for (const DeviceRule& r : kOperatorExecDevices) {
    std::vector<std::pair<int, int32_t>> checks = {
        {BPF_REG_2, r.type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR}};
    if (r.major >= 0) checks.emplace_back(BPF_REG_3, r.major);
    if (r.minor >= 0) checks.emplace_back(BPF_REG_4, r.minor);
    int block = static_cast<int>(checks.size()) + 2;
    for (int i = 0; i < static_cast<int>(checks.size()); ++i) {
      prog.push_back({BPF_JMP | BPF_JNE | BPF_K, static_cast<__u8>(checks[i].first), 0,
                      static_cast<__s16>(block - i - 1), checks[i].second});
    }
    prog.push_back({BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1});
    prog.push_back({BPF_JMP | BPF_EXIT, 0, 0, 0, 0});
  }
  prog.push_back({BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0});
  prog.push_back({BPF_JMP | BPF_EXIT, 0, 0, 0, 0});
  char license[] = "GPL";
  bpf_attr load{};
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = reinterpret_cast<uintptr_t>(prog.data());
  load.insn_cnt = static_cast<__u32>(prog.size());
  load.license = reinterpret_cast<uintptr_t>(license);
  UniqueFd fd(static_cast<int>(Bpf(BPF_PROG_LOAD, &load)));
  if (!fd) return ErrnoStatus(errno, "bpf(BPF_PROG_LOAD, BPF_PROG_TYPE_CGROUP_DEVICE)");
  return fd;
}

absl::StatusOr<CgroupHandles> OpenOperatorExecCgroups(const OperatorCgroupOptions& options) {
  // Prepared once; a failure is tried again by the next exec.
  static std::mutex mu;
  static std::vector<Prepared>* prepared = nullptr;
  static std::vector<CgroupMount>* mounts = nullptr;
  std::vector<Prepared> dirs;
  std::vector<CgroupMount> hierarchies;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (prepared == nullptr) {
      std::vector<CgroupMount> found;
      absl::StatusOr<std::vector<Prepared>> made = Prepare(options, &found);
      if (!made.ok()) {
        return absl::Status(made.status().code(), absl::StrCat("the cgroup of operator execs: ",
                                                               made.status().message()));
      }
      prepared = new std::vector<Prepared>(*std::move(made));
      mounts = new std::vector<CgroupMount>(std::move(found));
      for (const Prepared& p : *prepared) spdlog::info("operator execs run in {}", p.path);
    }
    dirs = *prepared;
    hierarchies = *mounts;
  }
  CgroupHandles handles;
  for (const Prepared& p : dirs) {
    UniqueFd dir(open(p.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (!dir) return ErrnoStatus(errno, absl::StrCat("open ", p.path));
    UniqueFd procs(openat(dir.get(), "cgroup.procs", O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!procs) return ErrnoStatus(errno, absl::StrCat("open ", p.path, "/cgroup.procs"));
    if (absl::Status s = AddViewDir(p.path, p.v2, dir.get(), hierarchies, &handles); !s.ok()) {
      return s;
    }
    if (p.v2) {
      handles.v2_dir = std::move(dir);
      handles.v2_procs = std::move(procs);
    } else {
      handles.v1_procs.push_back(std::move(procs));
    }
    handles.paths.push_back(p.path);
  }
  if (handles.v1_procs.empty() && handles.view.size() == 1) handles.view[0].name.clear();
  return handles;
}

}  // namespace sc
