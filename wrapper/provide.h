#ifndef WRAPPER_PROVIDE_H_
#define WRAPPER_PROVIDE_H_

#include <string>

namespace sc {

struct ProviderOptions {
  std::string socket_path;
  std::string instance_namespace;
  std::string instance_name;
  // How long to wait for the daemon to answer at start, in seconds.
  int daemon_wait_seconds = 120;
  // How long the daemon may wait for the pod's ROOTFS_MARKER container (0:
  // the daemon's default).
  int marker_wait_seconds = 0;
};

// sc-exec --provide NAMESPACE/NAME: the provider container of a provider pod.
// Waits (bounded, with a progress line) for the daemon, asks it to prepare the
// instance's rootfs with this pod's ROOTFS_MARKER=true container as the lower
// layers, then waits for SIGTERM/SIGINT/SIGHUP and releases the rootfs
// (unmount; the upper layer is kept). Returns the exit code: 0 after a clean
// release, sc::ExitCode otherwise.
int RunProvider(const ProviderOptions& options);

// sc-exec --provide NAMESPACE/NAME --ready: the provider container's readiness
// probe. 0 when the daemon answers and the instance is READY.
int ProviderReady(const ProviderOptions& options);

}  // namespace sc

#endif  // WRAPPER_PROVIDE_H_
