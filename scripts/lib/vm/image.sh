# shellcheck shell=bash disable=SC2034  # the VM_ variables are for the caller
# Kernel and initramfs of the VM test (scripts/vm-test.sh). Source this file.
#
#   vm_kernel CACHE_DIR            Debian's cloud kernel, downloaded once with
#                                  apt-get download and unpacked with dpkg-deb
#                                  under CACHE_DIR; sets VM_KERNEL_PKG,
#                                  VM_KERNEL_VERSION, VM_KVER, VM_VMLINUZ,
#                                  VM_MODULES (the kernel's lib/modules/KVER)
#   vm_initramfs OUT BUILD -- CMD  a gzip'ed newc cpio: busybox-static, the
#                                  tools the tests run, our binaries of BUILD
#                                  (at their absolute paths, as the tests have
#                                  them compiled in), their libraries, the
#                                  modules, /init, and CMD to run
#
# Everything comes from Debian's archive or this build, nothing else.

# The tools the integration tests run by absolute path or through PATH that
# busybox does not give the way they need them (util-linux's options).
# kmod's modprobe is the kernel's module loader, as on a node.
VM_TOOLS=(/usr/bin/setpriv /usr/bin/unshare /usr/bin/nsenter /sbin/losetup /bin/bash /bin/kmod)
# Kernel modules loaded at boot, as a node's containerd unit does for
# overlay; their dependencies come along.
VM_MODULES_WANTED=(overlay loop)
# Modules that are only there, for the kernel to load on first use as it
# does on a node (unix_diag: sock_diag of AF_UNIX sockets, a module in
# Debian's kernel, CONFIG_UNIX_DIAG=m; bridge: an interface of a pod's own in
# the escape tests).
VM_MODULES_AUTOLOAD=(unix_diag bridge)
# Our binaries, relative to the build directory.
VM_BINARIES=(daemon/sc-mount-helper wrapper/sc-exec tests/sc-test-client tests/sc-escape-probe
  tests/integration_tests)

vm_log() { echo "vm-test: $*" >&2; }
vm_die() {
  echo "vm-test: $*" >&2
  exit 2
}

vm_kernel() {
  local cache=$1 meta=linux-image-cloud-amd64
  local pkg
  pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [[ -z $pkg ]]; then
    vm_log "no package lists for $meta: apt-get update"
    apt-get update -qq
    pkg=$(apt-cache depends "$meta" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
  [[ -n $pkg ]] || vm_die "$meta names no linux-image-* package (apt-cache depends $meta)"
  local version
  version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2; exit}')
  [[ -n $version && $version != "(none)" ]] || vm_die "no candidate version of $pkg"
  VM_KERNEL_PKG=$pkg
  VM_KERNEL_VERSION=$version
  local dir=$cache/${pkg}_$version
  mkdir -p "$cache"
  (
    flock 9
    if [[ ! -e $dir/.complete ]]; then
      vm_log "downloading $pkg $version from Debian's archive"
      local tmp
      tmp=$(mktemp -d "$cache/.download-XXXXXX")
      # apt downloads as _apt where it can; a root-only directory only earns
      # a warning.
      chmod 0755 "$tmp"
      (cd "$tmp" && apt-get download -q "$pkg=$version" 2>&1 | grep -v 'unsandboxed' >&2) ||
        vm_die "apt-get download $pkg=$version failed"
      dpkg-deb -x "$tmp"/"${pkg}"_*.deb "$tmp/root"
      rm -rf "$dir"
      mv "$tmp/root" "$dir"
      rm -rf "$tmp"
      : >"$dir/.complete"
    fi
  ) 9>"$cache/.lock" || exit
  VM_KVER=${pkg#linux-image-}
  VM_VMLINUZ=$dir/boot/vmlinuz-$VM_KVER
  VM_MODULES=$dir/lib/modules/$VM_KVER
  [[ -f $VM_VMLINUZ ]] || vm_die "no $VM_VMLINUZ in $pkg"
  [[ -d $VM_MODULES ]] || vm_die "no $VM_MODULES in $pkg"
}

# Copies FILE into ROOT at PATH (default: FILE's own path), following
# symlinks; the image has the host's merged-/usr layout, so paths agree.
_vm_copy() {
  local root=$1 file=$2 path=${3:-$2}
  [[ -e $root$path ]] && return 0
  mkdir -p "$root$(dirname "$path")"
  cp -L "$file" "$root$path"
}

# Copies the shared libraries and the ELF interpreter that ldd lists for FILE.
_vm_copy_libs() {
  local root=$1 file=$2 lib
  # ldd fails (and prints nothing useful) for a static binary: nothing to copy.
  while read -r lib; do
    _vm_copy "$root" "$lib"
  done < <(ldd "$file" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}

# Adds module NAME and, first, what it depends on (modinfo -F depends), at
# its place under lib/modules/KVER, decompressed (busybox insmod takes a
# plain ELF file only; kmod's modprobe takes both).
_vm_add_module() {
  local root=$1 name=$2 file dep
  grep -qx "$name" "$root/etc/sc-vm/modules-added" 2>/dev/null && return 0
  # Module names use _ where file names may use -.
  file=$(find "$VM_MODULES/kernel" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) -print -quit)
  if [[ -z $file ]]; then
    # Built into the kernel: nothing to load.
    grep -q "/${name}.ko\$\|/${name//_/-}.ko\$" "$VM_MODULES/modules.builtin" 2>/dev/null && return 0
    vm_die "module $name is neither in $VM_KERNEL_PKG nor built in"
  fi
  for dep in $(modinfo -F depends "$file" | tr ',' ' '); do
    _vm_add_module "$root" "$dep"
  done
  local rel=${file#"$VM_MODULES"/}
  rel=${rel%.xz}
  rel=${rel%.zst}
  rel=${rel%.gz}
  local out=$root/lib/modules/$VM_KVER/$rel
  mkdir -p "$(dirname "$out")"
  case $file in
    *.ko) cp "$file" "$out" ;;
    *.ko.xz) xz -dc "$file" >"$out" ;;
    *.ko.zst) zstd -qdc "$file" >"$out" ;;
    *.ko.gz) gzip -dc "$file" >"$out" ;;
    *) vm_die "unknown module compression: $file" ;;
  esac
  echo "$name" >>"$root/etc/sc-vm/modules-added"
}

