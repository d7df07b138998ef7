#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan, coverage) and runs each
# for SECONDS (default 10) from its corpus in tests/fuzz/corpus. Prints one
# line per target: executions, execs/s, coverage, and whether it crashed.
# New inputs go to a temporary directory, never into the repository.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
shift || true
build=${FUZZ_BUILD_DIR:-build-fuzz}
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSC_FUZZ=ON -DSC_BUILD_TESTS=OFF -DSC_SANITIZE=fuzzer-no-link,address,undefined >/dev/null
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(sed -n '/^set(SC_FUZZ_TARGETS/,/)/p' \
  tests/fuzz/CMakeLists.txt | grep -o '[a-z_]*_fuzz')
ninja -C "$build" "${targets[@]}" >/dev/null
work=$(mktemp -d /tmp/sc-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=0
for t in "${targets[@]}"; do
  corpus=tests/fuzz/corpus/${t%_fuzz}
  mkdir -p "$work/$t"
  log=$work/$t.log
  if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$build/tests/fuzz/$t" \
    -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/$t-" \
    -max_len=65536 "$work/$t" "$corpus" >"$log" 2>&1; then
    verdict=ok
  else
    verdict=CRASHED
    failed=$((failed + 1))
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  printf '%-16s %s  runs=%s  execs/s=%s  cov=%s  (%ss)\n' "$t" "$verdict" "${runs:-?}" \
    "${rate:-?}" "${cov:-?}" "$seconds"
  [[ $verdict == ok ]] || { tail -n 40 "$log"; ls "$work" | grep -- "$t-" || true; }
done
echo "$(( ${#targets[@]} - failed )) passed, $failed failed"
((failed == 0))
