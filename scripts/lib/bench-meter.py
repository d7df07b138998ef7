#!/usr/bin/env python3
"""Throughput meter for scripts/bench.sh: times a stream, not the session
around it, so that a session's start (sc-exec, the pod entry, the daemon's
launch: tens of ms on a loaded machine) is not counted as slow bytes.

  bench-meter.py read BYTES OUT    reads stdin to EOF: times from the first
                                   byte to EOF (bytes after the first read)
  bench-meter.py write BYTES OUT   writes BYTES zero bytes to stdout in 64 KiB
                                   writes: times from the moment the reader
                                   has drained the first write (it runs) to
                                   the moment it has drained the last

  bench-meter.py pty BYTES OUT CMD...
                                   runs CMD on a new pty and reads its master
                                   as `read` does, to EIO (no holder of the
                                   slave left); nothing is typed, so nothing
                                   is echoed (script(1) types its stdin's EOF)

OUT gets "BYTES_TIMED NANOSECONDS". Exits 1 if another number of bytes went
through, so that a broken session is not taken for a fast one.
"""
import fcntl
import errno
import os
import pty
import struct
import sys
import termios
import time

CHUNK = 65536


def unread(fd):
    # FIONREAD on either end of a pipe: the bytes in it.
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def wait_drained(fd):
    while unread(fd) > 0:
        time.sleep(0.0005)


def read(expected, fd=0):
    buf = memoryview(bytearray(1 << 20))
    total = first_n = 0
    first = None
    while True:
        try:
            n = os.readv(fd, [buf])
        except OSError as e:
            if e.errno != errno.EIO:  # a pty master's EOF
                raise
            n = 0
        if n == 0:
            break
        if first is None:
            first, first_n = time.monotonic_ns(), n
        total += n
    end = time.monotonic_ns()
    return total == expected, total - first_n, end - (first or end)


def write(expected):
    chunk = bytes(CHUNK)
    view = memoryview(chunk)
    fd = 1

    def put(size):
        done = 0
        while done < size:
            done += os.write(fd, view[: size - done])

    first = min(CHUNK, expected)
    put(first)
    wait_drained(fd)
    start = time.monotonic_ns()
    left = expected - first
    while left > 0:
        n = min(CHUNK, left)
        put(n)
        left -= n
    wait_drained(fd)
    end = time.monotonic_ns()
    return True, expected - first, end - start


def on_pty(expected, argv):
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    ok, timed_bytes, ns = read(expected, master)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.stderr.write(f"bench-meter: {argv[0]} ended with wait status {status}\n")
    return ok and status == 0, timed_bytes, ns


def main():
    mode, expected, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "pty":
        ok, timed_bytes, ns = on_pty(expected, sys.argv[4:])
    elif mode == "read":
        ok, timed_bytes, ns = read(expected)
    else:
        ok, timed_bytes, ns = write(expected)
    with open(out, "w") as f:
        f.write(f"{timed_bytes} {ns}\n")
    if not ok:
        sys.stderr.write(f"bench-meter: expected {expected} bytes, got another number\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
