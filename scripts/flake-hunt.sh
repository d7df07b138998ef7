#!/usr/bin/env bash
# Hunts flaky tests: runs the whole suite N times in a row, each run exactly
# what CI runs (CI=true scripts/test.sh: same build, same sanitizers, a skip
# is a failure), optionally beside a CPU hog and/or pinned to one core, and
# prints a table: each run's wall time and result per ctest test, then the
# failures per test and per failing Catch2 case over all runs.
#
#   scripts/flake-hunt.sh N [--hog] [--one-core] [--logs DIR] [-- CTEST_ARGS...]
#
#   --hog       `stress-ng --cpu 2` runs beside the suite (started after the
#               build, stopped by its pid at the end, on error and on Ctrl-C)
#   --one-core  the suite runs under `taskset -c 0`
#   --logs DIR  where each run's log goes (default: a new directory in
#               ${TMPDIR:-/tmp}, named at the start and in the table)
#   CTEST_ARGS  go to ctest, e.g. `-- -R unit` to try the script quickly
#
# Exits 0 when every run passed, 1 when any failed, 2 on bad usage.
# BUILD_DIR (default build-test) and SC_SANITIZE work as in scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '/^#   scripts/,/^# BUILD_DIR/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

runs=""
hog=false
one_core=false
logs=""
ctest_args=()
while (($#)); do
  case $1 in
    --hog) hog=true ;;
    --one-core) one_core=true ;;
    --logs)
      (($# >= 2)) || usage
      logs=$2
      shift
      ;;
    --)
      shift
      ctest_args=("$@")
      break
      ;;
    -h | --help) usage ;;
    *)
      [[ -z $runs && $1 =~ ^[1-9][0-9]*$ ]] || usage
      runs=$1
      ;;
  esac
  shift
done
[[ -n $runs ]] || usage

export BUILD_DIR=${BUILD_DIR:-build-test}
logs=${logs:-$(mktemp -d "${TMPDIR:-/tmp}/flake-hunt-$(date +%Y%m%d-%H%M%S)-XXXX")}
mkdir -p "$logs"
conditions="CI=true"
$hog && conditions+=", stress-ng --cpu 2 beside"
$one_core && conditions+=", taskset -c 0"
echo "flake-hunt: $runs run(s), $conditions; logs in $logs"

# The hog, by its pid only: stress-ng ends its workers itself on SIGTERM.
hog_pid=""
stop_hog() {
  [[ -n $hog_pid ]] || return 0
  local pid=$hog_pid
  hog_pid=""
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # Still there after 10 s: its workers (its children while it lives) and
  # itself (not yet waited for, so the pid is still this one), by pid.
  if kill -0 "$pid" 2>/dev/null; then
    for w in $(pgrep -P "$pid") "$pid"; do kill -KILL "$w" 2>/dev/null || true; done
  fi
  wait "$pid" 2>/dev/null || true
}
trap stop_hog EXIT
trap 'stop_hog; exit 130' INT
trap 'stop_hog; exit 143' TERM

# Build once, as test.sh does (it installs what is missing, stress-ng
# included, and builds with its sanitizers), before any hog: `ctest -N` only
# lists the tests the runs will run.
echo "flake-hunt: building (scripts/test.sh -N), log $logs/build.log"
if ! scripts/test.sh -N "${ctest_args[@]}" >"$logs/build.log" 2>&1; then
  tail -n 30 "$logs/build.log" >&2
  echo "flake-hunt: the build failed; see $logs/build.log" >&2
  exit 1
