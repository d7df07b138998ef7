#!/usr/bin/env python3
"""Writes sc-mount-helper.json, the daemon's seccomp profile, from
observed-syscalls.txt (what strace saw the daemon do; see README.md,
"Seccomp profile") plus the groups below, which name what the daemon needs
but the test suite did not exercise yet (error paths, the rootfs and exec
code paths, the container runtime's last steps). Every syscall is allowed
once, in the first group that names it; everything else fails with EPERM
(not a kill: a refused call surfaces as an errno in the daemon's status and
audit log, which is debuggable). Only the native 64-bit ABIs are listed, so
32-bit (int 0x80 / compat) syscalls are refused outright.

Usage: generate.py            rewrite sc-mount-helper.json next to this file
       generate.py --check    exit 1 if the file is not what this would write
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

GROUPS = [
    ("observed", "Seen by strace -f -ff of the daemon (and its children up to execve) "
     "during the integration suite; deploy/seccomp/observed-syscalls.txt.", None),
    ("runtime", "glibc, gRPC, abseil and spdlog calls on paths the suite did not hit "
     "(signals, errors, timers, log rotation).", """
     rt_sigreturn rt_sigsuspend sigaltstack restart_syscall nanosleep clock_gettime clock_getres
     gettimeofday getppid getuid geteuid getgid getegid getresuid getresgid getpgid
     getsid sched_getaffinity sysinfo readlink readlinkat fstat statx fstatfs statfs
     dup dup2 dup3 pipe2 epoll_pwait epoll_pwait2 ppoll writev readv sendto recvfrom
     sendmmsg recvmmsg socketpair getpeername tgkill tkill kill mremap fsync fdatasync
     rename renameat renameat2 getcwd getdents64 faccessat faccessat2 openat2
     close_range timerfd_create timerfd_settime timerfd_gettime eventfd2 fallocate
     sched_setscheduler sched_get_priority_max sched_get_priority_min membarrier
     """),
    ("rootfs", "Overlay, proc/sysfs/devpts/tmpfs and bind mounts of instances, fd-based "
     "path resolution, instance directories, provider lookup through pidfds (woken by "
     "inotify on the pod's cgroup).", """
     mount umount2 open_tree move_mount fsopen fsconfig fsmount fspick mount_setattr
     mkdirat unlinkat rmdir fchownat fchown fchmodat fchmod utimensat pidfd_open
     waitid wait4 setns inotify_init1 inotify_add_watch inotify_rm_watch
     """),
    ("container-mounts", "A container's /dev, /sys and /proc in every rootfs and exec "
     "(daemon/base/container_spec.h): device nodes and links of the default /dev, the sysfs of an "
     "empty network namespace, the device program of the operator execs' cgroup "
     "(daemon/exec/operator_cgroup.h).", """
     symlinkat symlink getdents64 fstatfs
     """),
    ("exec-child", "The daemon's child between fork and execve of the workload: join the "
     "peer's namespaces and cgroup, pty, chroot, drop privileges, load the workload's "
     "own (stricter) filter, execve.", """
     clone vfork chroot chdir fchdir setsid setpgid capget capset setgroups setresuid
     setresgid setuid setgid setfsuid setfsgid seccomp memfd_create execve execveat
     """),
    ("pid-init", "The pid 1 of an operator exec's own pid namespace: the daemon's binary "
     "execveat()'d as a reaper (daemon/exec/pid_init.h) that waits for the workload's end.", """
     execveat prctl rt_sigprocmask close_range pidfd_open nanosleep signalfd4 poll read waitid
     exit_group
     """),
    ("by-reference", "Stdio by reference (daemon/exec/caller_fds.cc): pidfd_getfd copies "
     "the fds an Exec names out of the verified caller, and only through the pidfd its identity "
     "was proven with; the session's keeper (session/keeper.cc) relays a terminal, forwards "
     "signals and reaps the workload with CAP_KILL only.", """
     pidfd_getfd execveat prctl capset close_range poll read write ioctl fcntl waitid kill
     pidfd_send_signal clock_gettime exit_group
     """),
    ("metrics", "The metrics endpoint (--metrics_address): civetweb's listener and its "
     "worker threads (prometheus-cpp's Exposer), which accept with accept(2), not accept4.", """
     socket bind listen accept accept4 setsockopt getsockopt getsockname shutdown poll
     recvfrom sendto read write close
     """),
    ("container-runtime", "What runc does after loading this profile and before it "
     "execve()s the daemon (with allowPrivilegeEscalation the profile is loaded before "
     "capabilities and ids are set).", """
     getdents64 newfstatat fstat openat2 close_range capget capset setgroups setresuid
     setresgid prctl chdir execve
     """),
]

# Allowed only with conditions on their arguments: (name, comment, args).
CLONE_NEWUSER = 0x10000000
S_IFMT, S_IFCHR, S_IFBLK = 0o170000, 0o020000, 0o060000
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_QUERY = 5, 8, 16
CONDITIONAL = [
    ("mknodat", "container-mounts: the character devices of a container's default /dev "
     "(null, zero, full, random, urandom, tty) and the device nodes a pod was given, made "
     "again in its rootfs's /dev; never a FIFO, socket or regular file.",
     [{"index": 2, "value": S_IFMT, "valueTwo": S_IFCHR, "op": "SCMP_CMP_MASKED_EQ"}]),
    ("mknodat", "container-mounts: a block device a pod was given (a volumeDevices entry).",
     [{"index": 2, "value": S_IFMT, "valueTwo": S_IFBLK, "op": "SCMP_CMP_MASKED_EQ"}]),
    ("bpf", "container-mounts, cgroup v2: load the device program of the operator execs' "
     "cgroup (BPF_PROG_LOAD); no maps, no other command.",
     [{"index": 0, "value": BPF_PROG_LOAD, "op": "SCMP_CMP_EQ"}]),
    ("bpf", "container-mounts, cgroup v2: attach that program (BPF_PROG_ATTACH).",
     [{"index": 0, "value": BPF_PROG_ATTACH, "op": "SCMP_CMP_EQ"}]),
    ("bpf", "container-mounts, cgroup v2: see whether it is attached already (BPF_PROG_QUERY).",
     [{"index": 0, "value": BPF_PROG_QUERY, "op": "SCMP_CMP_EQ"}]),
    ("unshare", "exec-child: an operator's exec (no pod peer) runs in fresh mount/uts/ipc/net/"
     "cgroup/pid namespaces; never a new user namespace (CLONE_NEWUSER bit must be 0).",
     [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]),
]

# Never allowed, whatever a trace shows: the daemon has no business with
# them, and each is a known container-escape or kernel-attack surface. The
# tests fail if the profile allows any of these. bpf and mknodat are allowed
# only with the conditions above (CONDITIONAL_ONLY), never as a whole.
CONDITIONAL_ONLY = {"bpf", "mknodat"}
FORBIDDEN = """
perf_event_open kexec_load kexec_file_load init_module finit_module delete_module
create_module ptrace process_vm_readv process_vm_writev keyctl add_key request_key
userfaultfd swapon swapoff reboot settimeofday clock_settime clock_adjtime adjtimex acct
quotactl quotactl_fd pivot_root iopl ioperm open_by_handle_at name_to_handle_at
lookup_dcookie syslog mknod personality uselib nfsservctl vhangup kcmp
io_uring_setup io_uring_enter io_uring_register fanotify_init sethostname
setdomainname
""".split()


def observed():
    with open(os.path.join(HERE, "observed-syscalls.txt")) as f:
        return [line.split()[1] for line in f if line.strip() and not line.startswith("#")]


def profile():
    seen = set()
    rules = []
    for name, comment, text in GROUPS:
        names = observed() if text is None else text.split()
        conditional = {c[0] for c in CONDITIONAL}
        fresh = sorted(n for n in dict.fromkeys(names) if n not in seen and n not in conditional)
        bad = [n for n in fresh if n in FORBIDDEN]
        if bad:
            sys.exit(f"group {name} would allow forbidden syscalls: {bad}")
        seen.update(fresh)
        if fresh:
            rules.append({"names": fresh, "action": "SCMP_ACT_ALLOW", "comment": f"{name}: {comment}"})
    for name, comment, args in CONDITIONAL:
        rules.append({"names": [name], "action": "SCMP_ACT_ALLOW", "args": args, "comment": comment})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": rules,
    }


def main():
    text = json.dumps(profile(), indent=2) + "\n"
    target = os.path.join(HERE, "sc-mount-helper.json")
    if "--check" in sys.argv:
        with open(target) as f:
            if f.read() != text:
                sys.exit("sc-mount-helper.json is stale: run deploy/seccomp/generate.py")
        return
    with open(target, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
