# shellcheck shell=bash disable=SC2034,SC2154
# Concurrent sessions for scripts/bench.sh: hold N sessions at once, each
# checked to have started and to end with status 0. Sourced by bench.sh, after
# its set-up (uses IN_POD, SCEXEC, ROOTFS, POD_CGROUPS, daemon_pid, work,
# now_ns, rss_kb, daemon_threads, daemon_fds; sets the HOLD_* results).
#
# Every session runs `cat /tmp/sc-hold-N` in the rootfs, a FIFO that a holder
# process keeps open for writing (O_RDWR, so nothing waits for it). A session
# counts as held once its cat has the FIFO open; the holder then exits, every
# cat reads EOF and exits 0, and so must every sc-exec. No timing is involved:
# a cat that opens the FIFO after the release finds no writer and would wait,
# which is why the release waits until all of them have it open (and gives
# stragglers, sessions of a step that failed, a writer that comes and goes).
#
#   hold_start MODE             MODE: by_reference or stream (sc-exec --stream)
#   hold_add K                  starts K more sessions, waits until all held
#                               or one failed (bounded); sets HOLD_HELD,
#                               HOLD_FAILED, HOLD_ADD_S
#   hold_stats                  sets HOLD_DAEMON_{RSS_KB,THREADS,FDS},
#                               HOLD_POD_{PIDS,ANON_KB} (over the pod's own)
#   hold_release                releases them, waits (bounded) for every
#                               session; sets HOLD_ENDED_OK, HOLD_ENDED_BAD

hold_mode=
hold_holder=
hold_launchers=()
hold_started=0
hold_fifo=
hold_seq=0

# The pod's cgroup directories for pids and memory (v1 hierarchies or v2).
hold_cgroup_with() {
  local d
  for d in "${POD_CGROUPS[@]}"; do [[ -f $d/$1 ]] && { echo "$d"; return; }; done
}
hold_pod_pids() {
  local d; d=$(hold_cgroup_with pids.current)
  [[ -n $d ]] && cat "$d/pids.current" || echo 0
}
# Anonymous memory charged to the pod (KiB): memory.stat's rss (v1) or anon (v2).
hold_pod_anon_kb() {
  local d; d=$(hold_cgroup_with memory.stat)
  [[ -n $d ]] || { echo 0; return; }
  awk '$1 == "rss" || $1 == "anon" {printf "%d\n", $2 / 1024; exit}' "$d/memory.stat"
}

hold_start() {
  hold_mode=$1
  hold_seq=$((hold_seq + 1))
  hold_fifo=/tmp/sc-hold-$hold_seq
  hold_dir=$work/hold-$hold_seq
  mkdir -p "$hold_dir"
  : >"$hold_dir/results"
  : >"$hold_dir/results.err"
  mkfifo "$ROOTFS$hold_fifo"
  python3 -c 'import os, signal, sys; fd = os.open(sys.argv[1], os.O_RDWR); signal.pause()' \
    "$ROOTFS$hold_fifo" &
  hold_holder=$!
  hold_launchers=()
  hold_started=0
  HOLD_HELD=0 HOLD_FAILED=0
  # The pod's own tasks: at the first start, then what every release waits
  # for (a session's keeper is reaped by the node's init, a moment later).
  HOLD_BASE_PIDS=${HOLD_BASE_PIDS:-$(hold_pod_pids)}
  HOLD_BASE_ANON_KB=$(hold_pod_anon_kb)
  # The launcher runs in the pod: K sessions in the background, at most
  # BATCH of them starting at a time, then one line per session as it ends,
  # its exit status (bash 5.1's wait -n -p). A burst of more is refused by
  # design: the daemon closes the oldest of more than 64 connections of one
  # uid that have sent nothing yet (listener.h), and on a loaded machine a
  # starting sc-exec can stay silent that long. A session's workload writes a
  # line to the rootfs's FIFO.started before it opens the FIFO.
  : >"$ROOTFS$hold_fifo.started"
  cat >"$hold_dir/launch" <<'EOF'
#!/bin/bash
n=$1 results=$2 scexec=$3 fifo=$4 stream=$5 started=$6 batch=32
flags=()
[[ $stream == stream ]] && flags=(--stream)
# A session that failed says so on stderr (results.err) at once; its status
# is only collected at the end.
failed() { wc -l <"$results.err"; }
base=$(($(wc -l <"$started") + $(failed)))
for ((i = 0; i < n; i += batch)); do
  # Released (or stopped): start no more, they would find no writer.
  [[ -e $results.stop ]] && break
  for ((j = i; j < n && j < i + batch; j++)); do
    "$scexec" "${flags[@]}" sh -c "echo >>/tmp/${started##*/} && exec cat $fifo" \
      </dev/null >/dev/null 2>>"$results.err" &
  done
  # Bounded: the host checks what was held in the end.
  for ((t = 0; t < 1200; t++)); do
    (($(wc -l <"$started") + $(failed) - base >= j)) && break
    sleep 0.05
  done
done
while wait -n -p ended; rc=$?; [[ -n ${ended:-} ]]; do
  echo "$rc" >>"$results"
  unset ended
done
EOF
  chmod +x "$hold_dir/launch"
}

