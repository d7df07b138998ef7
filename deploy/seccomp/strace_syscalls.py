#!/usr/bin/env python3
"""Lists the syscalls the mount-helper daemon made, from `strace -f -ff -o DIR/t`.

Usage: strace_syscalls.py DIR [BINARY_NAME]

Finds every traced process that execve()d BINARY_NAME (default
sc-mount-helper), follows the processes and threads it cloned, and counts
their syscalls. A child's syscalls are counted up to and including its first
successful execve(): after that it runs the workload under the filter the
daemon loads for it, not under the daemon's profile. Prints "count name"
lines, most frequent first, then the total number of distinct syscalls.
"""
import collections
import os
import re
import sys

LINE = re.compile(r"^(?:\d+\.\d+ )?([a-z_0-9]+)\((.*)")
RESUMED = re.compile(r"^(?:\d+\.\d+ )?<\.\.\. ([a-z_0-9]+) resumed>(.*)")
CLONE_RESULT = re.compile(r"=\s+(\d+)\s*$")
# "+++ exited with 0 +++", "+++ killed by SIGKILL +++": the process is gone.
GONE = re.compile(r"^(?:\d+\.\d+ )?\+\+\+ ")
CLONES = {"clone", "clone3", "fork", "vfork"}
EXITS = {"exit", "exit_group"}


def main():
    trace_dir = sys.argv[1]
    binary = sys.argv[2] if len(sys.argv) > 2 else "sc-mount-helper"
    files = {}
    for name in os.listdir(trace_dir):
        pid = name.rsplit(".", 1)[-1]
        if pid.isdigit():
            files[int(pid)] = os.path.join(trace_dir, name)

    def events(pid):
        with open(files[pid], errors="replace") as f:
            for line in f:
                if GONE.match(line):
                    yield "+++", line.rstrip("\n")
                    continue
                m = LINE.match(line) or RESUMED.match(line)
                if m:
                    yield m.group(1), line.rstrip("\n")

    roots = []
    for pid in files:
        for name, line in events(pid):
            if name == "execve" and binary in line.split(",")[0] and "= 0" in line:
                roots.append(pid)
                break

    counts = collections.Counter()
    seen = set()
    # (pid, counting_from_daemon_exec, is_daemon_child)
    queue = [(pid, True, False) for pid in roots]
    while queue:
        pid, is_root, is_child = queue.pop()
        if pid in seen or pid not in files:
            continue
        seen.add(pid)
        started = not is_root  # a daemon root counts from its own execve on
        for name, line in events(pid):
            if not started:
                if name == "execve" and binary in line and line.rstrip().endswith("= 0"):
                    started = True
                    continue
                continue
            if name == "+++":
                # Gone, also without an exit call (killed by a signal, as a
                # simulated pod's teardown kills a session's keeper): what
                # follows in the file is the next owner of the pid.
                break
            if name == "execve" and is_child and "= 0" in line:
                counts[name] += 1
                break  # the workload's own filter takes over
            counts[name] += 1
            if name in EXITS:
                # The process (or thread) ended. With pid_max 32768 its pid
                # comes round again during a suite, and strace -ff appends
                # the next owner's trace to the same file: a test's pod init
                # (pivot_root, sethostname) was counted as the daemon's.
                break
            if name in CLONES:
                m = CLONE_RESULT.search(line)
                if m:
                    threaded = "CLONE_THREAD" in line
                    queue.append((int(m.group(1)), False, is_child or not threaded))
    for name, n in counts.most_common():
        print(f"{n:8d} {name}")
    print(f"# {len(counts)} distinct syscalls from {len(roots)} daemon runs "
          f"({len(seen)} processes and threads)", file=sys.stderr)


if __name__ == "__main__":
    main()
