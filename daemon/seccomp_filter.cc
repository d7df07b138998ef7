#include "daemon/seccomp_filter.h"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"
#include "daemon/fs_util.h"

namespace sc {
namespace {

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

// Denied outright.
constexpr const char* kDenied[] = {
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "open_by_handle_at",
    "lookup_dcookie",
    "syslog",
    "iopl",
    "ioperm",
    "kcmp",
};

absl::Status Check(int rc, absl::string_view what) {
  if (rc == 0) return absl::OkStatus();
  return ErrnoStatus(-rc, absl::StrCat("libseccomp: ", what));
}

absl::Status DenyNamed(scmp_filter_ctx ctx, const char* name) {
  int nr = seccomp_syscall_resolve_name(name);
  // Names unknown to this libseccomp or architecture are skipped: a call the
  // kernel does not have cannot be made either.
  if (nr == __NR_SCMP_ERROR) return absl::OkStatus();
  return Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0), name);
}

absl::Status AddRules(scmp_filter_ctx ctx) {
  for (const char* name : kDenied) {
    if (absl::Status s = DenyNamed(ctx, name); !s.ok()) return s;
  }
  const scmp_datum_t kNsMask = CLONE_NEWNS | CLONE_NEWUSER;
  // unshare(flags) and clone(flags, ...) with either namespace bit.
  for (scmp_datum_t bit : {scmp_datum_t{CLONE_NEWNS}, scmp_datum_t{CLONE_NEWUSER}}) {
    if (absl::Status s = Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 1,
                                                SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit)),
                               "unshare rule");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                                SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit)),
                               "clone rule");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setns), 1,
                                                SCMP_A1(SCMP_CMP_MASKED_EQ, bit, bit)),
                               "setns rule");
        !s.ok()) {
      return s;
    }
  }
  (void)kNsMask;
  // setns(fd, 0) joins whatever namespace fd is: it could be a mount one.
  if (absl::Status s = Check(
          seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setns), 1, SCMP_A1(SCMP_CMP_EQ, 0)),
          "setns(0) rule");
      !s.ok()) {
    return s;
  }
  int clone3 = seccomp_syscall_resolve_name("clone3");
  if (clone3 != __NR_SCMP_ERROR) {
    if (absl::Status s =
            Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), clone3, 0), "clone3 rule");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SeccompProgram> BuildSeccompProgram() {
  Ctx ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return absl::InternalError("libseccomp: seccomp_init failed");
  // The child sets no_new_privs itself, before loading; the exported program
  // does not carry that attribute anyway.
  if (absl::Status s = Check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0), "attr NNP");
      !s.ok()) {
    return s;
  }
#if defined(__x86_64__)
  // Without these, the 32-bit entry points (int 0x80, x32) would bypass the
  // rules; with them, their numbers get the same rules.
  for (uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32}) {
    int rc = seccomp_arch_add(ctx.get(), arch);
    if (rc != 0 && rc != -EEXIST) return Check(rc, "seccomp_arch_add");
  }
#endif
  if (absl::Status s = AddRules(ctx.get()); !s.ok()) return s;

  // libseccomp 2.5 exports only to an fd: a memfd keeps it off the disk.
  UniqueFd mem(memfd_create("sc-seccomp", MFD_CLOEXEC));
  if (!mem) return ErrnoStatus(errno, "memfd_create for the seccomp program");
  if (absl::Status s = Check(seccomp_export_bpf(ctx.get(), mem.get()), "seccomp_export_bpf");
      !s.ok()) {
    return s;
  }
  off_t size = lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0 || size / sizeof(sock_filter) > BPF_MAXINSNS) {
    return absl::InternalError(absl::StrCat("seccomp program has a bad size: ", size));
  }
  SeccompProgram program;
  program.instructions.resize(size / sizeof(sock_filter));
  ssize_t n = pread(mem.get(), program.instructions.data(), size, 0);
  if (n != size) return ErrnoStatus(n < 0 ? errno : EIO, "read back the seccomp program");
  return program;
}

absl::StatusOr<const SeccompProgram*> DefaultSeccompProgram() {
  static std::once_flag once;
  static absl::StatusOr<SeccompProgram>* program = nullptr;
  std::call_once(once, [] { program = new absl::StatusOr<SeccompProgram>(BuildSeccompProgram()); });
  if (!program->ok()) return program->status();
  return &**program;
}

}  // namespace sc