fi
mapfile -t tests < <(sed -n 's/^ *Test *#[0-9]*: \(.*\)$/\1/p' "$logs/build.log")
((${#tests[@]})) || { echo "flake-hunt: no test selected" >&2; exit 1; }

if $hog; then
  command -v stress-ng >/dev/null || { echo "flake-hunt: stress-ng is missing" >&2; exit 1; }
  stress-ng --cpu 2 --timeout 0 >"$logs/hog.log" 2>&1 &
  hog_pid=$!
  echo "flake-hunt: hog stress-ng --cpu 2 is pid $hog_pid"
fi
runner=()
$one_core && runner=(taskset -c 0)

source scripts/lib/catch2.sh

declare -A ctest_fail=()  # test -> runs failed
declare -A ctest_runs=()  # test -> "2 5 ..."
sanitizer_runs=""
declare -A case_fail=()   # "test<TAB>case" -> runs failed
declare -A case_runs=()   # "test<TAB>case" -> "1 3 ..."
failed_runs=0
notes=()
table="$logs/table.txt"
{
  printf '%-4s %-19s %-9s %-8s %-10s %-14s' run started wall result sanitizers commit
  for t in "${tests[@]}"; do printf ' %-*s' "$((${#t} > 4 ? ${#t} : 4))" "$t"; done
  printf '\n'
} >"$table"

for ((run = 1; run <= runs; run++)); do
  log="$logs/run-$run.log"
  commit=$(git describe --always --dirty 2>/dev/null || echo "?")
  started=$(date +%Y-%m-%dT%H:%M:%S)
  t0=$(date +%s)
  echo "flake-hunt: run $run/$runs started $started, log $log"
  rc=0
  CI=true "${runner[@]}" scripts/test.sh --test-output-size-failed 100000000 "${ctest_args[@]}" \
    >"$log" 2>&1 || rc=$?
  wall=$(($(date +%s) - t0))
  # ctest's full record of this run (the output of passed tests too).
  cp "$BUILD_DIR/Testing/Temporary/LastTest.log" "$logs/run-$run.ctest.log" 2>/dev/null || true

  result=pass
  ((rc == 0)) || { result="FAIL($rc)"; failed_runs=$((failed_runs + 1)); }
  sanitizers=clean
  grep -q '^sanitizer reports (' "$log" && sanitizers=REPORTS && sanitizer_runs+="$run "
  grep -q 'no report$' "$log" || [[ $sanitizers == REPORTS ]] || sanitizers="?"
  declare -A got=()
  while IFS=$'\t' read -r name res; do got[$name]=$res; done < <(ctest_results "$log")
  {
    printf '%-4s %-19s %-9s %-8s %-10s %-14s' "$run" "$started" "$((wall / 60))m$((wall % 60))s" \
      "$result" "$sanitizers" "$commit"
    for t in "${tests[@]}"; do
      res=${got[$t]:--}
      if [[ $res != pass && $res != - ]]; then
        ctest_fail[$t]=$((${ctest_fail[$t]:-0} + 1))
        ctest_runs[$t]="${ctest_runs[$t]:-}$run "
      fi
      printf ' %-*s' "$((${#t} > 4 ? ${#t} : 4))" "$res"
    done
    printf '\n'
  } >>"$table"
  unset got
  named=0
  while IFS= read -r key; do
    case_fail[$key]=$((${case_fail[$key]:-0} + 1))
    case_runs[$key]="${case_runs[$key]:-}$run "
    named=$((named + 1))
  done < <(catch2_failures "$log" | cut -f1,2)
  # Catch2's own count ("test cases: 80 | 78 passed | 2 failed"), to tell
  # when a failed case was not found by name (e.g. a crash before its header).
  counted=$(sed -n 's/^test cases:.* \([0-9][0-9]*\) failed\( |.*\)\{0,1\}$/\1/p' "$log" |
    awk '{ n += $1 } END { print n + 0 }')
  if ((counted != named)); then
    notes+=("run $run: Catch2 counted $counted failed test case(s), $named named above: see $log")
  fi
  echo "flake-hunt: run $run/$runs: $result in ${wall} s (sanitizers: $sanitizers)"
done
stop_hog

{
  echo
  echo "failures over $runs run(s) ($conditions):"
  for t in "${tests[@]}"; do
    if [[ -n ${ctest_fail[$t]:-} ]]; then
      printf '  %7s  %s  (runs %s)\n' "${ctest_fail[$t]}/$runs" "$t" "${ctest_runs[$t]% }"
    fi
    for key in "${!case_fail[@]}"; do
      [[ ${key%%$'\t'*} == "$t" ]] || continue
      printf '  %7s    %s  (runs %s)\n' "${case_fail[$key]}/$runs" "${key#*$'\t'}" \
        "${case_runs[$key]% }"
    done
  done
  if [[ -n $sanitizer_runs ]]; then
    read -ra r <<<"$sanitizer_runs"
    printf '  %7s  sanitizer reports  (runs %s)\n' "${#r[@]}/$runs" "${sanitizer_runs% }"
  fi
  for note in "${notes[@]}"; do echo "  $note"; done
  ((failed_runs > 0)) || echo "  none"
  echo "logs: $logs (run-N.log: the run's output; run-N.ctest.log: every test's output)"
} >>"$table"
echo
cat "$table"
((failed_runs == 0))
