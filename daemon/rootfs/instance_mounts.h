#ifndef DAEMON_ROOTFS_INSTANCE_MOUNTS_H_
#define DAEMON_ROOTFS_INSTANCE_MOUNTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/rootfs/instances.h"

namespace sc {

// The mounts that make an instance's rootfs (RequiredMounts(), instances.h),
// made and unmounted in an order that survives the daemon being killed at any
// point: a step is either whole or missing, and the next prepare completes
// the missing ones.
//
// The rootfs is what a container gets under the OCI runtime-spec defaults
// (container_spec.h), never the node's /dev or /sys:
//   overlay    nosuid, nodev, shared (consumer pods see it with
//              HostToContainer propagation)
//   proc       of an empty pid namespace, with the masked paths, the kernel
//              knobs read-only (proc/sys last: the sign the step is done)
//   dev        a read-only tmpfs with the default set, with the instance's
//              devpts and shm in it
//   sys        a read-only sysfs of an empty network namespace, firmware
//              masked
// Every exec mounts its own proc, sys and mqueue over these, in its own
// namespaces (launcher.h).
//
// An instance an older daemon prepared (the node's /dev and /sys bound in, no
// masks) is missing dev, sys and the masks: they are completed over what is
// there, never by unmounting what a running workload uses. The old binds stay
// below the new mounts until the instance is released; the instance's devpts
// and shm are carried over, so that its workloads keep their ptys and shared
// memory.

// Mounts what `view` says is missing, in order. Returns how many mounts it
// made.
absl::StatusOr<int> CompleteInstance(int instance_fd, const InstanceView& view,
                                     const std::vector<int>& lower_fds);

struct ReleaseCounts {
  uint32_t unmounted = 0;
  uint32_t lazily = 0;
};

// Unmounts everything at or below the instance's rootfs (see the .cc).
absl::StatusOr<ReleaseCounts> UnmountInstance(int instance_fd, const InstanceLayout& layout);

// Whether `view` is an instance an older daemon prepared: the overlay,
// proc and its knobs, devpts and shm in place, only what a container's /dev,
// /sys and /proc add missing. Its conversion, if it fails, is not rolled
// back: its workloads keep running on what they have.
bool IsOlderDaemonsInstance(const InstanceView& view);

// At start, before serving: converts every instance under `base` that an
// older daemon prepared (the overlay, proc and its knobs in place; only the
// new /dev, /sys and masks missing), so that a DaemonSet rollout gives
// running instances a container's mounts at once, not at their provider's
// next prepare. Instances in any other state are left to that prepare.
// Logs what it did; a failure leaves the instance as it was found.
void ConvertOlderInstances(const std::string& base);

}  // namespace sc

#endif  // DAEMON_ROOTFS_INSTANCE_MOUNTS_H_
