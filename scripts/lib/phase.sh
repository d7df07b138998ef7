# shellcheck shell=bash
# Set-up phases that say what they do: one line when a phase starts work
# that takes time, one when it ends, with its time; nothing when there is
# nothing to do. A phase's own chatter (apt, cmake, ninja) goes to a log
# file; when the phase fails, the line names the phase and that file, and
# its last lines follow.

phase_start=
# phase_begin: remembers when the phase began.
phase_begin() { phase_start=$(date +%s.%N); }
# phase_seconds: seconds since phase_begin, one decimal.
phase_seconds() { awk -v a="$phase_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }
# phase_fail WHO WHAT LOG RC: the failure line and the log's tail, on stderr.
phase_fail() {
  local who=$1 what=$2 log=$3 rc=$4
  echo "$who: $what failed (exit $rc) after $(phase_seconds) s; its log is $log, which ends:" >&2
  tail -n "${PHASE_TAIL:-40}" "$log" | sed 's/^/  | /' >&2
}
