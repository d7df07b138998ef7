#!/usr/bin/env bash
# End to end on a real container runtime: a node played with a *private*
# containerd + runc (Debian's packages), the real daemon started with the
# DaemonSet's flags from deploy/, provider and consumer pods as real
# containers in kubelet-shaped cgroups, and `kubectl exec` done the way
# containerd does it (ctr task exec). Prints one PASS/FAIL line per check and
# exits non-zero if any fails. Everything it makes (containers, mounts,
# cgroups, processes, files) is removed on exit, also on failure.
#
#   sudo scripts/e2e-containerd.sh          needs a build (scripts/build.sh)
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
build=${BUILD_DIR:-build}
[[ $build == /* ]] || build=$top/$build
script_start=$(date +%s.%N)
[[ $(id -u) == 0 ]] || { echo "e2e: needs root" >&2; exit 1; }

missing=()
for p in containerd runc umoci; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null; }
fi
for b in daemon/sc-mount-helper wrapper/sc-exec tests/sc-test-client; do
  [[ -x $build/$b ]] || { echo "e2e: $build/$b missing: run scripts/build.sh" >&2; exit 1; }
done

T=$(mktemp -d /tmp/sc-e2e-XXXXXX)
SOCK_DIR=$T/node/run/stoppablecontainer        # the DaemonSet's socket hostPath
SOCK=$SOCK_DIR/mount-helper.sock
BASE=$T/node/lib/stoppablecontainer            # the DaemonSet's instance hostPath
CTRD=$T/containerd
SNAPSHOTS=$CTRD/root/io.containerd.snapshotter.v1.overlayfs/snapshots
CTR=(ctr -a "$CTRD/containerd.sock" -n sc-e2e)
RUN=(run --runc-root "$T/runc" --fifo-dir "$T/fifo")
IMAGE=localhost/sc-e2e/busybox:latest
CLIENT=$build/tests/sc-test-client
POD_UIDS=()
DAEMON_UIDS=()  # the daemon's pods, removed once it has stopped
daemon_pid=
containerd_pid=
daemon_args=()
passes=0
failures=0

log() { echo "e2e: $*" >&2; }
# check NAME CMD...: runs CMD, one PASS/FAIL line; CMD's output only on failure.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    echo "PASS  $name"
    passes=$((passes + 1))
  else
    echo "FAIL  $name"
    [[ -n $out ]] && printf '%s\n' "$out" | head -n 20 | sed 's/^/      /'
    failures=$((failures + 1))
  fi
}
# wait_until SECONDS CMD...: polls CMD every 50 ms, bounded.
wait_until() {
  local deadline=$(($(date +%s%N) + $1 * 1000000000))
  shift
  until "$@" >/dev/null 2>&1; do
    (($(date +%s%N) < deadline)) || return 1
    sleep 0.05
  done
}
new_uid() { cat /proc/sys/kernel/random/uuid; }
new_cid() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
task_pid() { "${CTR[@]}" task ls 2>/dev/null | awk -v c="$1" '$1 == c {print $2}'; }
task_running() { "${CTR[@]}" task ls 2>/dev/null | awk -v c="$1" '$1 == c && $3 == "RUNNING" {f=1} END {exit !f}'; }
task_gone_or_stopped() { ! task_running "$1"; }
mounts_under() { awk -v d="$1" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo; }

# start_container POD_UID CID [ctr run options...] -- CMD...
start_container() {
  local uid=$1 cid=$2
  shift 2
  local opts=()
  while [[ $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  mkdir -p "$T/logs"
  "${CTR[@]}" "${RUN[@]}" -d --log-uri "file://$T/logs/$cid.log" \
    --cgroup "/kubepods/besteffort/pod$uid/$cid" "${opts[@]}" "$IMAGE" "$cid" "$@" >/dev/null
}
# stop_container CID SIGNAL: signal, wait (bounded), remove.
stop_container() {
  "${CTR[@]}" task kill -s "$2" "$1" >/dev/null 2>&1
  wait_until 20 task_gone_or_stopped "$1" || "${CTR[@]}" task kill -s SIGKILL "$1" >/dev/null 2>&1
  wait_until 10 task_gone_or_stopped "$1"
  "${CTR[@]}" task rm "$1" >/dev/null 2>&1
  "${CTR[@]}" containers rm "$1" >/dev/null 2>&1
}
# runc removes each container's cgroup but not the pod's: the kubelet does.
# Deepest first: the daemon's container holds its operator execs' cgroup.
remove_pod_cgroups() {
  local h
  for h in $(awk '$9 ~ /^cgroup2?$/ && $5 ~ /^\/sys\/fs\/cgroup/ {print $5}' /proc/self/mountinfo); do
    if [[ -d $h/kubepods/besteffort/pod$1 ]]; then
      find "$h/kubepods/besteffort/pod$1" -depth -type d -exec rmdir {} + 2>/dev/null || true
    fi
    rmdir "$h/kubepods/besteffort" "$h/kubepods" 2>/dev/null
  done
  return 0
}

cleanup() {
  set +e
  if [[ -n $containerd_pid ]]; then
    for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do stop_container "$c" SIGKILL; done
    "${CTR[@]}" images rm "$IMAGE" >/dev/null 2>&1
  fi
  if [[ -n $daemon_pid ]]; then kill -TERM "$daemon_pid"; wait "$daemon_pid"; fi
  for uid in "${DAEMON_UIDS[@]}"; do remove_pod_cgroups "$uid"; done
  if [[ -n $containerd_pid ]]; then kill -TERM "$containerd_pid"; wait "$containerd_pid"; fi
  for uid in "${POD_UIDS[@]}"; do remove_pod_cgroups "$uid"; done
  mounts_under "$T" | sort -r | xargs -r -n1 umount -l
  rm -rf "$T"
}
trap cleanup EXIT

# ------------------------------------------------------------- the node
mkdir -p "$SOCK_DIR" "$BASE" "$CTRD" "$T/runc" "$T/fifo"
# Bidirectional propagation on a real node: the instance base is shared, so
# consumers that bind it rslave (HostToContainer) see later mounts.
mount --bind "$BASE" "$BASE" && mount --make-rshared "$BASE"

cat >"$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTRD/containerd.sock"
[ttrpc]
  address = "$CTRD/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"
EOF
containerd --config "$CTRD/config.toml" >"$CTRD/containerd.log" 2>&1 &
containerd_pid=$!
wait_until 20 "${CTR[@]}" version || { log "containerd did not start"; cat "$CTRD/containerd.log"; exit 1; }

# A busybox image made offline with umoci, with a file to recognise it by.
oci=$T/oci
umoci init --layout "$oci" && umoci new --image "$oci:busybox" &&
  umoci unpack --image "$oci:busybox" "$T/bundle" >/dev/null || exit 1
mkdir -p "$T/bundle/rootfs/bin" "$T/bundle/rootfs/etc" "$T/bundle/rootfs/tmp"
cp /bin/busybox "$T/bundle/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do
  [[ -e $T/bundle/rootfs/bin/$a ]] || ln -s busybox "$T/bundle/rootfs/bin/$a"
done
echo "from-the-image" >"$T/bundle/rootfs/image-marker"
printf 'root:x:0:0:root:/:/bin/sh\n' >"$T/bundle/rootfs/etc/passwd"
chmod 1777 "$T/bundle/rootfs/tmp"
umoci repack --image "$oci:busybox" "$T/bundle" &&
  umoci config --image "$oci:busybox" --config.env PATH=/bin --config.cmd sh || exit 1
tar -C "$oci" -cf "$T/busybox.tar" .
"${CTR[@]}" images import --base-name localhost/sc-e2e/busybox "$T/busybox.tar" >/dev/null || exit 1
# `import --base-name` names it after the OCI ref ("busybox"): tag it as latest.
"${CTR[@]}" images tag "localhost/sc-e2e/busybox:busybox" "$IMAGE" >/dev/null 2>&1 || true

# sc-exec as the consumer's init container would install it: the binary and
# command symlinks in a directory on the PATH.
SCBIN=$T/sc-bin
mkdir -p "$SCBIN"
cp "$build/wrapper/sc-exec" "$CLIENT" "$SCBIN/"
for c in sh cat ls echo id; do ln -s sc-exec "$SCBIN/$c"; done

# The daemon, started as the DaemonSet starts it: its command line from the
# rendered default overlay, node paths mapped into this run's directory.
# Like a DaemonSet's pod, each daemon runs in a pod cgroup of its own
# (kubepods/besteffort/pod<uid>/<cid> in every hierarchy): deleting that pod
# (a rolling update) kills every process in it, as runc's kill --all does.
D_UID=
D_CID=
cgroup_hierarchies() { awk '$9 ~ /^cgroup2?$/ && $5 ~ /^\/sys\/fs\/cgroup/ {print $5}' /proc/self/mountinfo; }
daemon_cgroups() {
  local h
  for h in $(cgroup_hierarchies); do echo "$h/kubepods/besteffort/pod$D_UID/$D_CID"; done
}
start_daemon() {
  mkfifo "$T/ready.$$" 2>/dev/null
  D_UID=$(new_uid) D_CID=$(new_cid)
  DAEMON_UIDS+=("$D_UID")
  local cg
  for cg in $(daemon_cgroups); do mkdir -p "$cg"; done
  (
    for cg in $(daemon_cgroups); do echo "$BASHPID" >"$cg/cgroup.procs" 2>/dev/null; done
    exec "${daemon_args[@]}" --ready_fd=3
  ) 3>"$T/ready.$$" >>"$T/daemon.log" 2>&1 &
  daemon_pid=$!
  local ready=
  read -r -t 10 ready <"$T/ready.$$"
  [[ $ready == READY ]]
}
if rendered=$(kubectl kustomize deploy/overlays/default 2>"$T/kustomize.err") &&
  mapfile -t raw < <(printf '%s' "$rendered" | node tests/node/daemon_args.mjs) && ((${#raw[@]})); then
  daemon_args=("$build/daemon/sc-mount-helper")
  for a in "${raw[@]:1}"; do
    a=${a//\/run\/stoppablecontainer/$SOCK_DIR}
    a=${a//\/var\/lib\/stoppablecontainer/$BASE}
    a=${a//\/var\/lib\/containerd/$CTRD/root}
    [[ $a == --audit_log=* ]] && a=--audit_log=$T/audit.log
    # The pod's own network namespace in a cluster; the node's here.
    [[ $a == --metrics_address=* ]] && a=--metrics_address=127.0.0.1:0
    daemon_args+=("$a")
  done
  printf '%s\n' "${daemon_args[@]}" | grep -q -- '--audit_log=' || daemon_args+=(--audit_log="$T/audit.log")
  printf '%s\n' "${daemon_args[@]}" | grep -q -- '--layer_root=' || daemon_args+=(--layer_root="$SNAPSHOTS")
  deploy_flags=ok
else
  deploy_flags="cannot render deploy/overlays/default: $(cat "$T/kustomize.err")"
  daemon_args=("$build/daemon/sc-mount-helper" --socket="$SOCK" --instance_base="$BASE"
    --layer_root="$SNAPSHOTS" --audit_log="$T/audit.log")
fi
check "daemon started with the DaemonSet's flags from deploy/" test "$deploy_flags" = ok
start_daemon || { log "daemon did not start:"; cat "$T/daemon.log"; exit 1; }
log "daemon $daemon_pid: ${daemon_args[*]}"

# ------------------------------------------------------------- pods
CAPS=(CAP_CHOWN CAP_DAC_OVERRIDE CAP_FSETID CAP_FOWNER CAP_MKNOD CAP_NET_RAW CAP_SETGID
  CAP_SETUID CAP_SETFCAP CAP_SETPCAP CAP_NET_BIND_SERVICE CAP_SYS_CHROOT CAP_KILL CAP_AUDIT_WRITE)
NO_CAPS=()
for c in "${CAPS[@]}"; do NO_CAPS+=(--cap-drop "$c"); done

# provider_pod NS NAME: the rootfs container (ROOTFS_MARKER=true, does
# nothing) and the provider container (sc-exec --provide) in one pod sharing
# net/ipc/uts. Sets P_UID P_ROOTFS P_PROVIDER.
provider_pod() {
  local ns=$1 name=$2 pid
  P_UID=$(new_uid) P_ROOTFS=$(new_cid) P_PROVIDER=$(new_cid)
  POD_UIDS+=("$P_UID")
  mkdir -p "$BASE/$ns/$name"  # the hostPath, DirectoryOrCreate
  start_container "$P_UID" "$P_ROOTFS" --env ROOTFS_MARKER=true -- sleep 2147483647 || return 1
  pid=$(task_pid "$P_ROOTFS")
  start_container "$P_UID" "$P_PROVIDER" "${NO_CAPS[@]}" --seccomp \
    --with-ns "network:/proc/$pid/ns/net" --with-ns "ipc:/proc/$pid/ns/ipc" \
    --with-ns "uts:/proc/$pid/ns/uts" \
    --mount "type=bind,src=$SOCK_DIR,dst=/run/stoppablecontainer,options=rbind:rw" \
    --mount "type=bind,src=$BASE/$ns/$name,dst=/var/lib/stoppablecontainer/$ns/$name,options=rbind:rslave" \
    --mount "type=bind,src=$SCBIN,dst=/.sc-bin,options=rbind:ro" \
    -- /.sc-bin/sc-exec --provide "$ns/$name"
}
provider_ready() { "${CTR[@]}" task exec --exec-id "ready-$RANDOM" "$P_PROVIDER" \
  /.sc-bin/sc-exec --provide "$1" --ready; }

# consumer_pod NS NAME WORKLOAD: one container, no capability, seccomp,
# socket dir and the instance rootfs (rslave) mounted, sc-exec --entrypoint.
# Sets C_UID C_CID.
consumer_pod() {
  local ns=$1 name=$2 workload=$3
  C_UID=$(new_uid) C_CID=$(new_cid)
  POD_UIDS+=("$C_UID")
  start_container "$C_UID" "$C_CID" "${NO_CAPS[@]}" --seccomp --env PATH=/.sc-bin:/bin \
    --mount "type=bind,src=$SOCK_DIR,dst=/run/stoppablecontainer,options=rbind:rw" \
    --mount "type=bind,src=$BASE/$ns/$name/rootfs,dst=/rootfs,options=rbind:rslave" \
    --mount "type=bind,src=$SCBIN,dst=/.sc-bin,options=rbind:ro" \
    -- /.sc-bin/sc-exec --entrypoint sh -c "$workload"
}
# kubectl exec, as containerd runs it: a process in the consumer container.
kexec() { "${CTR[@]}" task exec --exec-id "e$RANDOM$RANDOM" "$C_CID" "$@"; }

# The workload of the entrypoint: leaves a token in the rootfs, then waits.
WORKLOAD='echo "$TOKEN" > /workload.token; exec sleep 2147483647'

# Finds the host pid of the entrypoint's workload: the `sleep` in the
# consumer's pid namespace.
workload_pid() {
  local want p
  want=$(readlink "/proc/$(task_pid "$C_CID")/ns/pid")
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/ns/pid" 2>/dev/null) == "$want" ]] || continue
    [[ $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) == "sleep 2147483647 " ]] && { echo "${p#/proc/}"; return 0; }
  done
  return 1
}

# ------------------------------------------------------------- checks
same_ns_and_cgroup() {  # HOST_PID: in the consumer's namespaces and cgroup
  local c ns
  c=$(task_pid "$C_CID")
  for ns in net ipc uts pid mnt cgroup; do
    [[ $(readlink "/proc/$1/ns/$ns") == "$(readlink "/proc/$c/ns/$ns")" ]] ||
      { echo "ns $ns differs"; return 1; }
  done
  diff <(cat "/proc/$1/cgroup") <(cat "/proc/$c/cgroup") || return 1
}
no_capabilities() {  # HOST_PID
  local line
  for line in CapInh CapPrm CapEff CapBnd CapAmb; do
    grep -q "^$line:[[:space:]]*0000000000000000$" "/proc/$1/status" ||
      { grep "^$line" "/proc/$1/status"; return 1; }
  done
  grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$1/status" || { echo "no_new_privs not set"; return 1; }
}
sees_image() { [[ $(cat "/proc/$1/root/image-marker") == from-the-image ]]; }
snapshot_listing() {  # the image's layer directories, as the ROOTFS_MARKER container mounts them
  local pid lower
  pid=$(task_pid "$P_ROOTFS")
  lower=$(awk '$5 == "/" && $9 == "overlay" {print $NF}' "/proc/$pid/mountinfo" |
    tr ',' '\n' | sed -n 's/^lowerdir=//p' | tr ':' ' ')
  [[ -n $lower ]] || return 1
  # shellcheck disable=SC2086
  find $lower -printf '%P %s %m %T@\n' | sort | md5sum
}
instance_mounts() { mounts_under "$BASE/$1/rootfs" | wc -l; }
audit_has() {  # POD_UID METHOD: a refusal of METHOD for a caller of that pod
  grep "\"pod_uid\":\"$1\"" "$T/audit.log" | grep "\"method\":\"$2\"" | grep -q '"decision":"deny"'
}
# The daemon's audit log says the provider container released the instance,
# and nothing of it is mounted. (Not the provider's own "released" line: the
# shim loses a container's last line now and then when it exits; seen with
# the provider's exit status 0 in containerd's /tasks/exit event.)
provider_released() {
  grep '"method":"ReleaseRootfs"' "$T/audit.log" | grep "\"container_id\":\"$1\"" |
    grep -q '"code":"OK"' && [[ $(instance_mounts "$2") == 0 ]]
}

log "provider pod for demo/a"
provider_pod demo a
check "provider pod prepares instance demo/a (sc-exec --provide)" wait_until 30 provider_ready demo/a
lower_before=$(snapshot_listing)
TOKEN=a-first consumer_pod demo a "TOKEN=a-first; $WORKLOAD"
check "consumer entrypoint workload started in the instance rootfs" \
  wait_until 30 grep -qx a-first "$BASE/demo/a/rootfs/workload.token"
wpid=$(workload_pid)
check "entrypoint workload sees the image's files" sees_image "$wpid"
check "entrypoint workload is in the consumer's namespaces and cgroup" same_ns_and_cgroup "$wpid"
check "entrypoint workload has zero capabilities and no_new_privs" no_capabilities "$wpid"
check "kubectl exec (sh symlink to sc-exec) runs in the rootfs" \
  bash -c "out=\$(${CTR[*]} task exec --exec-id x1 $C_CID sh -c 'cat /image-marker; grep ^CapEff /proc/self/status'); echo \"\$out\"; grep -q from-the-image <<<\"\$out\" && grep -q 'CapEff:[[:space:]]*0000000000000000' <<<\"\$out\""
check "kubectl exec -t (interactive) gets a terminal in the rootfs" \
  bash -c "out=\$(script -qec '${CTR[*]} task exec -t --exec-id x2 $C_CID sh -c \"tty; cat /image-marker\"' /dev/null); echo \"\$out\"; grep -q /dev/pts/ <<<\"\$out\" && grep -q from-the-image <<<\"\$out\""

log "persistence across a full stop/start"
secret=persisted-$RANDOM$RANDOM
kexec sh -c "echo $secret > /data.txt" >/dev/null
old_provider=$P_PROVIDER
stop_container "$C_CID" SIGTERM
stop_container "$P_PROVIDER" SIGTERM
check "provider releases the rootfs on SIGTERM (unmounted, data kept)" \
  provider_released "$old_provider" demo/a
stop_container "$P_ROOTFS" SIGKILL
check "nothing of the instance is mounted once the provider pod is gone" test "$(instance_mounts demo/a)" = 0
provider_pod demo a
wait_until 30 provider_ready demo/a
TOKEN=a-second consumer_pod demo a "TOKEN=a-second; $WORKLOAD"
wait_until 30 grep -qx a-second "$BASE/demo/a/rootfs/workload.token"
check "a file written before the stop is there after, with new pod UIDs" \
  bash -c "[[ \$(${CTR[*]} task exec --exec-id x3 $C_CID cat /data.txt) == $secret ]]"
check "the image's snapshot directory was never written to" test "$(snapshot_listing)" = "$lower_before"

log "isolation: instance demo/b from the same image"
A_CONSUMER=$C_CID A_PROVIDER=$P_PROVIDER A_ROOTFS=$P_ROOTFS
provider_pod demo b
wait_until 30 provider_ready demo/b
TOKEN=b consumer_pod demo b "TOKEN=b; $WORKLOAD"
wait_until 30 grep -qx b "$BASE/demo/b/rootfs/workload.token"
check "instance b does not see instance a's files" \
  bash -c "! ${CTR[*]} task exec --exec-id x4 $C_CID cat /data.txt"
B_UID=$C_UID
check "b's consumer cannot prepare a" \
  bash -c "! ${CTR[*]} task exec --exec-id x5 $C_CID /.sc-bin/sc-exec --provide demo/a"
check "b's consumer cannot bind into a" bash -c "! ${CTR[*]} task exec --exec-id x6 $C_CID \
  /.sc-bin/sc-test-client /run/stoppablecontainer/mount-helper.sock BindMount \
  'instance { namespace: \"demo\" name: \"a\" } source: \"/\" target: \"/host\"'"
check "b's consumer cannot exec into a" bash -c "! ${CTR[*]} task exec --exec-id x7 $C_CID \
  /.sc-bin/sc-test-client /run/stoppablecontainer/mount-helper.sock Exec \
  'argv: \"true\" instance { namespace: \"demo\" name: \"a\" }'"
check "b's consumer cannot release a" bash -c "! ${CTR[*]} task exec --exec-id x8 $C_CID \
  /.sc-bin/sc-test-client /run/stoppablecontainer/mount-helper.sock ReleaseRootfs \
  'instance { namespace: \"demo\" name: \"a\" }'"
check "a is still mounted after b's attempts" test "$(instance_mounts demo/a)" -gt 0
for m in PrepareRootfs BindMount Exec ReleaseRootfs; do
  check "the audit log records b's $m on a as a refusal" audit_has "$B_UID" "$m"
done

log "daemon restart under a running consumer"
C_CID=$A_CONSUMER
wpid=$(workload_pid)
mounts_before=$(mounts_under "$BASE" | sort)
kill -KILL "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
# Not inside check: that runs in a subshell, and daemon_pid must be this shell's.
restarted=failed
start_daemon && restarted=ok
check "daemon starts again after SIGKILL" test "$restarted" = ok
check "the running workload is untouched by the restart" kill -0 "$wpid"
check "instances are re-adopted, nothing mounted twice" \
  test "$(mounts_under "$BASE" | sort)" = "$mounts_before"
check "new execs work after the restart" \
  bash -c "[[ \$(${CTR[*]} task exec --exec-id x9 $C_CID cat /data.txt) == $secret ]]"

log "rolling update of the DaemonSet's pod under running sessions"
# The consumer's entrypoint writes numbered lines to its container log, a
# kubectl exec -i pipes 256 MiB through cat, a kubectl exec -t shell waits
# for input; meanwhile the daemon's pod is deleted (every process of its
# cgroup SIGKILLed) and a new one starts. Every line and byte arrives, each
# session ends with its own status, nothing is left behind.
LINES=4000
C_CID=$A_CONSUMER
provider_ready demo/a >/dev/null || wait_until 30 provider_ready demo/a
STREAMS_UID=$(new_uid) STREAMS_CID=$(new_cid)
POD_UIDS+=("$STREAMS_UID")
start_container "$STREAMS_UID" "$STREAMS_CID" "${NO_CAPS[@]}" --seccomp --env PATH=/.sc-bin:/bin \
  --mount "type=bind,src=$SOCK_DIR,dst=/run/stoppablecontainer,options=rbind:rw" \
  --mount "type=bind,src=$BASE/demo/a/rootfs,dst=/rootfs,options=rbind:rslave" \
  --mount "type=bind,src=$SCBIN,dst=/.sc-bin,options=rbind:ro" \
  -- /.sc-bin/sc-exec --entrypoint sh -c \
  "trap 'exit 7' TERM; i=0; while [ \$i -lt $LINES ]; do echo line-\$i; i=\$((i+1)); usleep 2000; done; sleep 100000 & wait"
head -c $((256 << 20)) /dev/urandom >"$T/big.in"
"${CTR[@]}" task exec --exec-id big "$STREAMS_CID" sh -c 'cat' <"$T/big.in" >"$T/big.out" 2>"$T/big.err" &
big_pid=$!
mkfifo "$T/tty.in"
script -qfec "${CTR[*]} task exec -t --exec-id tty $STREAMS_CID sh -c 'read a; echo got-\$a; read b; echo got-\$b; exit 5'" \
  /dev/null <"$T/tty.in" >"$T/tty.out" 2>&1 &
tty_pid=$!
exec {tty_w}>"$T/tty.in"
echo one >&"$tty_w"
log_lines() { grep -c '^line-' "$T/logs/$STREAMS_CID.log" 2>/dev/null; }
lines_at_least() { (($(log_lines) >= $1)); }
# count_keepers [POD_UID]: the keepers of running sessions (the daemon's
# binary in that role), all or those in that pod's cgroup.
count_keepers() {
  local p n=0
  for p in /proc/[0-9]*; do
    { [[ $(tr '\0' ' ' <"$p/cmdline") == "sc-mount-helper: keeper "* ]] &&
      { [[ -z ${1:-} ]] || grep -q "pod$1" "$p/cgroup"; } && n=$((n + 1)); } 2>/dev/null
  done
  echo "$n"
}
wait_until 30 lines_at_least 200
wait_until 30 grep -q got-one "$T/tty.out"
wait_until 30 test -s "$T/big.out"
lines_before=$(log_lines)
big_before=$(stat -c %s "$T/big.out")
keepers_before=$(count_keepers "$STREAMS_UID")
update_start=$(date +%s%N)
for cg in $(daemon_cgroups); do
  while read -r p; do kill -KILL "$p" 2>/dev/null; done <"$cg/cgroup.procs"
done
wait "$daemon_pid" 2>/dev/null
daemon_emptied() {
  local cg
  for cg in $(daemon_cgroups); do [[ -z $(cat "$cg/cgroup.procs") ]] || return 1; done
}
wait_until 10 daemon_emptied
for cg in $(daemon_cgroups); do rmdir "$cg" "${cg%/*}" 2>/dev/null; done
updated=failed
start_daemon && updated=ok
update_ms=$((($(date +%s%N) - update_start) / 1000000))
check "a new daemon pod serves after the old one was deleted" test "$updated" = ok
check "new execs work as soon as it serves" \
  bash -c "[[ \$(${CTR[*]} task exec --exec-id x10 $C_CID cat /data.txt) == $secret ]]"
echo two >&"$tty_w"
# (script(1) is given no EOF before the shell has exited.)
wait_until 60 bash -c "! kill -0 $tty_pid"
tty_status=0
wait "$tty_pid" || tty_status=$?
exec {tty_w}>&-
wait_until 120 bash -c "! kill -0 $big_pid"
big_status=0
wait "$big_pid" || big_status=$?
# Every line is in the log before the workload is asked to end (the shim
# may drop a container's last line when it exits).
wait_until 120 lines_at_least "$LINES"
"${CTR[@]}" task kill -s SIGTERM "$STREAMS_CID" >/dev/null 2>&1
wait_until 30 task_gone_or_stopped "$STREAMS_CID"
# ctr says a task's exit code only in a warning ("exit with non-zero exit code N").
entry_status=$("${CTR[@]}" task rm "$STREAMS_CID" 2>&1 | sed -n 's/.*non-zero exit code \([0-9]*\).*/\1/p')
entry_status=${entry_status:-0}
"${CTR[@]}" containers rm "$STREAMS_CID" >/dev/null 2>&1
lines_seen=$(log_lines)
log "rolling update: the daemon's pod replaced in ${update_ms} ms; entrypoint lines ${lines_before} before, ${lines_seen} of $LINES in all; kubectl exec -i ${big_before} of $((256 << 20)) bytes before, $(stat -c %s "$T/big.out") after; ${keepers_before} keepers ran in the pod; the entrypoint's container exited $entry_status"
check "every line of the entrypoint arrived, in order, once ($LINES)" \
  bash -c "diff <(grep '^line-' $T/logs/$STREAMS_CID.log) <(seq 0 $((LINES - 1)) | sed 's/^/line-/') | head -5; exit \${PIPESTATUS[0]}"
check "the entrypoint's container exits with its workload's status (7)" test "$entry_status" = 7
check "kubectl exec -i: all 256 MiB through cat, byte exact, exit 0" \
  bash -c "cmp $T/big.in $T/big.out && test $big_status = 0 || { cat $T/big.err; echo status $big_status; exit 1; }"
check "kubectl exec -t: the shell answers input sent after the update and exits 5" \
  bash -c "grep -q got-two $T/tty.out && test $tty_status = 5 || { cat $T/tty.out; echo status $tty_status; exit 1; }"
no_keepers() { [[ $(count_keepers "$STREAMS_UID") == 0 ]]; }
check "no keeper is left once the sessions ended" wait_until 10 no_keepers
rm -f "$T/big.in" "$T/big.out"

log "provider start to consumer workload running, 10 times"
times=()
for i in $(seq 10); do
  s=$(date +%s%N)
  provider_pod timing "t$i"
  wait_until 30 provider_ready "timing/t$i" || break
  consumer_pod timing "t$i" "TOKEN=t$i; $WORKLOAD"
  wait_until 30 grep -qx "t$i" "$BASE/timing/t$i/rootfs/workload.token" || break
  times+=($((($(date +%s%N) - s) / 1000000)))
  stop_container "$C_CID" SIGTERM
  stop_container "$P_PROVIDER" SIGTERM
  stop_container "$P_ROOTFS" SIGKILL
done
check "10 provider-to-workload cycles completed" test "${#times[@]}" = 10
if ((${#times[@]})); then
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  log "provider start -> consumer workload running: median ${median} ms of ${#times[@]} (${times[*]})"
fi

log "clean stop"
for c in $("${CTR[@]}" containers ls -q); do
  if [[ $c == "$A_PROVIDER" || $c == "$P_PROVIDER" ]]; then continue; fi
  stop_container "$c" SIGTERM
done
for c in $("${CTR[@]}" containers ls -q); do stop_container "$c" SIGTERM; done
check "after the provider pods are gone, nothing of any instance is mounted" \
  test -z "$(mounts_under "$BASE" | grep -v "^$BASE\$")"
check "containerd's task list is empty" test -z "$("${CTR[@]}" task ls -q)"
for uid in "${POD_UIDS[@]}"; do remove_pod_cgroups "$uid"; done
check "the kubepods cgroups hold nothing of this run" \
  bash -c "! find /sys/fs/cgroup -maxdepth 4 -name 'pod*' | grep -qE '$(IFS='|'; echo "${POD_UIDS[*]}")'"

echo "e2e: $passes passed, $failures failed in $(awk -v s="$script_start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}') s"
echo "$passes passed, $failures failed"
((failures == 0))
