# shellcheck shell=bash
# Reading what a ctest run printed, for summaries (scripts/test.sh) and the
# flake hunt's table (scripts/flake-hunt.sh).

# Each ctest test's result in a ctest output ("pass", or ctest's word for the
# failure: Failed, Timeout, Skipped, Not Run, ...); one "name<TAB>result" a line.
ctest_results() {
  sed -n 's/^ *[0-9]*\/[0-9]* Test *#[0-9]*: \([^ ]*\) \.*\** *\(Passed\|[A-Z][a-zA-Z ]*[a-z]\).*$/\1\t\2/p' "$1" |
    sed 's/\tPassed$/\tpass/'
}

# The Catch2 test cases that failed in a ctest output: ctest
# --output-on-failure prints a failed test's output after its result line,
# where Catch2's console reporter heads each failure with the test case's
# name between two lines of 79 dashes (wrapped names go on indented after the
# first ": ", sections are indented by two) and then writes "FILE:LINE:
# FAILED:". One "ctest-test<TAB>case<TAB>FILE:LINE" a line, for the first
# failed assertion of each case. A [!mayfail] case's expected failure looks
# the same: catch2_expected_failures names those.
catch2_failures() {
  awk '
    /^ *[0-9]+\/[0-9]+ Test +#[0-9]+: / { t = $0; sub(/^.*#[0-9]+: /, "", t); sub(/ .*/, "", t); test = t; next }
    /^-------------------------------------------------------------------------------$/ {
      if (in_header) { in_header = 0 } else { in_header = 1; name = ""; lines = 0 }
      next
    }
    in_header {
      if (lines++ == 0) {
        name = $0; p = index($0, ": "); indent = p ? p + 1 : 0
      } else if (indent > 2 && match($0, /^ +/) && RLENGTH == indent) {
        name = name " " substr($0, indent + 1)
      }
      next
    }
    /(^|: )FAILED:$/ && name != "" {
      where = $0; sub(/: FAILED:$/, "", where)
      if (!seen[test "\t" name]++) print test "\t" name "\t" where
    }
  ' "$1"
}

# The names of the [!mayfail] cases of the Catch2 binaries in BUILD_DIR,
# one a line: their failures are expected and reported as such.
catch2_expected_failures() {
  local bin
  for bin in "$1/tests/unit_tests" "$1/tests/integration_tests"; do
    [[ -x $bin ]] && "$bin" --list-test-names-only '[!mayfail]' 2>/dev/null | sed '/^$/d'
  done
  return 0
}
