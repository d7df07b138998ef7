#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test
# (unit, integration against the real daemon, node clients, manifests) with
# ctest. Integration tests need root; with CI=true a skipped test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
start=$(date +%s)
scripts/build.sh
echo "build took $(( $(date +%s) - start )) s"
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 "$@"