vm_initramfs() {
  local out=$1 build=$2
  shift 2
  [[ $1 == -- ]] && shift
  local root
  root=$(mktemp -d "${TMPDIR:-/tmp}/sc-vm-initramfs-XXXXXX")
  # The host's merged-/usr layout, so that the paths ldd prints hold.
  mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{proc,sys,dev,tmp,run,root,etc/sc-vm,var/tmp}
  local d
  for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
  ln -s ../run "$root/var/run"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  chmod 0700 "$root/root"

  # The tools first, so that busybox's applets do not take their names.
  local tool
  for tool in "${VM_TOOLS[@]}"; do
    [[ -x $tool ]] || vm_die "$tool is missing (scripts/install-deps.sh installs it)"
    _vm_copy "$root" "$tool" "$(readlink -f "$tool")"
    _vm_copy_libs "$root" "$tool"
  done

  ln -s ../bin/kmod "$root/usr/sbin/modprobe"
  ln -s ../bin/kmod "$root/usr/sbin/lsmod"

  # busybox-static at /bin/busybox: the tests' MakeBusyboxTree copies it from
  # there into every image; /bin/sh and every other applet are links to it.
  ldd /bin/busybox >/dev/null 2>&1 && vm_die "/bin/busybox is not static (install busybox-static)"
  cp /bin/busybox "$root/usr/bin/busybox"
  local applet path
  while read -r applet; do
    path=${applet#/}
    case $path in
      bin/*) path=usr/$path ;;
      sbin/*) path=usr/$path ;;
    esac
    [[ -e $root/$path || -L $root/$path ]] && continue
    mkdir -p "$root/$(dirname "$path")"
    ln -s /usr/bin/busybox "$root/$path"
  done < <(/bin/busybox --list-full)

  # Our binaries, where the tests have their paths compiled in; without
  # debug sections (a fifth of the size, symbols kept for backtraces).
  local abs rel
  abs=$(cd "$build" && pwd)
  # The init mounts fresh tmpfs on these: binaries below them would vanish.
  case $abs/ in
    /tmp/* | /run/*) vm_die "$abs is below /tmp or /run, which the VM's init mounts a tmpfs on: build elsewhere" ;;
  esac
  for rel in "${VM_BINARIES[@]}"; do
    [[ -x $build/$rel ]] || vm_die "$build/$rel is missing (build it first)"
    mkdir -p "$root$abs/$(dirname "$rel")"
    objcopy --strip-debug "$build/$rel" "$root$abs/$rel"
    _vm_copy_libs "$root" "$build/$rel"
  done
  grep -aqF "$abs/daemon/sc-mount-helper" "$build/tests/integration_tests" ||
    vm_die "$build/tests/integration_tests does not name $abs/daemon/sc-mount-helper (configured elsewhere?)"

  # The modules, with what the kernel's module autoloading needs as on a
  # node: modules.dep and modules.alias (depmod) and kmod's modprobe.
  local m
  for m in "${VM_MODULES_WANTED[@]}" "${VM_MODULES_AUTOLOAD[@]}"; do _vm_add_module "$root" "$m"; done
  for m in modules.builtin modules.builtin.modinfo modules.order; do
    [[ -f $VM_MODULES/$m ]] && cp "$VM_MODULES/$m" "$root/lib/modules/$VM_KVER/"
  done
  depmod -b "$root" "$VM_KVER" || vm_die "depmod for the initramfs failed"
  printf '%s\n' "${VM_MODULES_WANTED[@]}" >"$root/etc/sc-vm/modules"

  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
tty:x:5:
nogroup:x:65534:
EOF
  printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
  chmod 0640 "$root/etc/shadow"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tsc-vm\n::1\tlocalhost\n' >"$root/etc/hosts"
  echo sc-vm >"$root/etc/hostname"
  : >"$root/etc/resolv.conf"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$root/etc/nsswitch.conf"

  install -m 0755 "$(dirname "${BASH_SOURCE[0]}")/init" "$root/init"
  local arg
  for arg in "$@"; do
    [[ $arg == *$'\n'* ]] && vm_die "an argument of the command holds a newline: $arg"
    printf '%s\n' "$arg"
  done >"$root/etc/sc-vm/argv"
  # CI=true: a skipped test is a failure in the VM too.
  printf 'export CI=true\nexport LANG=C.UTF-8\nexport TERM=dumb\n' >"$root/etc/sc-vm/env"
  # The init shows the daemon's start-up line (the paths it takes on this
  # kernel) before the tests.
  printf 'SC_VM_DAEMON=%s\n' "$abs/daemon/sc-mount-helper" >>"$root/etc/sc-vm/env"

  (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
    gzip -"${SC_VM_GZIP_LEVEL:-1}" >"$out"
  VM_INITRAMFS_FILES=$(cd "$root" && find . -mindepth 1 | wc -l)
  VM_INITRAMFS_BYTES=$(du -sb "$root" | cut -f1)
  rm -rf "$root"
}
