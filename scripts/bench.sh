#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run (these machines
# are noisy: compare the ratios, not the absolute figures). Release build.
# Prints a table and writes a JSON file (${BENCH_JSON:-bench-results.json}).
#
#   sudo scripts/bench.sh            about 4 minutes
#   sudo scripts/bench.sh --quick    smaller sizes and fewer runs, for a smoke test
#   sudo scripts/bench.sh [--quick] --only exec,throughput
#                                    only these sections (exec, throughput,
#                                    latency, concurrency, mounts); footprint
#                                    figures come with every run
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
[[ $(id -u) == 0 ]] || { echo "bench: needs root" >&2; exit 1; }
bench_started=$(date +%s%N)
quick=false
only=exec,throughput,latency,concurrency,mounts
while (($#)); do
  case $1 in
    --quick) quick=true ;;
    --only) only=$2; shift ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ ,$only, == *,$1,* ]]; }
if $quick; then
  RUNS=20 GIB=$((256 << 20)) TTY_BYTES=$((32 << 20)) CONC_BYTES=$((4 << 20)) MOUNT_RUNS=10
  INSTANCES=20 LAT_RUNS=100
else
  RUNS=100 GIB=$((1 << 30)) TTY_BYTES=$((256 << 20)) CONC_BYTES=$((32 << 20)) MOUNT_RUNS=100
  INSTANCES=100 LAT_RUNS=500
fi
json_out=${BENCH_JSON:-$top/bench-results.json}

scripts/install-deps.sh >/dev/null
command -v hyperfine >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
BUILD_DIR=${BENCH_BUILD_DIR:-build-release}
# Only what the bench runs, two jobs at most (the machine is shared).
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD_DIR" -j2 sc-mount-helper sc-exec sc-test-client >/dev/null
build=$top/$BUILD_DIR
SCEXEC=$build/wrapper/sc-exec
CLIENT=$build/tests/sc-test-client
source scripts/lib/pod.sh

work=$(mktemp -d /tmp/sc-bench-XXXXXX)
daemon_pid=
cleanup() {
  set +e
  pod_destroy
  [[ -n $daemon_pid ]] && { kill -TERM "$daemon_pid"; wait "$daemon_pid"; }
  awk -v w="$work" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo |
    sort -r | xargs -r -n1 umount -l
  rm -rf "$work"
}
trap cleanup EXIT

