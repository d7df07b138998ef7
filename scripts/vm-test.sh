#!/usr/bin/env bash
# The VM test: the integration tests on Debian's own kernel (the archive's
# linux-image-cloud-amd64, 6.1 on bookworm), booted in QEMU, once with the
# cgroup v1 hybrid layout and once with pure cgroup v2.
#
#   scripts/vm-test.sh [--cgroup v1|v2|both] [--tags TAGS | --long]
#                      [--timeout SECONDS] [--no-build] [-- CATCH2 ARGS...]
#
#   --cgroup   which boots (default both)
#   --tags     Catch2 test spec run in the VM, alternatives separated by
#              commas (default: default_tests below, chosen so that both
#              boots together stay under ~6 minutes under TCG on two cores)
#   --long     the whole integration suite (6 to 11 minutes a boot)
#   --timeout  per boot, then qemu is killed (default 900, --long 5400)
#   --no-build use BUILD_DIR as it is
#   -- ARGS    more arguments for integration_tests in the VM
# The tests of `excluded` below never run in the VM (node, python3, TCG).
#
# Needs root (apt-get, and cpio records every file as root's). Builds
# BUILD_DIR (default build-vm) with scripts/build.sh as a plain build:
# sanitizers are too slow under TCG and ASan's runtime would need more setup
# in the VM (SC_BUILD_LOCK=FILE: the build holds flock FILE). The kernel
# package is downloaded once with apt-get download and unpacked with dpkg-deb
# into ${XDG_CACHE_HOME:-/var/cache}/sc-vm/. Console
# logs go to ${SC_VM_LOGS:-BUILD_DIR/vm-logs}/<kernel>-<cgroup>.log. QEMU uses
# TCG (SC_VM_ACCEL=kvm to try KVM where a stock kernel runs under it).
# Exits 0 when every boot ran its tests and they passed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/vm/image.sh

# What a CI run proves on the old kernel, in both cgroup modes (Catch2 2
# tags and name patterns; a name must not hold a comma): the rootfs
# lifecycle (prepare, persistence, idempotence, SIGKILL + re-adoption with
# and without layers by fd, half-done prepares, release leaving nothing
# mounted, symlink swaps, the provider), peers and pid reuse, exec from a pod
# (status, byte-exact stdio, signals, tty, namespaces, cgroup, capabilities,
# non-root, /proc, stdio by reference and its hostile fds (pidfd_getfd), a
# SIGKILLed daemon under running sessions), seccomp (the workload's
# allowlist on both ABIs), the escape cases that depend on the kernel
# (another pod's rootfs, .. and symlinks, setuid, mount and namespaces
# inside, devices, a container's /dev, /sys, /proc and cgroup view, the
# conversion of an older daemon's instance, an operator's device limit) and
# the red-team ones (binds resolved under the pod's
# own directory, nosuid,nodev set in place by mount_setattr, a devpts of
# each tty session's own). Left to --long: load, faults, limits, policy
# cases that no kernel feature decides (authz, CheckRootfs, provider
# waits, who deletes), the hostile catalogue. Measured on two cores with
# nothing else running: 53 cases, 206 s (v1) and 191 s (v2) a boot, 435 s
# in all; --long 350 s (v2, quieter) to 630 s (v1, loaded) a boot.
default_tests=(
  '[rootfs] ~[authz] ~[check] ~"a pod without a rootfs container*" ~"a provider whose root*"'
  '[peer]' '[seccomp]'
  '"exec: exit status*"' '"exec: 64 MiB round trip*"' '"exec: the process runs as the pod would*"'
  '"exec: a non-root caller runs as itself"' '"exec: a pod reaches only its own rootfs"'
  '"exec: a terminal sees its size change"' '"exec: signals are forwarded*"'
  "\"a workload's /proc shows its pod's processes only\""
  '"restart: SIGKILL of the daemon is invisible to running by-reference sessions"'
  '[by_reference]'
  '"sc-exec --provide prepares on start and releases on SIGTERM"'
  "\"escape: a pod cannot exec into another pod's instance\""
  '"escape: .. and symlinks in the rootfs lead back into it"'
  '"escape: a setuid-root binary*"' '"escape: mount*"'
  "\"escape: a pod's workload gets only the devices its pod has*\""
  "\"escape: /dev and /sys and /proc are a container's*\""
  "\"escape: a workload's cgroup view and mqueue*\"" '"escape: an instance an older daemon*"'
  '"escape: a restarted daemon converts*"'
  "\"escape: an operator's exec reaches no node disk\""
  '"redteam: a pod binds only*"' '"redteam: the rootfs is nosuid*"'
  '"redteam: another pod of the instance cannot see*"' '"redteam: a terminal is /dev/pts/N*"')
