#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run (these machines
# are noisy: compare the ratios, not the absolute figures). Release build.
# Prints a table and writes a JSON file (${BENCH_JSON:-bench-results.json}).
# sc-exec runs in its default mode (stdio by reference: the workload gets
# sc-exec's own files, a keeper in the pod relays a terminal) and, where the
# figure says "stream", with --stream (stdio copied over gRPC by the daemon).
#
#   sudo scripts/bench.sh            3 to 6 minutes on 2 cores, with the load
#   sudo scripts/bench.sh --quick    smaller sizes and fewer runs, for a smoke test
#   sudo scripts/bench.sh [--quick] --only exec,throughput
#                                    only these sections (exec, throughput,
#                                    latency, cost, concurrency, sessions,
#                                    mounts); footprint figures come with
#                                    every run
#
# Sizes (environment; defaults, --quick in brackets):
#   BENCH_RUNS=100 [20]           hyperfine runs per exec figure
#   BENCH_MIB=256 [256]           MiB per throughput run
#   BENCH_TTY_MIB=64 [32]         MiB per tty throughput run
#   BENCH_ROUNDS=12 [1]           throughput rounds, interleaved; the fastest
#                                 of each figure counts (noise only slows;
#                                 many short rounds find the quiet moments)
#   BENCH_COST_MIB="1024 4096" ["256 1024"]
#                                 MiB streamed per daemon CPU/RSS figure
#   BENCH_SESSIONS="256 512 1024 1536" ["64 128"]
#                                 by-reference sessions held at once, steps
#   BENCH_STREAM_SESSIONS="256 512 1024" ["64 128"]
#                                 the same with --stream
#   BENCH_BUILD_LOCK=FILE         flock FILE around the build (a shared tree)
#   BENCH_NO_BUILD=1              run what $BENCH_BUILD_DIR (build-release) holds
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
[[ $(id -u) == 0 ]] || { echo "bench: needs root" >&2; exit 1; }
bench_started=$(date +%s%N)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
quick=false
only=exec,throughput,latency,cost,concurrency,sessions,mounts
while (($#)); do
  case $1 in
    --quick) quick=true ;;
    --only) only=$2; shift ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ ,$only, == *,$1,* ]]; }
# section NAME: a progress line on stderr with the previous section's time.
section_started=
section() {
  local now; now=$(date +%s)
  [[ -n $section_started ]] && echo "bench:   ($((now - section_started)) s)" >&2
  section_started=$now
  echo "bench: $*" >&2
}
if $quick; then
  RUNS=20 MIB=256 TTY_MIB=32 ROUNDS=1 COST_MIB="256 1024" SESSIONS="64 128" STREAM_SESSIONS="64 128"
  CONC_BYTES=$((4 << 20)) MOUNT_RUNS=10 INSTANCES=20 LAT_RUNS=100
else
  RUNS=100 MIB=256 TTY_MIB=64 ROUNDS=12 COST_MIB="1024 4096" SESSIONS="256 512 1024 1536"
  STREAM_SESSIONS="256 512 1024" CONC_BYTES=$((32 << 20)) MOUNT_RUNS=100 INSTANCES=100 LAT_RUNS=500
fi
RUNS=${BENCH_RUNS:-$RUNS} MIB=${BENCH_MIB:-$MIB} TTY_MIB=${BENCH_TTY_MIB:-$TTY_MIB}
ROUNDS=${BENCH_ROUNDS:-$ROUNDS} COST_MIB=${BENCH_COST_MIB:-$COST_MIB}
SESSIONS=${BENCH_SESSIONS:-$SESSIONS} STREAM_SESSIONS=${BENCH_STREAM_SESSIONS:-$STREAM_SESSIONS}
RUN_BYTES=$((MIB << 20)) TTY_BYTES=$((TTY_MIB << 20))
json_out=${BENCH_JSON:-$top/bench-results.json}

