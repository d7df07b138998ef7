#!/usr/bin/env bash
# Configures and builds into ${BUILD_DIR:-build}. Extra arguments go to cmake,
# e.g. scripts/build.sh -DCMAKE_BUILD_TYPE=Release
#
# Says nothing when the build is up to date; otherwise one line as it starts
# and one when done, with its steps and time. cmake's and ninja's
# output goes to BUILD_DIR/build.log, shown (its end) when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/phase.sh
build_dir=${BUILD_DIR:-build}
mkdir -p "$build_dir"
log=$build_dir/build.log
phase_begin
cmake -S . -B "$build_dir" -G Ninja "$@" >"$log" 2>&1 ||
  { rc=$?; phase_fail build.sh "configuring $build_dir" "$log" "$rc"; exit "$rc"; }
# A dry run cannot tell (CMake's glob check and re-run are steps of their
# own that change the plan), so the first real step announces the build.
is_real_step() {
  case $1 in
    \[*"Re-checking globbed directories"* | \[*"Re-running CMake"*) return 1 ;;
    \[*) return 0 ;;
  esac
  return 1
}
set +e
ninja -C "$build_dir" 2>&1 | while IFS= read -r line; do
  printf '%s\n' "$line" >>"$log"
  if [[ -z ${announced:-} ]] && is_real_step "$line"; then
    echo "build.sh: building $build_dir (log $log)"
    announced=1
  fi
done
status=${PIPESTATUS[0]}
set -e
if ((status != 0)); then
  PHASE_TAIL=60 phase_fail build.sh "building $build_dir" "$log" "$status"
  exit "$status"
fi
steps=0
while IFS= read -r line; do is_real_step "$line" && steps=$((steps + 1)); done <"$log"
((steps == 0)) || echo "build.sh: built $build_dir, $steps steps in $(phase_seconds) s"
