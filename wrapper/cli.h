#ifndef WRAPPER_CLI_H_
#define WRAPPER_CLI_H_

#include <string>
#include <vector>

namespace sc {

enum class Mode {
  kRun,           // sc-exec CMD ARGS... (or invoked through a symlink named CMD)
  kEntrypoint,    // --entrypoint: wait until ready, then run (as PID 1: reap)
  kReady,         // --ready: readiness probe
  kHealth,        // --health: is the daemon SERVING?
  kWhoAmI,        // --whoami: the identity the daemon sees
  kProvide,       // --provide NS/NAME: a provider pod's provider container
  kProvideReady,  // --provide NS/NAME --ready: its readiness probe
  kHelp,
  kVersion,
};

struct Options {
  Mode mode = Mode::kRun;
  std::string socket_path;
  std::vector<std::string> argv;  // the command to run (kRun)
  std::string workdir;            // --workdir; "" = the caller's cwd
  int tty = -1;                   // --tty 1, --no-tty 0, -1 = stdin is a terminal
  int wait_seconds = 300;         // --wait (entrypoint)
  std::string rootfs_path;        // --rootfs; "" = the daemon's default
  std::string instance_ns;        // --instance NS/NAME (operators)
  std::string instance_name;
  bool stream = false;     // --stream (or SC_EXEC_STREAM=1): stdio over gRPC
  std::string provide_ns;  // --provide NS/NAME
  std::string provide_name;
};

// Parses sc-exec's command line. argv[0]'s base name decides between the
// sc-exec command line and the symlink form ("bash -c ..." runs bash).
// Returns "" on success, otherwise the usage error.
std::string ParseCommandLine(int argc, char** argv, Options* options);

// The --help text.
std::string HelpText();

}  // namespace sc

#endif  // WRAPPER_CLI_H_