scripts/install-deps.sh >/dev/null
command -v hyperfine >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
BUILD_DIR=${BENCH_BUILD_DIR:-build-release}
# Only what the bench runs, two jobs at most (the machine is shared).
if [[ ${BENCH_NO_BUILD:-} != 1 ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  if ! out=$(${BENCH_BUILD_LOCK:+flock "$BENCH_BUILD_LOCK"} ninja -C "$BUILD_DIR" -j2 sc-mount-helper sc-exec sc-test-client 2>&1); then
    echo "$out" | tail -n 30 >&2
    echo "bench: the build failed" >&2
    exit 1
  fi
fi
build=$top/$BUILD_DIR
SCEXEC=$build/wrapper/sc-exec
CLIENT=$build/tests/sc-test-client
source scripts/lib/pod.sh
source scripts/lib/bench-sessions.sh

work=$(mktemp -d /tmp/sc-bench-XXXXXX)
daemon_pid=
cleanup() {
  set +e
  hold_cleanup
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
# Per-pod limits raised so that the session figures measure what holds, not
# the defaults: every session sc-exec runs keeps its connection to the daemon
# open until it exits, in either mode, so --max_connections_per_pod (256 by
# default) would cap the sessions one pod holds at 256.
start_daemon() {
  rm -f "$work/ready" && mkfifo "$work/ready"
  "$build/daemon/sc-mount-helper" --socket="$SOCK" --instance_base="$work/instances" \
    --layer_root="$work/layers" --audit_log="$work/audit.log" --log_level=warn \
    --max_execs=2048 --max_execs_per_pod=1024 --max_connections_per_pod=4096 \
    --ready_fd=3 3>"$work/ready" >>"$work/daemon.log" 2>&1 &
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
daemon_fds() { find "/proc/$daemon_pid/fd" -mindepth 1 | wc -l; }
daemon_threads() { awk '/^Threads/ {print $2}' "/proc/$daemon_pid/status"; }
daemon_idle_fds=$(daemon_fds)
# The daemon closes the connections of sessions that ended within a second or
# so: before a figure that counts its fds, wait (bounded) for that.
daemon_settle() {
  local deadline=$(($(date +%s) + 10))
  while (($(daemon_fds) > daemon_idle_fds && $(date +%s) < deadline)); do sleep 0.1; done
}
put "sc_exec_size_bytes" "$(stat -c %s "$SCEXEC")"

# The data source of the throughput runs, in the rootfs so that every run
# (ours and the baselines) uses the same program: busybox dd in 64 KiB writes.
# (busybox head -c, used at first, moves only ~150 MiB/s by itself: it
# measured busybox, not the stream.)
printf '#!/bin/sh\nexec dd if=/dev/zero bs=65536 count=$(($1 / 65536)) 2>/dev/null\n' \
  >"$ROOTFS/bin/zeros"
chmod +x "$ROOTFS/bin/zeros"
ZEROS=(chroot "$ROOTFS" /bin/zeros)
# sc-exec in the pod, and the consumer every throughput figure ends in: a
# cat reading a pipe, as in the baseline.
SC="${IN_POD[*]} env SC_SOCKET=$SOCK $SCEXEC"
CAT="chroot $ROOTFS cat > /dev/null"
# The baselines' ends in the pod, as the workload's are: the pod is a cgroup
# of its own, which a busy node's scheduler treats as one entity (a process
# outside it would get more of the CPU than the workload does).
ZEROS_POD="${IN_POD[*]} chroot /rootfs /bin/zeros"
CAT_POD="${IN_POD[*]} chroot /rootfs cat > /dev/null"
mbps() { awk -v b="$1" -v ns="$2" 'BEGIN {printf "%.0f", b / 1048576 / (ns / 1e9)}'; }
# timed CMD: its wall time in ns; a failed pipeline (pipefail) stops the
# bench, so that a broken session is not taken for a fast one.
timed() {
  local s; s=$(now_ns)
  bash -o pipefail -c "$1" >&2 || { echo "bench: failed: $1" >&2; return 1; }
  echo $(($(now_ns) - s))
}
median() { sort -n | awk '{a[NR]=$1} END {printf "%.3f", NR ? a[int((NR+1)/2)] : 0}'; }

if want exec; then
# ------------------------------------------------------------- 1. exec round trip
section "exec round trip ($RUNS runs each)"
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
# By reference vs --stream, interleaved run by run (the load beside us
# changes faster than hyperfine's runs of one command, then the other).
for _ in $(seq "$RUNS"); do
  for flags in "" --stream; do
    s=$EPOCHREALTIME
    "${IN_POD[@]}" "$SCEXEC" $flags true
    echo "${flags:-by_reference} $(awk -v s="$s" -v e="$EPOCHREALTIME" 'BEGIN {printf "%.3f", (e - s) * 1000}')"
  done
done >"$work/true-pairs"
true_stats() {
  awk -v m="$1" '$1 == m {print $2}' "$work/true-pairs" | sort -n |
    awk '{a[NR] = $1} END {printf "%.3f/%.3f/%.3f", a[1], a[int((NR + 1) / 2)], a[int(0.99 * (NR - 1)) + 1]}'
}
by_ref_stats=$(true_stats by_reference)
stream_stats=$(true_stats --stream)
put "exec_sc_exec_true_interleaved_ms(min/med/p99)" "$by_ref_stats"
put "exec_sc_exec_stream_true_interleaved_ms(min/med/p99)" "$stream_stats"
put "ratio_sc_exec_true_by_reference_vs_stream" \
  "$(ratio "$(echo "$by_ref_stats" | cut -d/ -f2)" "$(echo "$stream_stats" | cut -d/ -f2)")"
put "exec_sc_exec_true_net_of_nsenter_ms" "$sc_net"
put "ratio_sc_exec_vs_chroot(net)" "$(ratio "$sc_net" "$chroot_med")"
put "ratio_sc_exec_vs_nsenter_chroot" "$(ratio "$sc_med" "$nsenter_med")"
# Breakdown (default mode): exec of the static binary up to main() from two
# hyperfine medians; the rest from sc-exec's own timing points
# (SC_EXEC_TRACE, see wrapper/trace.h), the median of each phase over RUNS
# runs. By reference, "run and exit delivery" is the call's close plus the
# keeper's status; "stream close" is what follows until exit.
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
section "throughput ($MIB MiB, tty $TTY_MIB MiB, $ROUNDS rounds)"
# Each figure is the stream's own rate, from its first byte to its last,
# as scripts/lib/bench-meter.py sees it at the far end: the session's start
# (tens of ms on a loaded machine, see the exec figures) is not counted.
# Rounds interleave every figure (the load beside us changes over time);
# the fastest of each counts.
METER="python3 $top/scripts/lib/bench-meter.py"
declare -A T
best() {
  local t
  rm -f "$work/meter"
  timed "$2" >/dev/null
  t=$(awk '{printf "%.0f", $2 / $1 * 1073741824}' "$work/meter")  # ns per GiB
  [[ -z ${T[$1]:-} || $t -lt ${T[$1]} ]] && T[$1]=$t
  return 0
}
IN="$METER read $RUN_BYTES $work/meter"        # the consumer at the far end
OUT="$METER write $RUN_BYTES $work/meter"      # the producer at the near end
GB=$((1 << 30))
for _ in $(seq "$ROUNDS"); do
  # The baselines: the same producer into a plain pipe, read by the same
  # consumer (busybox dd in the pod into the meter; the meter into busybox
  # cat in the pod).
  best pipe "$ZEROS_POD $RUN_BYTES | $IN"
  best stdout "$SC zeros $RUN_BYTES | $IN"
  best stdout_stream "$SC --stream zeros $RUN_BYTES | $IN"
  best stderr "$SC sh -c 'zeros $RUN_BYTES >&2' 2>&1 >/dev/null | $IN"
  best pipe_in "$OUT | $CAT_POD"
  best stdin "$OUT | $SC sh -c 'cat > /dev/null'"
  best stdin_stream "$OUT | $SC --stream sh -c 'cat > /dev/null'"
  best cat "${ZEROS[*]} $RUN_BYTES | $SC cat | $IN"
  best cat_stream "${ZEROS[*]} $RUN_BYTES | $SC --stream cat | $IN"
done
put "throughput_pipe_MiBps" "$(mbps "$GB" "${T[pipe]}")"
put "throughput_stdout_MiBps" "$(mbps "$GB" "${T[stdout]}")"
put "throughput_stdout_stream_MiBps" "$(mbps "$GB" "${T[stdout_stream]}")"
put "throughput_stderr_MiBps" "$(mbps "$GB" "${T[stderr]}")"
put "throughput_pipe_from_meter_MiBps" "$(mbps "$GB" "${T[pipe_in]}")"
put "throughput_stdin_MiBps" "$(mbps "$GB" "${T[stdin]}")"
put "throughput_stdin_stream_MiBps" "$(mbps "$GB" "${T[stdin_stream]}")"
put "throughput_stdin_to_stdout_cat_MiBps" "$(mbps "$GB" "${T[cat]}")"
put "throughput_stdin_to_stdout_cat_stream_MiBps" "$(mbps "$GB" "${T[cat_stream]}")"
put "ratio_stdout_vs_pipe" "$(ratio "${T[pipe]}" "${T[stdout]}")"
put "ratio_stdout_stream_vs_pipe" "$(ratio "${T[pipe]}" "${T[stdout_stream]}")"
put "ratio_stdin_vs_pipe" "$(ratio "${T[pipe_in]}" "${T[stdin]}")"
put "ratio_stdin_stream_vs_pipe" "$(ratio "${T[pipe_in]}" "${T[stdin_stream]}")"
# A terminal: the meter's pty is the caller's (`bench-meter.py pty`).
# Locally the producer writes into it; by reference into the session's pty,
# which the keeper copies to it; with --stream the daemon reads the
# session's pty and sc-exec writes.
PTY="$METER pty $TTY_BYTES $work/meter"
for _ in $(seq "$ROUNDS"); do
  best tty_local "$PTY $ZEROS_POD $TTY_BYTES"
  best tty "$PTY $SC zeros $TTY_BYTES"
  best tty_stream "$PTY $SC --stream zeros $TTY_BYTES"
done
put "throughput_tty_local_MiBps" "$(mbps "$GB" "${T[tty_local]}")"
put "throughput_tty_sc_exec_MiBps" "$(mbps "$GB" "${T[tty]}")"
put "throughput_tty_sc_exec_stream_MiBps" "$(mbps "$GB" "${T[tty_stream]}")"
put "ratio_tty_vs_local_pty" "$(ratio "${T[tty_local]}" "${T[tty]}")"
put "ratio_tty_stream_vs_local_pty" "$(ratio "${T[tty_local]}" "${T[tty_stream]}")"
put "ratio_tty_by_reference_vs_stream" "$(ratio "${T[tty_stream]}" "${T[tty]}")"
# sc-exec's own RSS while streaming: sampled, the highest seen.
client_rss_while_streaming() {
  local flags=$1 streamer client='' sampler _
  bash -c "${ZEROS[*]} $RUN_BYTES | ${IN_POD[*]} $SCEXEC $flags cat > /dev/null" &
  streamer=$!
  for _ in $(seq 200); do
    client=$(pgrep -f "^$SCEXEC $flags${flags:+ }cat\$" | head -n1) && [[ -n $client ]] && break
    sleep 0.01
  done
  echo 0 >"$work/peak"
  [[ -n $client ]] && { sample_peak_rss "$client" "$work/peak" & sampler=$!; }
  wait "$streamer" || true
  [[ -n $client ]] && { kill "$sampler"; wait "$sampler" 2>/dev/null || true; }
  cat "$work/peak"
}
put "sc_exec_rss_while_streaming_kb" "$(client_rss_while_streaming "")"
put "sc_exec_rss_while_streaming_kb_stream" "$(client_rss_while_streaming --stream)"
fi

if want latency; then
# ------------------------------------------------------------- 3. interactive latency
section "interactive latency ($LAT_RUNS keystrokes)"
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
read -r t_med t_p99 < <(lat "${IN_POD[@]}" env SC_SOCKET="$SOCK" "$SCEXEC" --stream sh)
put "keystroke_echo_local_pty_ms(med/p99)" "$l_med/$l_p99"
put "keystroke_echo_sc_exec_ms(med/p99)" "$s_med/$s_p99"
put "keystroke_echo_sc_exec_stream_ms(med/p99)" "$t_med/$t_p99"
put "ratio_keystroke_median" "$(ratio "$s_med" "$l_med")"
put "ratio_keystroke_median_stream" "$(ratio "$t_med" "$l_med")"
fi

if want cost; then
# ------------------------------------------------------------- 4. daemon cost per byte
section "daemon CPU and RSS per GiB streamed ($COST_MIB MiB)"
# One session's stdout through a pipe, as in the throughput figures: the
# daemon's CPU time (utime + stime, all threads) and its peak RSS over the
# RSS before. By reference no byte passes through the daemon: both must stay
# flat whatever the size; with --stream the CPU grows with the bytes.
hz=$(getconf CLK_TCK)
declare -A COST_CPU COST_RSS
for mode in by_reference stream; do
  flags=
  [[ $mode == stream ]] && flags=--stream
  cpus='' per='' rsss=''
  for mib in $COST_MIB; do
    rss0=$(rss_kb "$daemon_pid")
    cpu0=$(cpu_ticks "$daemon_pid")
    echo "$rss0" >"$work/peak"
    sample_peak_rss "$daemon_pid" "$work/peak" &
    sampler=$!
    timed "$SC $flags zeros $((mib << 20)) | $CAT" >/dev/null
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    cpu=$(awk -v t="$(($(cpu_ticks "$daemon_pid") - cpu0))" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}')
    growth=$(($(cat "$work/peak") - rss0))
    ((growth < 0)) && growth=0
    COST_CPU[$mode,$mib]=$cpu COST_RSS[$mode,$mib]=$growth
    cpus+=${cpus:+/}$cpu
    per+=${per:+/}$(awk -v c="$cpu" -v m="$mib" 'BEGIN {printf "%.2f", c / (m / 1024)}')
    rsss+=${rsss:+/}$growth
  done
  sizes=${COST_MIB// //}
  put "daemon_cpu_s_${mode}(${sizes} MiB)" "$cpus"
  put "daemon_cpu_s_per_GiB_${mode}(${sizes} MiB)" "$per"
  put "daemon_peak_rss_growth_kb_${mode}(${sizes} MiB)" "$rsss"
done
fi

if want concurrency; then
# ------------------------------------------------------------- 5. concurrency
section "concurrency"
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
# Memory per idle session, in each mode: 64 sessions held at once
# (scripts/lib/bench-sessions.sh), the daemon's RSS over its RSS before.
for mode in by_reference stream; do
  suffix=
  [[ $mode == stream ]] && suffix=_stream
  rss0=$(rss_kb "$daemon_pid")
  hold_start "$mode"
  hold_add 64
  hold_stats
  hold_release
  if ((HOLD_HELD == 64 && HOLD_FAILED == 0)); then
    put "daemon_rss_per_idle_session_kb$suffix" "$(((HOLD_DAEMON_RSS_KB - rss0) / 64))"
  else
    put "daemon_rss_per_idle_session_kb$suffix" "n/a (held $HOLD_HELD of 64, $HOLD_FAILED failed)"
  fi
done
# What the bursts above left behind (freed memory the allocator keeps), once
# the daemon has reaped the last of those sessions (bounded wait).
deadline=$(($(date +%s) + 30))
while (($(children_of "$daemon_pid") > 0 && $(date +%s) < deadline)); do sleep 0.05; done
put "daemon_rss_after_sessions_ended_kb" "$(rss_kb "$daemon_pid")"
fi

if want sessions; then
# ------------------------------------------------------------- 6. concurrent sessions held
section "sessions held at once (by reference: $SESSIONS; stream: $STREAM_SESSIONS)"
# ramp MODE STEPS: holds the first step's number of sessions at once, then
# adds sessions up to each next step (the earlier ones still held), and stops
# at the first step not reached with zero errors. Each session must have
# started (its cat has the FIFO open) and, once released, end with status 0.
daemon_settle
sessions_idle_fds=$(daemon_fds)
put "sessions_daemon_idle_rss_kb/threads/fds" "$(rss_kb "$daemon_pid")/$(daemon_threads)/$sessions_idle_fds"
# What bounds the daemon's fds (it raises its soft limit to the hard one, and
# the hard one too where it has CAP_SYS_RESOURCE).
put "sessions_daemon_rlimit_nofile" "$(awk '/^Max open files/ {print $4}' "/proc/$daemon_pid/limits")"
ramp() {
  local mode=$1 steps=$2 target max=0 k
  hold_start "$mode"
  for target in $steps; do
    # shellcheck disable=SC2154  # hold_started: scripts/lib/bench-sessions.sh
    k=$((target - hold_started))
    hold_add "$k"
    hold_stats
    if ((HOLD_HELD >= target && HOLD_FAILED == 0)); then
      max=$target
      put "sessions_${mode}_${target}_held" "$HOLD_HELD (the last $k started in $HOLD_ADD_S s)"
      put "sessions_${mode}_${target}_daemon_rss_kb/threads/fds" \
        "$HOLD_DAEMON_RSS_KB/$HOLD_DAEMON_THREADS/$HOLD_DAEMON_FDS"
      put "sessions_${mode}_${target}_per_session_daemon_fds" \
        "$(awk -v f="$HOLD_DAEMON_FDS" -v f0="$sessions_idle_fds" -v n="$target" 'BEGIN {printf "%.1f", (f - f0) / n}')"
      put "sessions_${mode}_${target}_per_session_pod_pids/anon_kb" \
        "$(awk -v p="$HOLD_POD_PIDS" -v a="$HOLD_POD_ANON_KB" -v n="$target" 'BEGIN {printf "%.1f/%d", p / n, a / n}')"
    else
      put "sessions_${mode}_${target}_held" "$HOLD_HELD of $target, $HOLD_FAILED failed (see above)"
      break
    fi
  done
  local held=$HOLD_HELD
  hold_release
  put "sessions_${mode}_ended_with_status_0" "$HOLD_ENDED_OK of $hold_started"
  # Every session seen held must have ended with 0 (those that failed to
  # start, in a step not reached, ended otherwise).
  if ((HOLD_ENDED_OK >= held)); then
    put "sessions_${mode}_max_held_zero_errors" "$max"
  else
    put "sessions_${mode}_max_held_zero_errors" "0 (of $held held, $((held - HOLD_ENDED_OK)) did not end with 0)"
  fi
}
ramp by_reference "$SESSIONS"
# What the by-reference sessions left in the daemon, once all ended.
daemon_settle
put "sessions_daemon_after_rss_kb/threads/fds" "$(rss_kb "$daemon_pid")/$(daemon_threads)/$(daemon_fds)"
ramp stream "$STREAM_SESSIONS"
fi

if want mounts; then
# ------------------------------------------------------------- 7. mounts
section "mounts ($MOUNT_RUNS prepare/release cycles, then with $INSTANCES instances)"
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

section "report"

# ------------------------------------------------------------- goals (issue 14)
# goal NAME VALUE OP LIMIT: "met" or "missed", with the figure.
goal() {
  if awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN {exit !(v != "n/a" && (op == ">=" ? v >= l : v <= l))}'; then
    put "goal_$1($3$4)" "met ($2)"
  else
    put "goal_$1($3$4)" "missed ($2)"
  fi
}
if want throughput; then
  goal stdout_vs_pipe "${R[ratio_stdout_vs_pipe]}" ">=" 0.95
  goal stdin_vs_pipe "${R[ratio_stdin_vs_pipe]}" ">=" 0.95
  goal tty_vs_local_pty "${R[ratio_tty_vs_local_pty]}" ">=" 0.9
fi
if want cost; then
  # Flat: the largest size costs the daemon no more than the smallest, give
  # or take two clock ticks of CPU and 1 MiB of RSS.
  first=${COST_MIB%% *} last=${COST_MIB##* }
  goal daemon_cpu_s_growth_by_reference \
    "$(awk -v a="${COST_CPU[by_reference,$first]}" -v b="${COST_CPU[by_reference,$last]}" 'BEGIN {printf "%.2f", b - a}')" \
    "<=" "$(awk -v hz="$hz" 'BEGIN {printf "%.2f", 2 / hz}')"
  goal daemon_rss_kb_growth_by_reference \
    "$((COST_RSS[by_reference,$last] - COST_RSS[by_reference,$first]))" "<=" 1024
fi
if want sessions; then
  goal sessions_held_by_reference "${R[sessions_by_reference_max_held_zero_errors]%% *}" ">=" 1024
fi

# ------------------------------------------------------------- report
date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)
machine="$(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%d MiB", $2/1024}' /proc/meminfo), kernel $(uname -r), load $load_at_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
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
