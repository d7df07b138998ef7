#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test
# (unit, integration against the real daemon, node clients, manifests,
# containerd end to end) with ctest. Integration tests need root; with CI=true
# a skipped test fails.
#
# The daemon and the test programs are built with ASan+UBSan (SC_SANITIZE,
# default "address,undefined"; SC_SANITIZE= for a plain build, "thread" for
# TSan). Every sanitizer report of every process the tests start goes to a
# file of its own; one report, even from a process whose test passed, fails
# the run. sc-exec and sc-test-client are static and never sanitized.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
sanitize=${SC_SANITIZE-address,undefined}
# Not build/: scripts/run.sh and the benchmarks use plain builds.
export BUILD_DIR=${BUILD_DIR:-build-test}
scripts/build.sh -DSC_SANITIZE="$sanitize"
# The gate below means something only if the runtime is really in the daemon.
case $sanitize in
  *address*) grep -q __asan_init "$BUILD_DIR/daemon/sc-mount-helper" ;;
  *thread*) grep -q __tsan_init "$BUILD_DIR/daemon/sc-mount-helper" ;;
esac || { echo "the daemon was not built with $sanitize" >&2; exit 1; }

reports=$(mktemp -d /tmp/sc-sanitizer-reports-XXXXXX)
trap 'rm -rf "$reports"' EXIT
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="log_path=$reports/tsan:halt_on_error=1:second_deadlock_stack=1"
# LeakSanitizer cannot stop the world under ptrace: the seccomp test's strace
# coverage run turns it off for the processes it traces (see seccomp_test.py).

echo "test.sh: running the tests in $BUILD_DIR with ctest (sanitizers: ${sanitize:-none})"
output=$reports.ctest.log
trap 'rm -rf "$reports" "$output"' EXIT
set +e
(cd "$BUILD_DIR" && ctest --output-on-failure --timeout 900 "$@") 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
set -e

# ctest prints every line a failed test wrote (figures, warnings, expected
# failures): the end says which tests and cases failed, and where.
if ((status != 0)); then
  source scripts/lib/catch2.sh
  mapfile -t expected < <(catch2_expected_failures "$BUILD_DIR")
  echo
  echo "test.sh: what failed:"
  while IFS=$'\t' read -r test result; do
    [[ $result == pass ]] || echo "  ctest $test: $result"
  done < <(ctest_results "$output")
  while IFS=$'\t' read -r test name where; do
    for e in "${expected[@]}"; do [[ $e == "$name" ]] && continue 2; done
    echo "    $test: $name"
    echo "      at ${where#"$PWD"/}"
  done < <(catch2_failures "$output")
fi

shopt -s nullglob
found=("$reports"/*)
if ((${#found[@]})); then
  echo "sanitizer reports (${#found[@]} files):" >&2
  for f in "${found[@]}"; do
    echo "==== $f" >&2
    head -n 60 "$f" >&2
  done
  status=1
else
  echo "sanitizers (${sanitize:-none}): no report"
fi
exit "$status"