default_tags=$(IFS=,; echo "${default_tests[*]}")
# --long: every test that is not hidden (the benchmarks are).
long_tags='~[.]'
# Never in the VM, whatever the tags (Catch2 2 name patterns, no commas):
# what needs node (tests/node) or python3, which the VM has not, and what
# only measures the emulator (4096 forks under TCG take over the test's
# 60 s bound; 7 s on the host).
excluded=('a client that is not ours sees reflection*'
  "redteam: a pod's idle connections*"
  'exec: a slow reader slows the process*')

cgroups=both
tags=
long=0
timeout=
build=1
extra=()
while (($#)); do
  case $1 in
    --cgroup) cgroups=$2; shift 2 ;;
    --cgroup=*) cgroups=${1#*=}; shift ;;
    --tags) tags=$2; shift 2 ;;
    --tags=*) tags=${1#*=}; shift ;;
    --long) long=1; shift ;;
    --timeout) timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --no-build) build=0; shift ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) vm_die "unknown argument $1 (--help)" ;;
  esac
done
case $cgroups in
  both) modes=(v1 v2) ;;
  v1 | v2) modes=("$cgroups") ;;
  *) vm_die "--cgroup takes v1, v2 or both" ;;
esac
if ((long)); then
  [[ -z $tags ]] || vm_die "--long and --tags exclude each other"
  tags=$long_tags
  timeout=${timeout:-5400}
else
  tags=${tags:-$default_tags}
  timeout=${timeout:-900}
fi
# One Catch2 spec: a comma is OR, a space AND, so every alternative of TAGS
# gets the exclusions.
spec=
IFS=, read -ra alternatives <<<"$tags"
for alt in "${alternatives[@]}"; do
  spec+=${spec:+,}$alt
  for name in "${excluded[@]}"; do spec+=" ~\"$name\""; done
done
[[ $(id -u) == 0 ]] || vm_die "needs root (apt-get; the initramfs's files are root's)"

start_all=$(date +%s)
scripts/install-deps.sh >/dev/null
build_dir=${BUILD_DIR:-build-vm}
if ((build)); then
  vm_log "building $build_dir (plain, no sanitizers)"
  t=$(date +%s)
  # -DSC_SANITIZE= even where the directory was configured otherwise.
  if [[ -n ${SC_BUILD_LOCK:-} ]]; then
    BUILD_DIR=$build_dir flock "$SC_BUILD_LOCK" scripts/build.sh -DSC_SANITIZE= >/dev/null
  else
    BUILD_DIR=$build_dir scripts/build.sh -DSC_SANITIZE= >/dev/null
  fi
  vm_log "build took $(($(date +%s) - t)) s"
fi
grep -q __asan_init "$build_dir/daemon/sc-mount-helper" &&
  vm_die "$build_dir is a sanitized build; the VM needs a plain one"

cache=${XDG_CACHE_HOME:-/var/cache}/sc-vm
vm_kernel "$cache"
vm_log "kernel: $VM_KERNEL_PKG $VM_KERNEL_VERSION"

