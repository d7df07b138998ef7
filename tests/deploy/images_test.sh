#!/usr/bin/env bash
# ctest "deploy_images": the container images of deploy/images/.
#   - sc-exec (FROM scratch) is built with buildah from Debian's package, offline,
#     in a private vfs store under a temp dir, and must hold exactly /sc-exec,
#     run it (--version), run as a non-root user, and have it as entrypoint.
#   - The daemon's Containerfile cannot be built here: its FROM
#     docker.io/library/debian:bookworm needs a registry and this machine has
#     no network (see deploy/README.md). Its structure is checked statically.
# Usage: images_test.sh SC_EXEC_BINARY. Exit 77 (skip) without buildah or
# root, unless CI=true.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
sc_exec="$1"
fail=0
pass() { echo "PASS $*"; }
failed() { echo "FAIL $*"; fail=1; }
skip() {
  if [[ "${CI:-}" == true ]]; then failed "$* (CI=true: a skip is a failure)"; exit 1; fi
  echo "SKIP $*"; exit 77
}

# Static checks of the daemon image recipe.
cf="$root/deploy/images/Containerfile.mount-helper"
froms=$(grep -E '^FROM ' "$cf" | awk '{print $2}' | tr '\n' ' ')
[[ "$froms" == "docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim " ]] \
  && pass "daemon image: multi-stage from Debian bookworm ($froms)" || failed "daemon image FROM lines: $froms"
last_entry=$(grep -E '^ENTRYPOINT' "$cf" | tail -1)
[[ "$last_entry" == 'ENTRYPOINT ["/usr/local/bin/sc-mount-helper"]' ]] \
  && pass "daemon image runs only the daemon" || failed "daemon image entrypoint: $last_entry"
grep -q 'sc-exec /out/usr/local/bin/sc-exec' "$cf" \
  && pass "daemon image ships sc-exec for the exec health probe" || failed "daemon image lacks sc-exec"
grep -q -- '-DSC_BUILD_TESTS=OFF' "$cf" && pass "daemon image builds without tests" || failed "daemon image builds tests"

command -v buildah >/dev/null || skip "buildah is not installed (apt-get install buildah)"
[[ $(id -u) == 0 ]] || skip "buildah with a private vfs store needs root here"

tmp=$(mktemp -d /tmp/sc-test-images.XXXXXX)
B=(buildah --root "$tmp/root" --runroot "$tmp/run" --storage-driver vfs)
cleanup() {
  "${B[@]}" rm --all >/dev/null 2>&1 || true
  "${B[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Build context: just the binary (the Containerfile copies nothing else).
mkdir -p "$tmp/ctx"
cp "$sc_exec" "$tmp/ctx/sc-exec"
start=$(date +%s.%N)
if "${B[@]}" build --isolation chroot -q -f "$root/deploy/images/Containerfile.sc-exec" \
    --build-arg SC_EXEC=sc-exec -t localhost/stoppablecontainer/sc-exec:test "$tmp/ctx" >"$tmp/build.log" 2>&1; then
  pass "sc-exec image builds offline with buildah ($(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"
else
  failed "sc-exec image build: $(tail -5 "$tmp/build.log")"
  exit 1
fi
ctr=$("${B[@]}" from localhost/stoppablecontainer/sc-exec:test)
mnt=$("${B[@]}" mount "$ctr")
files=$(cd "$mnt" && find . -mindepth 1 | sort | tr '\n' ' ')
[[ "$files" == "./sc-exec " ]] && pass "sc-exec image holds exactly /sc-exec" || failed "sc-exec image holds: $files"
cmp -s "$mnt/sc-exec" "$sc_exec" && pass "/sc-exec is the built binary" || failed "/sc-exec differs from $sc_exec"
"${B[@]}" umount "$ctr" >/dev/null
out=$("${B[@]}" run --isolation chroot "$ctr" -- /sc-exec --version 2>&1) \
  && pass "sc-exec runs in the scratch image: $out" || failed "sc-exec does not run in its image: $out"
cfg=$("${B[@]}" inspect --type image --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}' \
  localhost/stoppablecontainer/sc-exec:test)
[[ "$cfg" == '65532:65532 [/sc-exec]' ]] && pass "sc-exec image: non-root user, entrypoint /sc-exec" \
  || failed "sc-exec image config: $cfg"
exit $fail
