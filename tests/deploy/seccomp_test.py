#!/usr/bin/env python3
"""ctest "deploy_seccomp": the daemon's seccomp profile (deploy/seccomp/).

1. sc-mount-helper.json is what generate.py writes (no hand edits drifting
   from the documented derivation) and allows none of the forbidden calls.
2. Differential run: the real daemon is started twice, unconfined and under
   the profile (loaded with libseccomp, as runc does), and the same calls are
   made to both with the real sc-exec and sc-test-client. Every call must end
   the same way (exit status and gRPC code), and SIGTERM must stop both the
   same way. A negative control (the profile without bind) must break the
   daemon, proving the filter is really applied.
3. Coverage: the integration suite runs under strace -f -ff; every syscall
   the daemon (and its children up to execve) made must be allowed. This is
   the check that fails when new daemon code needs a syscall the profile
   lacks: re-derive with deploy/seccomp/strace_syscalls.py (README.md).

Usage: seccomp_test.py --daemon BIN --sc-exec BIN --client BIN [--integration BIN]
Exit 77 (skipped) when not root, unless CI=true.
"""
import argparse
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SECCOMP_DIR = os.path.join(ROOT, "deploy", "seccomp")
PROFILE = os.path.join(SECCOMP_DIR, "sc-mount-helper.json")
sys.path.insert(0, SECCOMP_DIR)
import generate  # noqa: E402

failures = []
SANITIZED = False


def report(ok, line):
    print(("PASS " if ok else "FAIL ") + line, flush=True)
    if not ok:
        failures.append(line)


def allowed_names(profile, conditional=True):
    return {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
            and (conditional or not rule.get("args")) for n in rule["names"]}


class Daemon:
    """The real daemon in a temp dir, optionally under a seccomp profile."""

    def __init__(self, args, tmp, profile=None):
        self.socket = os.path.join(tmp, "mount-helper.sock")
        self.audit = os.path.join(tmp, "audit.jsonl")
        os.makedirs(os.path.join(tmp, "instances"), exist_ok=True)
        # A lower layer for explicit-layer prepares (real overlay mounts).
        self.layer = os.path.join(tmp, "layers", "l1")
        os.makedirs(os.path.join(self.layer, "etc"), exist_ok=True)
        with open(os.path.join(self.layer, "etc", "hello"), "w") as f:
            f.write("hello\n")
        # Debian's static busybox (busybox-static), for Exec into the rootfs.
        os.makedirs(os.path.join(self.layer, "bin"), exist_ok=True)
        shutil.copy2("/bin/busybox", os.path.join(self.layer, "bin", "busybox"))
        read_end, write_end = os.pipe()
        cmd = [args.daemon, f"--socket={self.socket}", f"--audit_log={self.audit}",
               f"--instance_base={os.path.join(tmp, 'instances')}", "--shutdown_grace=2s",
               f"--layer_root={os.path.join(tmp, 'layers')}",
               "--metrics_address=127.0.0.1:0", f"--ready_fd={write_end}"]
        if profile:
            cmd = [sys.executable, os.path.join(HERE, "seccomp_run.py"), profile, "--"] + cmd
        self.log = open(os.path.join(tmp, "daemon.log"), "w")
        self.proc = subprocess.Popen(cmd, pass_fds=[write_end], stdout=self.log, stderr=subprocess.STDOUT)
        os.close(write_end)
        self.ready = False
        deadline = time.monotonic() + 20
        buf = b""
        while time.monotonic() < deadline and b"\n" not in buf:
            r, _, _ = select.select([read_end], [], [], max(0, deadline - time.monotonic()))
            if not r:
                break
            chunk = os.read(read_end, 64)
            if not chunk:
                break  # the daemon exited or closed the fd without READY
            buf += chunk
        os.close(read_end)
        self.ready = buf.startswith(b"READY")
        # The metrics endpoint's port, which the daemon logs once it serves.
        with open(os.path.join(tmp, "daemon.log")) as f:
            found = re.search(r"metrics on 127\.0\.0\.1:0 \(port (\d+)\)", f.read())
        self.metrics_url = f"http://127.0.0.1:{found.group(1)}/metrics" if found else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            code = f"timeout (killed, {code})"
        self.log.close()
        return code


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path + "/")]