work=$(mktemp -d "${TMPDIR:-/tmp}/sc-vm-XXXXXX")
qemu_pid=
tail_pid=
# shellcheck disable=SC2317  # run by the trap
cleanup() {
  [[ -n $qemu_pid ]] && kill -KILL "$qemu_pid" 2>/dev/null
  [[ -n $tail_pid ]] && kill "$tail_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

t=$(date +%s)
abs_build=$(cd "$build_dir" && pwd)
vm_initramfs "$work/initrd" "$build_dir" -- \
  "$abs_build/tests/integration_tests" "$spec" --durations yes --use-colour no "${extra[@]}"
vm_log "initramfs: $VM_INITRAMFS_FILES files, $((VM_INITRAMFS_BYTES / 1048576)) MiB," \
  "$(($(stat -c %s "$work/initrd") / 1048576)) MiB gzip'ed, made in $(($(date +%s) - t)) s"

logs=${SC_VM_LOGS:-$build_dir/vm-logs}
mkdir -p "$logs"
accel=${SC_VM_ACCEL:-tcg}

# Boots once; sets r_exit r_boot r_total r_passed r_failed r_note.
boot() {
  local mode=$1 log=$logs/$VM_KVER-$1.log
  local append="console=ttyS0 quiet panic=-1 sc.cgroup=$mode"
  [[ $mode == v2 ]] && append+=" systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all"
  : >"$log"
  vm_log "booting $VM_KVER with cgroup $mode ($accel), console in $log"
  local t0
  t0=$(date +%s.%N)
  qemu-system-x86_64 -accel "$accel" -m 2048 -smp 2 -nographic -no-reboot \
    -kernel "$VM_VMLINUZ" -initrd "$work/initrd" -append "$append" </dev/null >"$log" 2>&1 &
  qemu_pid=$!
  tail -n +1 -f --pid="$qemu_pid" "$log" &
  tail_pid=$!
  r_boot=
  r_cpu=0
  local now killed=0 ticks
  ticks=$(getconf CLK_TCK)
  while kill -0 "$qemu_pid" 2>/dev/null; do
    now=$(date +%s.%N)
    # QEMU's CPU time so far (utime + stime): what the boot costs apart from
    # what else runs on the machine.
    r_cpu=$(awk -v t="$ticks" '{printf "%.0f", ($14 + $15) / t}' "/proc/$qemu_pid/stat" 2>/dev/null ||
      echo "$r_cpu")
    if [[ -z $r_boot ]] && grep -aq 'SC-VM-READY uptime=' "$log"; then
      r_boot=$(awk -v a="$t0" -v b="$now" 'BEGIN {printf "%.1f", b - a}')
    fi
    if awk -v a="$t0" -v b="$now" -v t="$timeout" 'BEGIN {exit !(b - a > t)}'; then
      kill -KILL "$qemu_pid"
      killed=1
      break
    fi
    sleep 0.5
  done
  wait "$qemu_pid" || true
  qemu_pid=
  wait "$tail_pid" 2>/dev/null || true
  tail_pid=
  r_total=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')
  [[ -n $r_boot ]] || r_boot='?'
  local result
  result=$(tr -d '\r' <"$log" | grep -ao 'SC-VM-RESULT exit=.*' | tail -n 1 || true)
  r_paths=$(tr -d '\r' <"$log" | grep -ao 'SC-VM-DAEMON: .*' | head -n 1 | sed 's/^SC-VM-DAEMON: //' || true)
  r_note=
  if [[ -n $result ]]; then
    r_exit=$(sed -n 's/.*exit=\([0-9]*\).*/\1/p' <<<"$result")
  elif ((killed)); then
    r_exit=124
    r_note="killed after ${timeout} s"
  else
    r_exit=125
    r_note="no result line (kernel panic or init died?)"
  fi
  grep -aq 'SC-VM-ERROR' "$log" && r_note=$(tr -d '\r' <"$log" | grep -ao 'SC-VM-ERROR.*' | head -n 1 || true)
  # Catch2's last line: "test cases: N | P passed | F failed" or "All tests
  # passed (A assertions in N test cases)".
  local line
  line=$(tr -d '\r' <"$log" | grep -aoE '(test cases:|All tests passed|No tests ran).*' | tail -n 1 || true)
  r_passed='?'
  r_failed='?'
  r_mayfail=0
  if [[ $line == "All tests passed"* ]]; then
    r_passed=$(sed -n 's/.* in \([0-9]*\) test case.*/\1/p' <<<"$line")
    r_failed=0
  elif [[ $line == "test cases:"* ]]; then
    # "test cases: 20 | 17 passed | 2 failed | 1 failed as expected"
    r_passed=$(awk -F'|' '{for (i = 2; i <= NF; i++) if ($i ~ / passed *$/) print $i + 0}' <<<"$line")
    r_failed=$(awk -F'|' '{for (i = 2; i <= NF; i++) if ($i ~ / failed *$/) print $i + 0}' <<<"$line")
    r_mayfail=$(awk -F'|' '{for (i = 2; i <= NF; i++) if ($i ~ /as expected/) print $i + 0}' <<<"$line")
    [[ -n $r_passed ]] || r_passed=0
    [[ -n $r_failed ]] || r_failed=0
    [[ -n $r_mayfail ]] || r_mayfail=0
  elif [[ $line == "No tests ran"* ]]; then
    r_passed=0
    r_failed=0
    r_note="no test matched $tags"
    [[ $r_exit == 0 ]] && r_exit=1
  fi
}

status=0
summary=()
paths=()
for mode in "${modes[@]}"; do
  boot "$mode"
  ((r_exit == 0)) || status=1
  paths+=("$mode: ${r_paths:-(no start-up line of the daemon)}")
  summary+=("$(printf '%-24s %-3s %6s %6s %7s %6s %7s %6s  exit %s %s' "$VM_KVER" "$mode" \
    "$r_passed" "$r_failed" "$r_mayfail" "$r_boot" "$r_total" "$r_cpu" "$r_exit" "$r_note")")
done

# CI keeps only the tail of what a run prints, which is the last boot's
# console: what failed in any boot is repeated here, Catch2's blocks of it.
for mode in "${modes[@]}"; do
  log=$logs/$VM_KVER-$mode.log
  grep -aq 'FAILED:' "$log" 2>/dev/null || continue
  echo
  echo "vm-test: what failed with cgroup $mode (from $log):"
  tr -d '\r' <"$log" | grep -a -B 14 -A 12 'FAILED:' | head -n 120
done

echo
echo "vm-test: $tags ${extra[*]}"
# mayfail: [!mayfail] cases (open defects) that failed, as expected.
printf '%-24s %-3s %6s %6s %7s %6s %7s %6s\n' kernel cg passed failed mayfail boot-s total-s cpu-s
printf '%s\n' "${summary[@]}"
printf 'daemon, %s\n' "${paths[@]}"
echo "vm-test: $(($(date +%s) - start_all)) s in all (load average $(cut -d' ' -f1-3 /proc/loadavg))," \
  "logs in $logs"
exit "$status"
