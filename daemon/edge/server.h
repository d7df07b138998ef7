#ifndef DAEMON_EDGE_SERVER_H_
#define DAEMON_EDGE_SERVER_H_

#include "daemon/base/config.h"

namespace sc {

// Runs the daemon until SIGTERM or SIGINT: binds the socket, serves the API,
// health and reflection, then shuts down within config.shutdown_grace and
// removes the socket. Returns the process exit code. Must be called before
// any other thread exists (it sets the signal mask that threads inherit).
int RunDaemon(const DaemonConfig& config);

}  // namespace sc

#endif  // DAEMON_EDGE_SERVER_H_
