#!/usr/bin/env bash
# The main job: builds everything, starts the daemon on an embedded default
# rootfs (a busybox image made on the spot from Debian's busybox-static),
# prepares an instance, and runs a command through the static sc-exec inside
# a simulated consumer pod: what a user sees in a real cluster.
#
#   sudo scripts/run.sh                 an interactive shell (or a demo command
#                                       when stdin is not a terminal)
#   sudo scripts/run.sh CMD ARGS...     runs CMD in the instance and exits with its status
#
# Everything it makes lives under one temporary directory and is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
[[ $(id -u) == 0 ]] || { echo "run.sh: needs root (mounts, namespaces, cgroups)" >&2; exit 1; }
# Each phase says what it did and how long it took; installing and building
# say nothing when there is nothing to do.
scripts/install-deps.sh >&2
scripts/build.sh >&2
build=$top/${BUILD_DIR:-build}
source scripts/lib/pod.sh
source scripts/lib/phase.sh

work=$(mktemp -d /tmp/sc-demo-XXXXXX)
daemon_pid=
cleanup() {
  set +e
  pod_destroy
  if [[ -n $daemon_pid ]]; then
    "$build/tests/sc-test-client" "$work/run/mh.sock" ReleaseRootfs \
      'instance { namespace: "demo" name: "busybox" } delete_data: true' >/dev/null 2>&1
    kill -TERM "$daemon_pid"; wait "$daemon_pid"
  fi
  # Anything still mounted below the work directory, deepest first.
  awk -v w="$work" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo |
    sort -r | xargs -r -n1 umount -l
  rm -rf "$work"
}
trap cleanup EXIT

# The embedded default image: busybox and its applets.
layer=$work/layers/busybox
mkdir -p "$layer"/{bin,etc,proc,sys,dev,tmp,root}
cp /bin/busybox "$layer/bin/busybox"
for applet in $("$layer/bin/busybox" --list); do
  [[ -e $layer/bin/$applet ]] || ln -s busybox "$layer/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$layer/etc/passwd"
printf 'root:x:0:\n' >"$layer/etc/group"
printf 'NAME="StoppableContainer demo (busybox)"\n' >"$layer/etc/os-release"

mkdir -p "$work/run"
mkfifo "$work/ready"
phase_begin
"$build/daemon/sc-mount-helper" --socket="$work/run/mh.sock" --instance_base="$work/instances" \
  --layer_root="$work/layers" --audit_log="$work/audit.log" --ready_fd=3 \
  3>"$work/ready" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
read -r -t 10 ready <"$work/ready" ||
  { phase_fail run.sh "starting the daemon" "$work/daemon.log" 1; exit 1; }
echo "run.sh: daemon $daemon_pid serving on $work/run/mh.sock ($(phase_seconds) s)" >&2

phase_begin
"$build/tests/sc-test-client" "$work/run/mh.sock" PrepareRootfs \
  "instance { namespace: \"demo\" name: \"busybox\" } layers { paths: \"$layer\" }" \
  >"$work/prepare.log" 2>&1 || { phase_fail run.sh "PrepareRootfs" "$work/prepare.log" $?; exit 1; }
echo "run.sh: instance demo/busybox prepared at $work/instances/demo/busybox/rootfs" \
  "($(phase_seconds) s)" >&2

phase_begin
pod_create demo-consumer "$work/instances/demo/busybox/rootfs"
echo "run.sh: consumer pod $POD_UID (pid 1 = host pid $POD_PID; $(phase_seconds) s)" >&2

if (($#)); then
  cmd=("$@")
elif [[ -t 0 ]]; then
  cmd=(sh)
else
  cmd=(sh -c 'echo "hello from $(hostname), pid $$, in $(cat /etc/os-release)"; id; ls /')
fi
set +e
pod_exec env SC_SOCKET="$work/run/mh.sock" "$build/wrapper/sc-exec" "${cmd[@]}"
status=$?
set -e
echo "run.sh: sc-exec exited $status" >&2
exit $status
