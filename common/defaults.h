#ifndef COMMON_DEFAULTS_H_
#define COMMON_DEFAULTS_H_

namespace sc {

// Where the daemon listens unless told otherwise (--socket); sc-exec reads
// SC_SOCKET to override it.
inline constexpr char kDefaultSocketPath[] = "/run/stoppablecontainer/mount-helper.sock";
inline constexpr char kSocketEnv[] = "SC_SOCKET";

// Where instances live on the node: <base>/<namespace>/<name>/{upper,work,rootfs}.
inline constexpr char kDefaultInstanceBase[] = "/var/lib/stoppablecontainer";

// Where a consumer pod sees its instance's rootfs.
inline constexpr char kDefaultPodRootfsPath[] = "/rootfs";

// The environment entry that marks a provider pod's rootfs container.
inline constexpr char kRootfsMarker[] = "ROOTFS_MARKER=true";

// The gRPC service name, as registered and as reflection lists it.
inline constexpr char kServiceName[] = "stoppablecontainer.mounthelper.v1.MountHelper";

}  // namespace sc

#endif  // COMMON_DEFAULTS_H_
