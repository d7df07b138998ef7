#ifndef WRAPPER_STREAM_H_
#define WRAPPER_STREAM_H_

#include <string>
#include <vector>

#include "mounthelper.grpc.pb.h"

namespace sc {

namespace v1 = ::stoppablecontainer::mounthelper::v1;

struct SessionOptions {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string workdir;
  bool workdir_inherited = false;  // the caller's cwd, not --workdir
  std::string rootfs_path;
  std::string instance_ns, instance_name;  // operators
  bool tty = false;
  // --entrypoint: if the daemon goes away mid-session (restarted, upgraded),
  // the process it started keeps running. Rather than end the container with
  // it, stay while the process lives (its output stream is lost), forward
  // signals to it directly, and exit kExitStreamBroken when it ends.
  bool outlive_daemon = false;
};

// Runs one session with stdio by reference (StdioByReference in
// mounthelper.proto), the default for pod callers: the daemon hands this
// process's own stdin, stdout and stderr to the process, and a keeper in this
// pod reaps it; sc-exec only forwards signals and window size through the
// control pipe and waits on the status pipe, so that the daemon may restart
// meanwhile. Returns the exit code as RunSession does.
int RunByReference(grpc::ChannelInterface* channel, const SessionOptions& options);

// Once the process runs, RunByReference execs this binary as
// `sc-exec <kWaiterFlag> STATUS_FD CONTROL_FD tty|pipes TERMINAL` (the state
// to restore, SavedTerminal()), which main() hands
// to RunKeeperWaiter: the rest of the session without gRPC.
inline constexpr char kWaiterFlag[] = "--internal-keeper-wait";
int RunKeeperWaiter(int argc, char** argv);

// The ExecStart both kinds of session send (by_reference left unset).
void FillExecStart(const SessionOptions& options, v1::ExecStart* start);

// Runs one Exec session: copies stdin to the stream and the stream to
// stdout/stderr byte for byte, forwards signals (see signals.h) and window
// size changes, and returns the exit code sc-exec should exit with: the
// process's code, 128+N for signal N, or one of common/exit_codes.h with a
// message on stderr. The terminal is restored before it returns.
int RunSession(grpc::ChannelInterface* channel, const SessionOptions& options);

// The environment to pass: `environ` minus sc-exec's own variables
// (SC_SOCKET, SC_EXEC_*).
std::vector<std::string> PassedEnvironment(char** environ);

}  // namespace sc

#endif  // WRAPPER_STREAM_H_
