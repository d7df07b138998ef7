#ifndef DAEMON_EXEC_SECCOMP_FILTER_H_
#define DAEMON_EXEC_SECCOMP_FILTER_H_

#include <linux/filter.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sc {

// The seccomp filter of every exec'd workload, compiled to classic BPF.
//
// It is an allowlist modelled on the container runtimes' default profile
// (RuntimeDefault: moby's and containerd's), so that a workload started
// through sc-exec can do no more than it could in a container of its own pod,
// for a workload that holds no capability (it never does):
//   - allowed: file, memory, process, signal, time, IPC and socket calls
//     that a capless process needs, the legacy and time64 names of the 32-bit
//     ABI included;
//   - with argument conditions, as the runtimes have them: personality only
//     with 0, PER_LINUX32, UNAME26, both, or 0xffffffff (a query); clone only
//     without a namespace flag; socket with any family but AF_VSOCK (vsock
//     is not namespaced: it reaches the node's hypervisor and host services);
//   - stricter than RuntimeDefault (the workload has no CAP_SYS_ADMIN, and the
//     pods of an instance share its rootfs): unshare only without a namespace
//     flag (RuntimeDefault refuses it whole), no io_uring (its operations
//     bypass every rule here; moby's profile no longer allows it either), no ptrace,
//     process_vm_readv/writev, kcmp or pidfd_getfd;
//   - clone3 answers ENOSYS: its flags are in memory, out of a filter's
//     reach, and libcs then fall back to clone, whose flags it sees;
//   - every other call the list does not name fails with EPERM (the mount
//     family, setns, chroot, pivot_root, modules, kexec, reboot, swap, acct,
//     quotactl, bpf, perf_event_open, userfaultfd, fanotify_init, the
//     keyring, open_by_handle_at, name_to_handle_at, lookup_dcookie, syslog,
//     iopl/ioperm, the NUMA policy calls, setting the clock or host name,
//     vhangup ...), except
//   - a call whose number is above the highest the list names (a syscall
//     newer than the list, or than this libseccomp) fails with ENOSYS, as runc
//     does for the same profile: libcs fall back on ENOSYS (not on EPERM) to
//     an older call, which the list does judge.
// The 32-bit entry points (int 0x80 as i386, x32) get the same rules in their
// own numbers; any other architecture is killed.
//
// libseccomp is not async-signal-safe (it allocates), so the filter is built
// once in the daemon and the forked child only hands the finished program to
// seccomp(SECCOMP_SET_MODE_FILTER).
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

// The names of the list that this libseccomp does not know: they are skipped,
// so those calls are refused. None with Debian 12's libseccomp 2.5.4 (a test
// holds it so; a misspelt name would show here).
std::vector<std::string> UnknownSeccompNames();

}  // namespace sc

#endif  // DAEMON_EXEC_SECCOMP_FILTER_H_