# How many cats of the pod have the FIFO open.
hold_count() {
  python3 - "$ROOTFS$hold_fifo" "$(hold_cgroup_with cgroup.procs)/cgroup.procs" <<'EOF'
import os, sys
st = os.stat(sys.argv[1])
fifo = (st.st_dev, st.st_ino)
held = 0
for pid in open(sys.argv[2]).read().split():
    try:
        if open(f"/proc/{pid}/comm").read().strip() != "cat":
            continue
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                s = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (s.st_dev, s.st_ino) == fifo:
                held += 1
                break
    except OSError:
        pass  # gone meanwhile
print(held)
EOF
}

hold_add() {
  local k=$1 s target ended
  target=$((hold_started + k))
  s=$(now_ns)
  "${IN_POD[@]}" "$hold_dir/launch" "$k" "$hold_dir/results" "$SCEXEC" "$hold_fifo" "$hold_mode" \
    "$ROOTFS$hold_fifo.started" &
  hold_launchers+=($!)
  hold_started=$target
  # Bounded: a minute plus 200 ms per session (~5 starts/s, far slower than
  # a loaded 2-core machine manages).
  local deadline=$(($(date +%s) + 60 + k / 5))
  while true; do
    HOLD_HELD=$(hold_count)
    # Before the release, a session that ended has failed, whatever its
    # status; one that failed says so at once on stderr.
    ended=$(wc -l <"$hold_dir/results")
    HOLD_FAILED=$(wc -l <"$hold_dir/results.err")
    ((ended > HOLD_FAILED)) && HOLD_FAILED=$ended
    ((HOLD_HELD >= target)) && break
    ((HOLD_FAILED > 0 && HOLD_HELD + HOLD_FAILED >= target)) && break
    (($(date +%s) >= deadline)) && { echo "bench: $hold_mode sessions: only $HOLD_HELD of $target held after the deadline" >&2; break; }
    sleep 0.5
  done
  HOLD_ADD_S=$(awk -v ns="$(($(now_ns) - s))" 'BEGIN {printf "%.1f", ns / 1e9}')
}

hold_stats() {
  HOLD_DAEMON_RSS_KB=$(rss_kb "$daemon_pid")
  HOLD_DAEMON_THREADS=$(daemon_threads)
  HOLD_DAEMON_FDS=$(daemon_fds)
  HOLD_POD_PIDS=$(($(hold_pod_pids) - HOLD_BASE_PIDS))
  HOLD_POD_ANON_KB=$(($(hold_pod_anon_kb) - HOLD_BASE_ANON_KB))
}

# A child of ours that runs (a zombie does not: kill -0 would say it does).
hold_alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [[ -n $state && $state != Z ]]
}

hold_release() {
  touch "$hold_dir/results.stop"
  [[ -n $hold_holder ]] && { kill "$hold_holder"; wait "$hold_holder" 2>/dev/null || true; }
  hold_holder=
  local p deadline=$(($(date +%s) + 60 + hold_started / 10))
  for p in "${hold_launchers[@]}"; do
    while hold_alive "$p" && (($(date +%s) < deadline)); do
      # A cat that opened the FIFO after the holder left waits for a writer:
      # one that comes and goes gives it EOF too.
      python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK))' \
        "$ROOTFS$hold_fifo" 2>/dev/null || true
      sleep 0.2
    done
    if hold_alive "$p"; then
      echo "bench: $hold_mode sessions did not all end in time" >&2
    else
      wait "$p" 2>/dev/null || true
    fi
  done
  deadline=$(($(date +%s) + 20))
  while (($(hold_pod_pids) > HOLD_BASE_PIDS && $(date +%s) < deadline)); do sleep 0.1; done
  HOLD_ENDED_OK=$(awk '$1 == 0' "$hold_dir/results" | wc -l)
  HOLD_ENDED_BAD=$(awk '$1 != 0' "$hold_dir/results" | wc -l)
  if [[ -s $hold_dir/results.err ]]; then
    echo "bench: $hold_mode sessions said (first lines, $(wc -l <"$hold_dir/results.err") in all):" >&2
    sort "$hold_dir/results.err" | uniq -c | sort -rn | head -n 5 >&2
    echo "bench: the daemon's last warnings:" >&2
    tail -n 5 "$work/daemon.log" >&2
  fi
  rm -f "$ROOTFS$hold_fifo" "$ROOTFS$hold_fifo.started"
}

# On the way out: the holder goes, so every session ends.
hold_cleanup() {
  [[ -n $hold_holder ]] && kill "$hold_holder" 2>/dev/null
  hold_holder=
}
