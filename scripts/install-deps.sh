#!/usr/bin/env bash
# Installs every build and test dependency on Debian 12 (bookworm), from
# Debian's archive and npm only. Idempotent and quick when all is there, and
# then silent; otherwise a line per step with its time. apt's and npm's
# output goes to a log file, shown (its end) when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/phase.sh
log=${TMPDIR:-/tmp}/sc-install-deps.log

packages=(
  # build
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libabsl-dev libmount-dev libseccomp-dev libspdlog-dev libfmt-dev catch2
  prometheus-cpp-dev
  # fuzzing and sanitizers
  clang libclang-rt-14-dev
  # tests and scripts: the rootfs, pods, processes
  busybox-static util-linux procps file strace python3
  nodejs
  # the metrics test: a real scrape (curl) checked by promtool (prometheus)
  curl prometheus
  # scripts/flake-hunt.sh --hog: a CPU hog beside the suite
  stress-ng
  # deploy/: the FROM scratch image is built offline in a test
  buildah
  # scripts/e2e-containerd.sh: a private containerd with runc, images made offline
  containerd runc umoci
  # scripts/bench.sh
  hyperfine
  # scripts/vm-test.sh: Debian's kernel in QEMU, its initramfs; kmod: modinfo, depmod, modprobe
  qemu-system-x86 cpio kmod
)
if ! command -v npm >/dev/null 2>&1; then packages+=(npm); fi
if ! command -v kubectl >/dev/null 2>&1; then packages+=(kubernetes-client); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${#missing[@]} packages from Debian's archive (${missing[*]})"
  phase_begin
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$log" 2>&1 || { rc=$?; phase_fail install-deps "apt-get" "$log" "$rc"; exit "$rc"; }
  # promtool ships only inside Debian's prometheus package, whose server
  # starts and is enabled on install where services start (not in CI's
  # container): the tests want the tool alone.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    if [[ -d /run/systemd/system ]]; then
      systemctl disable --now prometheus.service
    else
      invoke-rc.d prometheus stop
      update-rc.d prometheus disable
    fi >>"$log" 2>&1 || true
  fi
  echo "install-deps: installed ${#missing[@]} packages in $(phase_seconds) s"
fi

# Clients that are not ours, for the reflection and manifest checks.
if [[ ! -d tests/node/node_modules/@grpc/grpc-js || tests/node/package-lock.json -nt tests/node/node_modules ]]; then
  phase_begin
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1 ||
    { rc=$?; phase_fail install-deps "npm ci (tests/node)" "$log" "$rc"; exit "$rc"; }
  echo "install-deps: installed the npm test clients (tests/node) in $(phase_seconds) s"
fi
