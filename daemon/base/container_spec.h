#ifndef DAEMON_BASE_CONTAINER_SPEC_H_
#define DAEMON_BASE_CONTAINER_SPEC_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>

// What a container gets inside its root under the OCI runtime-spec defaults
// (runc, crun, containerd's default spec), and so what every rootfs this
// daemon prepares and every exec it starts gets: never the node's /dev or
// /sys, and /proc with the default masked and read-only paths. One list, read
// by the prepare (the rootfs as consumer pods see it through the hostPath),
// by each exec's own mounts (proc_mount.h, sys_mount.h, dev_mount.h), by the
// state derivation (instances.h) and by the operator exec's device cgroup.

namespace sc {

struct DeviceNode {
  const char* name;
  uint32_t major;
  uint32_t minor;
};

// Character devices, mode 0666 root:root: the runtime-spec's default set.
inline constexpr DeviceNode kDefaultDevices[] = {
    {"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
    {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
};

struct DevLink {
  const char* name;
  const char* target;
};

inline constexpr DevLink kDefaultDevLinks[] = {
    {"ptmx", "pts/ptmx"},          {"fd", "/proc/self/fd"},       {"stdin", "/proc/self/fd/0"},
    {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
};

// Mount points inside /dev: the rootfs's own devpts and shm (the instance's,
// shared by its consumer pods), and an mqueue of each exec's IPC namespace.
inline constexpr const char* kDefaultDevDirs[] = {"pts", "shm", "mqueue"};

// Masked: an empty read-only tmpfs over a directory, /dev/null over a file.
// Paths the kernel lacks are skipped.
inline constexpr const char* kMaskedProcPaths[] = {
    "acpi",       "asound",      "kcore",       "keys", "latency_stats",
    "timer_list", "timer_stats", "sched_debug", "scsi",
};
inline constexpr const char* kMaskedSysPaths[] = {"firmware", "devices/virtual/powercap"};

// Bound read-only over themselves. "sys" comes last: a read-only /proc/sys is
// the sign that a proc is finished (instances.h, proc_mount.h).
inline constexpr const char* kReadOnlyProcPaths[] = {"sysrq-trigger", "irq", "bus", "fs", "sys"};

// What the device cgroup of an operator's exec admits (read, write, mknod):
// the default devices, /dev/ptmx and every pty slave (136-143, the UNIX98
// majors), so that a terminal works. Everything else, block devices above
// all, is refused.
struct DeviceRule {
  char type;      // 'c' or 'b'
  int32_t major;  // -1: any
  int32_t minor;  // -1: any
};
inline constexpr DeviceRule kOperatorExecDevices[] = {
    {'c', 1, 3},    {'c', 1, 5},    {'c', 1, 7},    {'c', 1, 8},    {'c', 1, 9},
    {'c', 5, 0},    {'c', 5, 2},    {'c', 136, -1}, {'c', 137, -1}, {'c', 138, -1},
    {'c', 139, -1}, {'c', 140, -1}, {'c', 141, -1}, {'c', 142, -1}, {'c', 143, -1},
};

// At most this many device nodes of a pod's own /dev (beyond the default set)
// reach its workloads (dev_mount.h); a pod with more is refused an exec.
inline constexpr int kMaxPodDevices = 512;

}  // namespace sc

#endif  // DAEMON_BASE_CONTAINER_SPEC_H_