declare -A R   # results: key -> value
order=()
put() { R[$1]=$2; order+=("$1"); }
now_ns() { date +%s%N; }
ms() { awk -v n="$1" 'BEGIN {printf "%.3f", n / 1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
# hyperfine_stats NAME CMD: median/min/p99 in ms of RUNS runs.
hyperfine_stats() {
  local name=$1 cmd=$2 j=$work/hf-$1.json
  hyperfine -N --runs "$RUNS" --warmup 5 --export-json "$j" "$cmd" >/dev/null 2>&1 ||
    hyperfine --runs "$RUNS" --warmup 5 --export-json "$j" "$cmd" >/dev/null
  python3 - "$j" "$name" <<'EOF'
import json, sys
times = sorted(json.load(open(sys.argv[1]))["results"][0]["times"])
p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
med = times[len(times) // 2]
print(f"{med * 1000:.3f} {times[0] * 1000:.3f} {p99 * 1000:.3f}")
EOF
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# sample_peak_rss PID FILE: keeps the highest RSS of PID in FILE until killed.
sample_peak_rss() {
  local peak=0 r
  while true; do
    r=$(rss_kb "$1" 2>/dev/null || echo 0)
    ((r > peak)) && { peak=$r; echo "$peak" >"$2"; }
    sleep 0.05
  done
}
children_of() { cat /proc/"$1"/task/*/children 2>/dev/null | wc -w; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# ------------------------------------------------------------- set-up
layer=$work/layers/busybox
mkdir -p "$layer"/{bin,etc,tmp,proc,sys,dev}
cp /bin/busybox "$layer/bin/busybox"
for a in $("$layer/bin/busybox" --list); do [[ -e $layer/bin/$a ]] || ln -s busybox "$layer/bin/$a"; done
printf 'root:x:0:0:root:/:/bin/sh\n' >"$layer/etc/passwd"
chmod 1777 "$layer/tmp"
mkdir -p "$work/run"
SOCK=$work/run/mh.sock
start_daemon() {
  rm -f "$work/ready" && mkfifo "$work/ready"
  "$build/daemon/sc-mount-helper" --socket="$SOCK" --instance_base="$work/instances" \
    --layer_root="$work/layers" --audit_log="$work/audit.log" --log_level=warn \
    --max_execs=2048 --max_execs_per_pod=1024 --ready_fd=3 3>"$work/ready" >>"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  read -r -t 10 _ <"$work/ready"
}
s=$(now_ns); start_daemon; startup=$(($(now_ns) - s))
for i in 2 3 4 5; do
  kill -TERM "$daemon_pid"; wait "$daemon_pid" || true
  s=$(now_ns); start_daemon; t=$(($(now_ns) - s)); ((t < startup)) && startup=$t
done
put "daemon_startup_to_serving_ms" "$(ms "$startup")"
prepare() {
  "$CLIENT" "$SOCK" PrepareRootfs "instance { namespace: \"bench\" name: \"$1\" } layers { paths: \"$layer\" }" >/dev/null
}
release() { "$CLIENT" "$SOCK" ReleaseRootfs "instance { namespace: \"bench\" name: \"$1\" } delete_data: true" >/dev/null; }
prepare main
ROOTFS=$work/instances/bench/main/rootfs
pod_create bench-consumer "$ROOTFS"
# A command that runs its arguments in the pod, as pod_exec does (cgroup, then
# namespaces), but as a file: hyperfine and background jobs need a program.
{
  echo '#!/bin/sh'
  for d in "${POD_CGROUPS[@]}"; do echo "echo \$\$ > $d/cgroup.procs"; done
  echo "exec nsenter -t $POD_PID -m -u -i -n -p -r -w \"\$@\""
} >"$work/in-pod"
chmod +x "$work/in-pod"
IN_POD=("$work/in-pod")
export SC_SOCKET=$SOCK
put "daemon_idle_rss_kb" "$(rss_kb "$daemon_pid")"
put "sc_exec_size_bytes" "$(stat -c %s "$SCEXEC")"

# The data source of the throughput runs, in the rootfs so that every run
# (ours and the baselines) uses the same program: busybox dd in 64 KiB writes.
# (busybox head -c, used at first, moves only ~150 MiB/s by itself: it
# measured busybox, not the stream.)
printf '#!/bin/sh\nexec dd if=/dev/zero bs=65536 count=$(($1 / 65536)) 2>/dev/null\n' \
  >"$ROOTFS/bin/zeros"
chmod +x "$ROOTFS/bin/zeros"
ZEROS=(chroot "$ROOTFS" /bin/zeros)
median() { sort -n | awk '{a[NR]=$1} END {printf "%.3f", NR ? a[int((NR+1)/2)] : 0}'; }

if want exec; then
# ------------------------------------------------------------- 1. exec round trip
echo "bench: exec round trip ($RUNS runs each)" >&2
read -r chroot_med chroot_min chroot_p99 < <(hyperfine_stats chroot "chroot $ROOTFS /bin/true")
read -r nsenter_med nsenter_min nsenter_p99 < <(hyperfine_stats nsenter_chroot \
  "${IN_POD[*]} chroot /rootfs /bin/true")
read -r nsonly_med _ _ < <(hyperfine_stats nsenter_only "${IN_POD[*]} /bin/true")
read -r sc_med sc_min sc_p99 < <(hyperfine_stats sc_exec "${IN_POD[*]} env SC_SOCKET=$SOCK $SCEXEC true")
read -r ver_med _ _ < <(hyperfine_stats sc_version "${IN_POD[*]} $SCEXEC --version")
sc_net=$(awk -v a="$sc_med" -v b="$nsonly_med" 'BEGIN {printf "%.3f", a - b}')
put "exec_chroot_true_ms(min/med/p99)" "$chroot_min/$chroot_med/$chroot_p99"
put "exec_nsenter_chroot_true_ms(min/med/p99)" "$nsenter_min/$nsenter_med/$nsenter_p99"
put "exec_sc_exec_true_ms(min/med/p99)" "$sc_min/$sc_med/$sc_p99"
put "exec_sc_exec_true_net_of_nsenter_ms" "$sc_net"
put "ratio_sc_exec_vs_chroot(net)" "$(ratio "$sc_net" "$chroot_med")"
put "ratio_sc_exec_vs_nsenter_chroot" "$(ratio "$sc_med" "$nsenter_med")"
# Breakdown: exec of the static binary up to main() from two hyperfine
# medians; the rest from sc-exec's own timing points (SC_EXEC_TRACE, see
# wrapper/trace.h), the median of each phase over RUNS runs.
put "breakdown_client_start_ms" "$(awk -v a="$ver_med" -v b="$nsonly_med" 'BEGIN {printf "%.3f", a - b}')"
for _ in $(seq "$RUNS"); do
  SC_EXEC_TRACE=1 "${IN_POD[@]}" "$SCEXEC" true 2>&1 >/dev/null | awk '$1 == "sc-exec-trace" {t[$2] = $3}
    END {print t["channel"] - t["main"], t["start_sent"] - t["channel"], t["started"] - t["start_sent"],
               t["exit_status"] - t["started"], t["exit"] - t["exit_status"]}'
done >"$work/trace"
phase() { awk -v c="$1" '{print $c / 1000}' "$work/trace" | median; }
put "breakdown_connect_channel_ms" "$(phase 1)"
put "breakdown_send_start_ms" "$(phase 2)"
put "breakdown_daemon_accept_launch_ms" "$(phase 3)"
put "breakdown_run_and_exit_delivery_ms" "$(phase 4)"
put "breakdown_stream_close_ms" "$(phase 5)"
fi

if want throughput; then
# ------------------------------------------------------------- 2. throughput
echo "bench: throughput ($((GIB >> 20)) MiB)" >&2
mbps() { awk -v b="$1" -v ns="$2" 'BEGIN {printf "%.0f", b / 1048576 / (ns / 1e9)}'; }
timed() { local s; s=$(now_ns); "$@"; echo $(($(now_ns) - s)); }
# The baseline: the same producer into a plain pipe, read by the same cat.
pipe_ns=$(timed bash -c "${ZEROS[*]} $GIB | chroot $ROOTFS cat > /dev/null")
out_ns=$(timed bash -c "${IN_POD[*]} $SCEXEC zeros $GIB > /dev/null")
err_ns=$(timed bash -c "${IN_POD[*]} $SCEXEC sh -c 'zeros $GIB >&2' 2> /dev/null")
in_ns=$(timed bash -c "${ZEROS[*]} $GIB | ${IN_POD[*]} $SCEXEC sh -c 'cat > /dev/null'")
cat_ns=$(timed bash -c "${ZEROS[*]} $GIB | ${IN_POD[*]} $SCEXEC cat > /dev/null")
put "throughput_pipe_MiBps" "$(mbps "$GIB" "$pipe_ns")"
put "throughput_stdout_MiBps" "$(mbps "$GIB" "$out_ns")"
put "throughput_stderr_MiBps" "$(mbps "$GIB" "$err_ns")"
put "throughput_stdin_MiBps" "$(mbps "$GIB" "$in_ns")"
put "throughput_stdin_to_stdout_cat_MiBps" "$(mbps "$GIB" "$cat_ns")"
put "ratio_stdout_vs_pipe" "$(ratio "$pipe_ns" "$out_ns")"
tty_local_ns=$(timed bash -c "script -qec '${ZEROS[*]} $TTY_BYTES' /dev/null > /dev/null")
tty_sc_ns=$(timed bash -c "script -qec '${IN_POD[*]} env SC_SOCKET=$SOCK $SCEXEC zeros $TTY_BYTES' /dev/null > /dev/null")
put "throughput_tty_local_MiBps" "$(mbps "$TTY_BYTES" "$tty_local_ns")"
put "throughput_tty_sc_exec_MiBps" "$(mbps "$TTY_BYTES" "$tty_sc_ns")"
put "ratio_tty_vs_local_pty" "$(ratio "$tty_local_ns" "$tty_sc_ns")"
# sc-exec's own RSS while streaming: sampled, the highest seen.
bash -c "${ZEROS[*]} $GIB | ${IN_POD[*]} $SCEXEC cat > /dev/null" &
streamer=$!
client=
for _ in $(seq 200); do client=$(pgrep -f "^$SCEXEC cat\$" | head -n1) && [[ -n $client ]] && break; sleep 0.01; done
echo 0 >"$work/peak"
[[ -n $client ]] && { sample_peak_rss "$client" "$work/peak" & sampler=$!; }
wait "$streamer" || true
[[ -n $client ]] && { kill "$sampler"; wait "$sampler" 2>/dev/null || true; }
peak=$(cat "$work/peak")
put "sc_exec_rss_while_streaming_kb" "$peak"
fi

if want latency; then
# ------------------------------------------------------------- 3. interactive latency
echo "bench: interactive latency ($LAT_RUNS keystrokes)" >&2
lat() {
  python3 - "$LAT_RUNS" "$@" <<'EOF'
import os, pty, select, sys, time
runs, argv = int(sys.argv[1]), sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
def read_until(want, timeout=10):
    buf = b""
    end = time.monotonic() + timeout
    while want not in buf:
        r, _, _ = select.select([fd], [], [], max(0, end - time.monotonic()))
        if not r:
            raise SystemExit("timeout waiting for echo")
        buf += os.read(fd, 4096)
    return buf
# Raw mode so that cat gets each byte at once; RE""ADY so that the echo of
# the typed line is not taken for the shell's answer.
os.write(fd, b"stty raw -echo; echo RE\"\"ADY; exec cat\n")
read_until(b"READY")
# cat is up once a byte comes back; the measurements below are echo round trips.
os.write(fd, b"!")
read_until(b"!")
samples = []
for i in range(runs):
    ch = bytes([97 + i % 26])
    t = time.monotonic_ns()
    os.write(fd, ch)
    read_until(ch)
    samples.append(time.monotonic_ns() - t)
os.write(fd, b"\x04")
os.kill(pid, 9)
os.waitpid(pid, 0)
samples.sort()
print(f"{samples[len(samples)//2]/1e6:.3f} {samples[int(0.99*(len(samples)-1))]/1e6:.3f}")
EOF
}
read -r l_med l_p99 < <(lat sh)
read -r s_med s_p99 < <(lat "${IN_POD[@]}" env SC_SOCKET="$SOCK" "$SCEXEC" sh)
put "keystroke_echo_local_pty_ms(med/p99)" "$l_med/$l_p99"
put "keystroke_echo_sc_exec_ms(med/p99)" "$s_med/$s_p99"
put "ratio_keystroke_median" "$(ratio "$s_med" "$l_med")"
fi

if want concurrency; then
# ------------------------------------------------------------- 4. concurrency
echo "bench: concurrency" >&2
for n in 1 16 64 256; do
  rss0=$(rss_kb "$daemon_pid")
  cpu0=$(cpu_ticks "$daemon_pid")
  s=$(now_ns)
  pids=()
  for _ in $(seq "$n"); do
    "${IN_POD[@]}" "$SCEXEC" zeros "$CONC_BYTES" >/dev/null 2>>"$work/conc.err" &
    pids+=($!)
  done
  sample_peak_rss "$daemon_pid" "$work/peak" &
  sampler=$!
  errors=0
  for p in "${pids[@]}"; do wait "$p" || errors=$((errors + 1)); done
  took=$(($(now_ns) - s))
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  peak=$(cat "$work/peak")
  cpu=$(($(cpu_ticks "$daemon_pid") - cpu0))
  put "concurrency_${n}_per_session_MiBps" "$(awk -v b="$CONC_BYTES" -v ns="$took" 'BEGIN {printf "%.2f", b / 1048576 / (ns / 1e9)}')"
  put "concurrency_${n}_daemon_cpu_s" "$(awk -v t="$cpu" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}')"
  put "concurrency_${n}_daemon_peak_rss_kb" "$peak"
  put "concurrency_${n}_errors" "$errors"
done
# Memory per idle session.
rss0=$(rss_kb "$daemon_pid")
idle=()
for _ in $(seq 64); do "${IN_POD[@]}" "$SCEXEC" sleep 30 </dev/null >/dev/null 2>&1 & idle+=($!); done
# Every session has a process of the daemon's: wait (bounded) for all 64.
deadline=$(($(date +%s) + 30))
while (($(children_of "$daemon_pid") < 64 && $(date +%s) < deadline)); do sleep 0.05; done
rss64=$(rss_kb "$daemon_pid")
for p in "${idle[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${idle[@]}"; do wait "$p" 2>/dev/null || true; done
put "daemon_rss_per_idle_session_kb" "$(( (rss64 - rss0) / 64 ))"
# What the bursts above left behind (freed memory the allocator keeps), once
# the daemon has reaped the last of those sessions (bounded wait).
deadline=$(($(date +%s) + 30))
while (($(children_of "$daemon_pid") > 0 && $(date +%s) < deadline)); do sleep 0.05; done
put "daemon_rss_after_sessions_ended_kb" "$(rss_kb "$daemon_pid")"
fi

if want mounts; then
# ------------------------------------------------------------- 6. mounts
echo "bench: mounts ($MOUNT_RUNS prepare/release cycles, then with $INSTANCES instances)" >&2
mount_cycle_stats() {
  local prep=() rel=() i s
  for i in $(seq "$MOUNT_RUNS"); do
    s=$(now_ns); prepare "cycle$1"; prep+=($(($(now_ns) - s)))
    s=$(now_ns); release "cycle$1"; rel+=($(($(now_ns) - s)))
  done
  printf '%s\n' "${prep[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.3f ", a[int((NR+1)/2)]/1e6}'
  printf '%s\n' "${rel[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.3f\n", a[int((NR+1)/2)]/1e6}'
}
mounts_before=$(wc -l </proc/self/mountinfo)
read -r p0 r0 < <(mount_cycle_stats a)
put "prepare_median_ms" "$p0"
put "release_median_ms" "$r0"
put "mountinfo_lines_before_after_cycles" "$mounts_before/$(wc -l </proc/self/mountinfo)"
for i in $(seq "$INSTANCES"); do prepare "many$i"; done
read -r p1 r1 < <(mount_cycle_stats b)
put "prepare_median_ms_with_${INSTANCES}_instances" "$p1"
put "release_median_ms_with_${INSTANCES}_instances" "$r1"
s=$(now_ns); "$CLIENT" "$SOCK" ListInstances >/dev/null; put "list_instances_ms_with_${INSTANCES}" "$(ms $(($(now_ns) - s)))"
for i in $(seq "$INSTANCES"); do release "many$i"; done
fi

# ------------------------------------------------------------- report
date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)
machine="$(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%d MiB", $2/1024}' /proc/meminfo), kernel $(uname -r)"
took_s=$(awk -v n="$(($(date +%s%N) - bench_started))" 'BEGIN {printf "%.0f", n / 1e9}')
{
  echo "{"
  echo "  \"date\": \"$date_utc\","
  echo "  \"machine\": \"$machine\","
  echo "  \"quick\": $quick,"
  echo "  \"sections\": \"$only\","
  echo "  \"bench_seconds\": $took_s,"
  for i in "${!order[@]}"; do
    k=${order[$i]}
    sep=,; ((i == ${#order[@]} - 1)) && sep=
    echo "  \"$k\": \"${R[$k]}\"$sep"
  done
  echo "}"
} >"$json_out"
echo "# $date_utc, $machine, quick=$quick, sections $only, bench.sh took $took_s s"
printf '%-48s %s\n' "measure" "value"
for k in "${order[@]}"; do printf '%-48s %s\n' "$k" "${R[$k]}"; done
echo "bench: JSON in $json_out" >&2