def run(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return ("timeout", "")
    first = (p.stderr.strip().split() or [""])[0].rstrip(":")
    # Exec answers carry the workload's status in the response.
    status = " ".join(line.strip() for line in p.stdout.splitlines()
                      if line.strip().startswith(("exit_code:", "signal:")))
    return (p.returncode, first if p.returncode else "", status)


def calls(args, socket, layer, metrics_url):
    c = args.client
    inst = 'instance { namespace: "sc-test" name: "seccomp" }'
    prepare = f'{inst} layers {{ paths: "{layer}" }}'
    return [
        ("sc-exec --health", [args.sc_exec, "--health", "--socket", socket]),
        ("sc-exec --whoami", [args.sc_exec, "--whoami", "--socket", socket]),
        ("sc-exec CMD (no rootfs)", [args.sc_exec, "--socket", socket, "--", "/bin/true"]),
        ("Health", [c, socket, "Health", ""]),
        ("WhoAmI", [c, socket, "WhoAmI", ""]),
        ("ListInstances", [c, socket, "ListInstances", ""]),
        ("CheckRootfs", [c, socket, "CheckRootfs", 'instance { namespace: "sc-test" name: "seccomp" }']),
        ("GetInstance", [c, socket, "GetInstance", 'instance { namespace: "sc-test" name: "seccomp" }']),
        ("GetInstance (invalid name)", [c, socket, "GetInstance", 'instance { namespace: "../x" name: "y" }']),
        ("ReleaseRootfs", [c, socket, "ReleaseRootfs", 'instance { namespace: "sc-test" name: "seccomp" }']),
        ("PrepareRootfs (bad layers)", [c, socket, "PrepareRootfs",
                                        'instance { namespace: "sc-test" name: "seccomp" } layers { paths: "/nonexistent" }']),
        # Real mounts: overlay + proc/dev/sys/devpts/shm/tmp, then unmount.
        ("PrepareRootfs (explicit layer)", [c, socket, "PrepareRootfs", prepare]),
        ("PrepareRootfs again (idempotent)", [c, socket, "PrepareRootfs", prepare]),
        ("GetInstance (prepared)", [c, socket, "GetInstance", inst]),
        ("ListInstances (one)", [c, socket, "ListInstances", ""]),
        # The exec child under the daemon's profile: namespaces, chroot,
        # dropping privileges, the workload's own filter, execve.
        ("Exec true (operator, by name)", [c, socket, "Exec", f'argv: "/bin/busybox" argv: "true" {inst}']),
        ("Exec exit 7", [c, socket, "Exec", f'argv: "/bin/busybox" argv: "sh" argv: "-c" argv: "exit 7" {inst}']),
        ("Exec cat /etc/hello", [c, socket, "Exec", f'argv: "/bin/busybox" argv: "cat" argv: "/etc/hello" {inst}']),
        ("Exec not found", [c, socket, "Exec", f'argv: "/nonexistent" {inst}']),
        ("Exec with a tty", [c, socket, "Exec",
                             f'tty: true window_size {{ rows: 24 cols: 80 }} argv: "/bin/busybox" argv: "tty" {inst}']),
        ("ReleaseRootfs (prepared)", [c, socket, "ReleaseRootfs", inst]),
        ("ReleaseRootfs again", [c, socket, "ReleaseRootfs", inst]),
        ("Exec", [c, socket, "Exec", 'argv: "/bin/true"']),
        # The metrics endpoint (civetweb's threads) and a scrape's reads of
        # the mount table and the instance base.
        ("scrape /metrics", ["curl", "-sS", "--fail", "--max-time", "10", "-o", "/dev/null",
                             metrics_url or "http://127.0.0.1:1/no-metrics-port-logged"]),
    ]


def load_profile():
    """The profile as the daemon gets it. A sanitized daemon also gets its
    runtime's own syscalls: ASan reads its options from /proc/self/environ with
    open(2) before main, and without them it cannot be told not to check leaks
    (which needs ptrace, rightly forbidden)."""
    with open(PROFILE) as f:
        profile = json.load(f)
    if SANITIZED:
        profile["syscalls"].append({"names": sorted(SANITIZER_RUNTIME_SYSCALLS), "action": "SCMP_ACT_ALLOW"})
    return profile


def profile_file(tmp):
    if not SANITIZED:
        return PROFILE
    path = os.path.join(tmp, "profile-with-sanitizer-runtime.json")
    with open(path, "w") as f:
        json.dump(load_profile(), f)
    return path


def differential(args):
    results = {}
    for mode in ("unconfined", "confined"):
        tmp = tempfile.mkdtemp(prefix=f"sc-test-seccomp-{mode}-")
        try:
            d = Daemon(args, tmp, profile_file(tmp) if mode == "confined" else None)
            report(d.ready, f"{mode} daemon reports READY")
            outcome = {}
            for name, cmd in calls(args, d.socket, d.layer, d.metrics_url):
                outcome[name] = run(cmd)
            code = d.stop()
            outcome["SIGTERM exit"] = (code,)
            outcome["socket removed"] = (not os.path.exists(d.socket),)
            outcome["audit log written"] = (os.path.exists(d.audit) and os.path.getsize(d.audit) > 0,)
            results[mode] = outcome
            if mode == "confined" and failures:
                with open(os.path.join(tmp, "daemon.log")) as f:
                    print(f.read()[-3000:])
        finally:
            leftover = mounts_under(tmp)
            if leftover:
                subprocess.run(["umount", "-R", "-l", os.path.join(tmp, "instances")], check=False)
            report(not leftover, f"{mode}: nothing left mounted under the temp dir")
            if not mounts_under(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
    u, c = results["unconfined"], results["confined"]
    report(u["sc-exec --health"][0] == 0 and u["PrepareRootfs (explicit layer)"][0] == 0
           and u["Exec exit 7"] == (0, "", "exit_code: 7") and u["scrape /metrics"][0] == 0,
           "unconfined daemon is healthy, prepares a rootfs and execs in it (the comparison means something)")
    for name in u:
        report(u[name] == c[name], f"under the profile: {name}: {c[name]} (unconfined: {u[name]})")


def negative_control(args):
    profile = load_profile()
    for rule in profile["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n != "bind"]
    tmp = tempfile.mkdtemp(prefix="sc-test-seccomp-negative-")
    try:
        broken = os.path.join(tmp, "no-bind.json")
        with open(broken, "w") as f:
            json.dump(profile, f)
        d = Daemon(args, tmp, broken)
        health = run([args.sc_exec, "--health", "--socket", d.socket])
        d.stop()
        report(not d.ready and health[0] != 0,
               f"negative control: without bind(2) the daemon cannot serve (ready={d.ready}, health={health})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def coverage(args, ci):
    if not args.integration:
        report(not ci, "coverage: no --integration binary given")
        return
    if shutil.which("strace") is None:
        report(not ci, "coverage: strace is not installed (apt-get install strace)")
        return
    tmp = tempfile.mkdtemp(prefix="sc-test-seccomp-strace-")
    try:
        trace_dir = os.path.join(tmp, "trace")
        os.mkdir(trace_dir)
        env = dict(os.environ)
        env.pop("CI", None)  # timing-sensitive cases may fail under strace; we only want the trace
        # Every test but those that repeat the same calls at volume (their
        # syscalls are the streaming ones every exec test makes) and the
        # [fault] loops (SIGKILL, restart, re-adoption: the restart and
        # provide tests make those calls once; the loops took half the
        # suite's time, and under strace five minutes of CI).
        # One Catch2 spec: its terms are ANDed; "~[.]" keeps hidden tests out.
        # [restart] repeats what the exec tests do, around a SIGKILL.
        spec = ('~[load] ~[fault] ~[restart] ~"exec: a slow reader*" '
                '~"exec: 50 concurrent sessions*" ~[.]')
        subprocess.run(["strace", "-f", "-ff", "-qq", "-o", os.path.join(trace_dir, "t"), args.integration, spec],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900, env=env)
        p = subprocess.run([sys.executable, os.path.join(SECCOMP_DIR, "strace_syscalls.py"), trace_dir],
                           capture_output=True, text=True, check=True)
        seen = {line.split()[1] for line in p.stdout.splitlines() if line.strip()}
        print("coverage: " + p.stderr.strip())
        report(len(seen) > 20, f"coverage: the trace holds daemon runs ({len(seen)} distinct syscalls)")
        with open(PROFILE) as f:
            missing = sorted(seen - allowed_names(json.load(f))
                             - (SANITIZER_RUNTIME_SYSCALLS if SANITIZED else set()))
        report(not missing, "coverage: every syscall the daemon made under the integration suite is allowed"
               + (f"; missing: {' '.join(missing)} (re-derive: see deploy/README.md)" if missing else ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# What a sanitizer runtime calls that the production daemon never does: ASan
# opens files with open(2) where glibc uses openat(2).
SANITIZER_RUNTIME_SYSCALLS = {"open"}


def sanitized(binary):
    """Whether `binary` carries a sanitizer runtime (scripts/test.sh's build)."""
    with open(binary, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--sc-exec", required=True, dest="sc_exec")
    ap.add_argument("--client", required=True)
    ap.add_argument("--integration")
    args = ap.parse_args()
    ci = os.environ.get("CI") == "true"
    global SANITIZED
    SANITIZED = sanitized(args.daemon)
    if SANITIZED:
        # LeakSanitizer stops the world with ptrace at exit, which the profile
        # (rightly) forbids and strace occupies; leaks are the integration
        # suite's to find.
        os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
        print("note: sanitized daemon; leak checks off here, sanitizer-runtime syscalls "
              f"{sorted(SANITIZER_RUNTIME_SYSCALLS)} not counted for coverage")

    expected = json.dumps(generate.profile(), indent=2) + "\n"
    with open(PROFILE) as f:
        report(f.read() == expected, "sc-mount-helper.json is exactly what deploy/seccomp/generate.py writes")
    with open(PROFILE) as f:
        profile = json.load(f)
    bad = sorted(allowed_names(profile) & set(generate.FORBIDDEN))
    report(not bad, "no forbidden syscall is allowed" + (f": {bad}" if bad else ""))
    whole = sorted(allowed_names(profile, conditional=False) & generate.CONDITIONAL_ONLY)
    report(not whole, "bpf and mknodat are allowed only with conditions on their arguments"
           + (f": {whole} allowed whole" if whole else ""))
    report(profile["defaultAction"] == "SCMP_ACT_ERRNO", "default action is SCMP_ACT_ERRNO")
    unshare_rules = [r for r in profile["syscalls"] if "unshare" in r["names"]]
    report(len(unshare_rules) == 1 and unshare_rules[0].get("args") == [
        {"index": 0, "value": 0x10000000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        "unshare is allowed only without CLONE_NEWUSER")
    report("SCMP_ARCH_X86" not in profile["architectures"] and "SCMP_ARCH_X32" not in profile["architectures"],
           "32-bit syscall ABIs are not allowed")

    if os.geteuid() != 0:
        if ci:
            report(False, "needs root (CI=true)")
        else:
            print("SKIP the daemon runs need root")
            return 77 if not failures else 1
    else:
        runner = [sys.executable, os.path.join(HERE, "seccomp_run.py"), PROFILE, "--"]
        r = subprocess.run(runner + ["/usr/bin/unshare", "-m", "-u", "-i", "-n", "-p", "-f", "/bin/true"],
                           capture_output=True, text=True, timeout=30)
        report(r.returncode == 0, f"under the profile, unshare of mnt/uts/ipc/net/pid works ({r.stderr.strip()})")
        r = subprocess.run(runner + ["/usr/bin/unshare", "-U", "/bin/true"], capture_output=True, text=True, timeout=30)
        report(r.returncode != 0 and "not permitted" in r.stderr,
               f"under the profile, unshare of a user namespace is refused ({r.stderr.strip()})")
        differential(args)
        negative_control(args)
        coverage(args, ci)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
