#!/usr/bin/env bash
# The long forms of the reliability tests (issue 6), then one summary table
# for the README's reliability section:
#   faults  [fault] with SC_FAULT_LOOPS=100 SIGKILLs in the loop
#   load    [load] stepping 16, 64, 128, 256 ... concurrent streaming sessions
#           (SOAK_MAX_SESSIONS, SOAK_SECONDS each) and 10 000 sequential
#           `sc-exec true`
#   hostile [hostile] and [escape] (when the suite has them)
#   fuzz    scripts/fuzz.sh, SOAK_FUZZ_SECONDS per target
# Needs root (real mounts, namespaces, cgroups). About 25 minutes on 2 cores
# with a warm build.
#
#   scripts/soak.sh [--sanitize] [--skip-fuzz]
#     --sanitize   daemon and tests with ASan+UBSan (build-soak-asan/);
#                  every report of every process fails the run
# Environment: BUILD_DIR (default build-soak, RelWithDebInfo), SOAK_FAULT_LOOPS
# (100), SOAK_MAX_SESSIONS (256), SOAK_SECONDS (20), SOAK_SEQUENTIAL (10000),
# SOAK_RATE_KIB (256 KiB/s per session and direction), SOAK_FUZZ_SECONDS (60).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=
fuzz=1
for arg in "$@"; do
  case $arg in
    --sanitize) sanitize=address,undefined ;;
    --skip-fuzz) fuzz=0 ;;
    *) echo "usage: scripts/soak.sh [--sanitize] [--skip-fuzz]" >&2; exit 2 ;;
  esac
done
build=${BUILD_DIR:-build-soak${sanitize:+-asan}}
fault_loops=${SOAK_FAULT_LOOPS:-100}
max_sessions=${SOAK_MAX_SESSIONS:-256}
seconds=${SOAK_SECONDS:-20}
sequential=${SOAK_SEQUENTIAL:-10000}
rate=${SOAK_RATE_KIB:-256}
fuzz_seconds=${SOAK_FUZZ_SECONDS:-60}
((EUID == 0)) || { echo "soak.sh needs root (mounts, namespaces, cgroups)" >&2; exit 1; }

started=$(date +%s)
work=$(mktemp -d /tmp/sc-soak-XXXXXX)  # logs; removed when everything passed
log() { printf '[soak %4ds] %s\n' $(($(date +%s) - started)) "$*" >&2; }
failed=()

log "build: $build (RelWithDebInfo${sanitize:+, $sanitize})"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSC_SANITIZE="$sanitize" \
  >"$work/cmake.log"
ninja -C "$build" -j2 integration_tests >"$work/build.log" || {
  tail -n 40 "$work/build.log" >&2
  exit 1
}
tests=$build/tests/integration_tests

reports=$work/sanitizer
mkdir -p "$reports"
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"

# run NAME SECONDS_BOUND ARGS...: the test binary with a time bound; its
# output in $work/NAME.log; a failure is recorded, never fatal here.
run() {
  local name=$1 bound=$2
  shift 2
  log "$name: $*"
  local t0=$(date +%s)
  if timeout --kill-after=30 "$bound" "$tests" "$@" >"$work/$name.log" 2>&1; then
    log "$name: passed in $(($(date +%s) - t0)) s"
  else
    log "$name: FAILED after $(($(date +%s) - t0)) s (last lines below)"
    grep -E -A6 'FAILED|fatal error' "$work/$name.log" | head -n 60 >&2 || true
    tail -n 5 "$work/$name.log" >&2
    failed+=("$name")
  fi
}
# Catch2's summary: "passed/total" test cases, or "?".
cases() {
  local f=$work/$1.log
  if grep -q '^All tests passed' "$f"; then
    sed -n 's/^All tests passed ([0-9]* assertions\{0,1\} in \([0-9]*\) test cases\{0,1\}).*/\1\/\1/p' "$f"
  else
    # Catch2: "test cases: 11 | 10 passed | 1 failed as expected" ([!mayfail]).
    sed -n -e 's/^test cases: *\([0-9]*\) | *\([0-9]*\) passed | *\([0-9]*\) failed as expected.*/\2\/\1, \3 known open defect(s) failed as expected/p' \
      -e 's/^test cases: *\([0-9]*\) | *\([0-9]*\) passed.*/\2\/\1/p' "$f"
  fi | head -n 1
}
# The value of KEY=VALUE in the last line starting with PREFIX.
field() { { grep "^$1" "$work/$2.log" || true; } | tail -n 1 | tr ' ' '\n' | sed -n "s/^$3=//p"; }

SC_FAULT_LOOPS=$fault_loops run faults 1200 "[fault]"
SC_LOAD_MAX_SESSIONS=$max_sessions SC_LOAD_SECONDS=$seconds SC_LOAD_SEQUENTIAL=$sequential \
  SC_LOAD_RATE_KIB=$rate run load 1800 "[load]"
hostile_tags=()
all_tags=$("$tests" --list-tags 2>/dev/null || true)
for tag in hostile escape; do
  if grep -qF "[$tag]" <<<"$all_tags"; then hostile_tags+=("[$tag]"); fi
