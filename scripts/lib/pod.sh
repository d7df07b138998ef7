# A simulated Kubernetes pod for scripts (the C++ tests have their own in
# tests/integration/harness.cc): a process tree in its own mount, pid, net,
# uts and ipc namespaces, in the cgroup kubepods/<qos>/pod<uid>/<container>
# of every mounted hierarchy, with a root of its own that shows the host's
# top-level directories plus /rootfs. Source this file; needs root.
#
#   pod_create NAME ROOTFS_HOST_DIR   sets POD_UID POD_CID POD_PID
#   pod_exec CMD ARGS...              runs CMD in the pod, stdio inherited
#   pod_destroy                       kills the pod, removes its cgroups

pod_create() {
  local name=$1 rootfs=$2
  POD_UID=$(cat /proc/sys/kernel/random/uuid)
  POD_CID=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  POD_CGROUPS=()
  local h dir
  for h in $(awk '$9 ~ /^cgroup2?$/ && $5 ~ /^\/sys\/fs\/cgroup/ {print $5}' /proc/self/mountinfo); do
    dir=$h
    for level in kubepods besteffort "pod$POD_UID" "$POD_CID"; do
      dir=$dir/$level
      [[ -d $dir ]] || mkdir "$dir"
      # v1 cpuset cgroups admit no process until they have cpus and mems.
      if [[ -f $dir/cpuset.cpus && -z $(tr -d ' \n' <"$dir/cpuset.cpus") ]]; then
        cat "$(dirname "$dir")/cpuset.cpus" >"$dir/cpuset.cpus"
        cat "$(dirname "$dir")/cpuset.mems" >"$dir/cpuset.mems"
      fi
    done
    POD_CGROUPS+=("$dir")
  done
  POD_ROOT=$(mktemp -d /tmp/sc-demo-podroot-XXXXXX)
  local ready
  ready=$(mktemp -u /tmp/sc-demo-ready-XXXXXX)
  mkfifo "$ready"
  # The pod's pid 1 sets up its root, says ready, then waits to be killed.
  setsid bash -c '
    for d in "${@:5}"; do echo $$ >"$d/cgroup.procs"; done
    exec unshare --mount --uts --ipc --net --pid --fork --propagation slave bash -c "
      set -e
      hostname $1
      mount -t tmpfs -o mode=0755 tmpfs $2
      for d in /*; do
        n=\${d#/}
        case \$n in proc|rootfs) continue;; esac
        if [ -L \$d ]; then ln -s \$(readlink \$d) $2/\$n
        elif [ -d \$d ]; then mkdir $2/\$n; mount --rbind \$d $2/\$n; fi
      done
      mkdir $2/proc $2/rootfs
      mount --rbind $3 $2/rootfs
      mount --make-rslave $2
      cd $2 && pivot_root . . && umount -l . && cd /
      mount -t proc proc /proc
      echo ready >$4
      exec sleep 2147483647
    "' pod "$name" "$POD_ROOT" "$rootfs" "$ready" "${POD_CGROUPS[@]}" >/dev/null 2>&1 &
  local launcher=$!
  if ! read -r -t 10 _ <"$ready"; then
    rm -f "$ready"
    echo "pod: the simulated pod did not start" >&2
    return 1
  fi
  rm -f "$ready"
  # pid 1 of the pod is unshare's child.
  # The children file has no final newline: read returns 1 after assigning.
  read -r POD_PID _ < <(cat /proc/"$launcher"/task/*/children) || true
  POD_LAUNCHER=$launcher
}

pod_exec() {
  local procs=()
  local d
  for d in "${POD_CGROUPS[@]}"; do procs+=("$d/cgroup.procs"); done
  bash -c 'for f in "${@:2:$1}"; do echo $$ >"$f"; done; shift $(( $1 + 1 )); exec "$@"' \
    pod_exec "${#procs[@]}" "${procs[@]}" \
    nsenter -t "$POD_PID" -m -u -i -n -p -r -w "$@"
}

pod_destroy() {
  [[ -n ${POD_PID:-} ]] && kill -KILL "$POD_PID" 2>/dev/null
  [[ -n ${POD_LAUNCHER:-} ]] && wait "$POD_LAUNCHER" 2>/dev/null
  local d i
  for d in "${POD_CGROUPS[@]}"; do
    # Bounded: processes the daemon started in the pod leave with it.
    for i in $(seq 100); do rmdir "$d" 2>/dev/null && break; sleep 0.05; done
    # The pod, QoS and kubepods levels go when no other pod uses them.
    rmdir "$(dirname "$d")" "$(dirname "$(dirname "$d")")" \
      "$(dirname "$(dirname "$(dirname "$d")")")" 2>/dev/null || true
  done
  [[ -n ${POD_ROOT:-} ]] && rmdir "$POD_ROOT" 2>/dev/null
  POD_PID= POD_LAUNCHER= POD_ROOT=
  POD_CGROUPS=()
}
