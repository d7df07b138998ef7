#ifndef DAEMON_SECCOMP_FILTER_H_
#define DAEMON_SECCOMP_FILTER_H_

#include <linux/filter.h>

#include <vector>

#include "absl/status/statusor.h"

namespace sc {

// The default seccomp filter of every exec'd workload, compiled to classic BPF.
//
// libseccomp is not async-signal-safe (it allocates), so the filter is built
// once in the daemon and the forked child only hands the finished program to
// prctl(PR_SET_SECCOMP). Denied calls fail with EPERM rather than killing the
// process, so that a workload probing for them sees a plain error:
//   - the mount family, old and new API (mount, umount2, pivot_root,
//     open_tree, move_mount, fsopen, fsconfig, fsmount, fspick, mount_setattr);
//   - unshare/clone of mount or user namespaces, setns into them (or with
//     nstype 0, which could be either); clone3 answers ENOSYS because its
//     flags are out of a filter's reach, and libcs fall back to clone;
//   - kernel modules, kexec, reboot, swap, acct, quotactl;
//   - ptrace and process_vm_{readv,writev}, bpf, perf_event_open,
//     userfaultfd, the keyring (keyctl, add_key, request_key),
//     open_by_handle_at, lookup_dcookie, syslog, iopl/ioperm.
// Everything else is allowed: the process has no capabilities anyway.
struct SeccompProgram {
  std::vector<sock_filter> instructions;
  sock_fprog Fprog() const {
    return sock_fprog{static_cast<unsigned short>(instructions.size()),
                      const_cast<sock_filter*>(instructions.data())};
  }
};

// Built on first use and kept for the daemon's lifetime; thread-safe.
absl::StatusOr<const SeccompProgram*> DefaultSeccompProgram();

// Builds a fresh copy (for tests).
absl::StatusOr<SeccompProgram> BuildSeccompProgram();

}  // namespace sc

#endif  // DAEMON_SECCOMP_FILTER_H_