done
if ((${#hostile_tags[@]})); then
  run hostile 900 "$(IFS=,; echo "${hostile_tags[*]}")"
fi
if ((fuzz)); then
  log "fuzz: scripts/fuzz.sh $fuzz_seconds (clang, ASan+UBSan, ${build}-fuzz)"
  if FUZZ_BUILD_DIR=${build}-fuzz scripts/fuzz.sh "$fuzz_seconds" >"$work/fuzz.log" 2>&1; then
    log "fuzz: passed"
  else
    log "fuzz: FAILED"
    tail -n 40 "$work/fuzz.log" >&2
    failed+=(fuzz)
  fi
fi

shopt -s nullglob
sanitizer_reports=("$reports"/*)
if ((${#sanitizer_reports[@]})); then
  for f in "${sanitizer_reports[@]}"; do
    echo "==== $f" >&2
    head -n 40 "$f" >&2
  done
  failed+=(sanitizer)
fi

# ---------------------------------------------------------------- the table
kills=$(grep -ho 'kills=[0-9]*' "$work/faults.log" | cut -d= -f2 | paste -sd+ - | bc 2>/dev/null || echo 0)
states=$({ grep '^SOAK fault=kill_loop' "$work/faults.log" || true; } | tail -n 1 | sed -n 's/.*states=//p')
dead_callers=$({ grep -o 'fault=dead_caller cases=[0-9]*' "$work/faults.log" || true; } | head -n 1 | cut -d= -f3)
disk_full=$(grep -c '^SOAK fault=disk_full ok=1' "$work/faults.log" || true)
held=$(field 'LOAD ' load max_sessions)
mib() { awk -v k="$1" 'BEGIN { if (k == "") print "?"; else printf "%.0f", k / 1024 }'; }
leaks="fds $(field 'LOAD ' load leaked_fds), zombies $(field 'LOAD ' load zombies), mounts $(field 'LOAD ' load leaked_mounts), daemon children $(field 'LOAD ' load children) after the load"
if [[ -n $sanitize ]]; then
  leaks+="; sanitizer reports from all processes: ${#sanitizer_reports[@]}"
fi
hostile_tried=$(grep -ho 'tried=[0-9]*' "$work/hostile.log" 2>/dev/null | cut -d= -f2 |
  awk '{ n += $1 } END { if (NR) print n }' || true)
fuzz_runs=$(grep -o 'runs=[0-9]*' "$work/fuzz.log" 2>/dev/null | cut -d= -f2 | paste -sd+ - | bc 2>/dev/null || true)
fuzz_targets=$(grep -c ' ok  runs=' "$work/fuzz.log" 2>/dev/null || true)
fuzz_detail=$(awk '/ runs=/ { for (i = 1; i <= NF; i++) { if ($i ~ /^execs\/s=/) r = substr($i, 9); if ($i ~ /^cov=/) c = substr($i, 5) } printf "%s%s %s/s cov %s", sep, $1, r, c; sep = ", " }' "$work/fuzz.log" 2>/dev/null || true)
elapsed=$(($(date +%s) - started))

echo
echo "Soak run of $(date -u +%Y-%m-%d) on $(nproc) cores, Linux $(uname -r), ${sanitize:-RelWithDebInfo}${sanitize:+ (ASan+UBSan)}; $((elapsed / 60)) min $((elapsed % 60)) s"
echo
echo "| check | result |"
echo "| --- | --- |"
echo "| load held | ${held:-?} concurrent exec sessions (steps $({ grep '^LOAD_STEP' "$work/load.log" || true; } | sed -n 's/.*sessions=\([0-9]*\) errors=\([0-9]*\).*/\1:\2/p' | paste -sd' ' -) as sessions:errors), ${seconds} s each, ${rate} KiB/s each way per session, byte-exact; daemon RSS $(mib "$(field 'LOAD ' load rss_kib_during)") MiB and $(field 'LOAD ' load fds_during) fds during, $(mib "$(field 'LOAD ' load rss_kib_after)") MiB and $(field 'LOAD ' load fds_after) fds after (before: $(mib "$(field 'LOAD ' load rss_kib_before)") MiB, $(field 'LOAD ' load fds_before) fds); \`sc-exec true\` under that load p50 $(field 'LOAD ' load p50_ms) ms, p99 $(field 'LOAD ' load p99_ms) ms |"
echo "| sequential | $(field 'LOAD ' load sequential) \`sc-exec true\` one after another: $(field 'LOAD ' load seq_failures) failures, p50 $(field 'LOAD ' load seq_p50_ms) ms, p99 $(field 'LOAD ' load seq_p99_ms) ms |"
echo "| faults survived | ${kills:-0} daemon SIGKILLs ($fault_loops-round loop with prepares and releases in flight, states found after: ${states:-?}; 20 live sessions; mid-prepare next to a busy instance), each followed by: no double or half mount, instances re-adopted, no orphan in any pod, new sessions working; full upper layer (ENOSPC to the process, daemon healthy): $([[ $disk_full -gt 0 ]] && echo survived || echo failed); callers exiting with their call in flight, pid reused or not: ${dead_callers:-?} cases refused. [fault] $(cases faults) test cases passed |"
if [[ -f $work/hostile.log ]]; then
  echo "| bad inputs tried | ${hostile_tried:-?} hostile requests and escape attempts (${hostile_tags[*]}: $(cases hostile) test cases passed) |"
else
  echo "| bad inputs tried | not run: no [hostile] or [escape] tests in this tree |"
fi
echo "| leaks found | $leaks |"
if ((fuzz)); then
  echo "| fuzz execs | ${fuzz_runs:-?} executions over ${fuzz_targets:-?} targets × ${fuzz_seconds} s: $fuzz_detail |"
else
  echo "| fuzz execs | skipped (--skip-fuzz) |"
fi
echo
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]} (logs in $work)"
  exit 1
fi
rm -rf "$work"
echo "all passed"
