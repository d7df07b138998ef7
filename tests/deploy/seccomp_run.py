#!/usr/bin/env python3
"""seccomp_run.py PROFILE.json -- CMD [ARGS...]

Loads an OCI/kubelet seccomp profile (the JSON the kubelet's localhost/
profiles use) into this process with libseccomp, the way runc does, and
execs CMD under it. Only the native architecture's rules are loaded; a
profile whose "architectures" does not name it is refused. Argument
conditions ("args") are applied like runc does for a rule's conditions on
distinct arguments (all must match).
"""
import ctypes
import ctypes.util
import json
import os
import platform
import sys

SCMP_ACT_ALLOW = 0x7FFF0000
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
       "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]
NATIVE = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


def action(name, errno_ret):
    if name == "SCMP_ACT_ALLOW":
        return SCMP_ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return 0x00050000 | (errno_ret & 0xFFFF)
    if name == "SCMP_ACT_KILL_PROCESS":
        return 0x80000000
    raise SystemExit(f"seccomp_run: unsupported action {name}")


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f:
        profile = json.load(f)
    cmd = sys.argv[3:]
    if NATIVE.get(platform.machine()) not in profile.get("architectures", []):
        raise SystemExit(f"seccomp_run: profile does not cover {platform.machine()}")
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    errno_ret = profile.get("defaultErrnoRet", 1)
    ctx = lib.seccomp_init(action(profile["defaultAction"], errno_ret))
    if not ctx:
        raise SystemExit("seccomp_run: seccomp_init failed")
    unknown = []
    for rule in profile["syscalls"]:
        conds = rule.get("args") or []
        if len({c["index"] for c in conds}) != len(conds):
            raise SystemExit("seccomp_run: several conditions on one argument are not supported")
        array = (ArgCmp * max(1, len(conds)))(*[
            ArgCmp(c["index"], OPS[c["op"]], c["value"], c.get("valueTwo", 0)) for c in conds])
        act = action(rule["action"], rule.get("errnoRet", errno_ret))
        for name in rule["names"]:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0:
                unknown.append(name)  # runc ignores names the arch lacks, too
                continue
            rc = lib.seccomp_rule_add_array(ctx, act, nr, len(conds), array)
            if rc < 0:
                raise SystemExit(f"seccomp_run: rule for {name}: {os.strerror(-rc)}")
    if unknown:
        print(f"seccomp_run: not on this arch, skipped: {' '.join(unknown)}", file=sys.stderr)
    sys.stdout.flush()
    rc = lib.seccomp_load(ctx)
    if rc < 0:
        raise SystemExit(f"seccomp_run: seccomp_load: {os.strerror(-rc)}")
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
