#include "wrapper/cli.h"

#include <cstring>

#include "wrapper/connection.h"

namespace sc {
namespace {

std::string BaseName(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash != nullptr ? slash + 1 : path;
}

}  // namespace

std::string HelpText() {
  return R"(Usage: sc-exec [OPTIONS] [--] CMD [ARGS...]
       CMD [ARGS...]          (through a symlink CMD -> sc-exec)

Runs CMD inside this pod's StoppableContainer rootfs, through the node's
mount-helper daemon, and exits with CMD's status.

Options:
  --socket PATH   the daemon's socket (default $SC_SOCKET, else
                  /run/stoppablecontainer/mount-helper.sock)
  --health        check that the daemon answers and is SERVING
  --whoami        print the identity the daemon sees for this process
  --version       print the version
  --help          print this text

Exit status:
  N        CMD exited with N
  128+N    CMD was killed by signal N
  126      CMD could not be executed (reason on stderr)
  127      CMD was not found in the rootfs (reason on stderr)
  120      bad command line
  121      the daemon's socket cannot be reached
  122      the daemon refused the call (gRPC status on stderr)
  123      the rootfs was not ready in time
  124      the stream ended without an exit status
  125      sc-exec itself failed
)";
}

std::string ParseCommandLine(int argc, char** argv, Options* options) {
  options->socket_path = SocketPathFromEnvironment();
  std::string self = argc > 0 ? BaseName(argv[0]) : "sc-exec";
  if (self != "sc-exec") {
    // Invoked through a symlink: every argument belongs to the command.
    options->argv.assign(argv, argv + argc);
    options->argv[0] = self;
    return "";
  }
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.rfind("--", 0) != 0) break;
    if (arg == "--help" || arg == "-h") {
      options->mode = Mode::kHelp;
    } else if (arg == "--version") {
      options->mode = Mode::kVersion;
    } else if (arg == "--health") {
      options->mode = Mode::kHealth;
    } else if (arg == "--whoami") {
      options->mode = Mode::kWhoAmI;
    } else if (arg == "--socket" || arg.rfind("--socket=", 0) == 0) {
      if (arg == "--socket") {
        if (++i >= argc) return "--socket needs a path";
        options->socket_path = argv[i];
      } else {
        options->socket_path = arg.substr(strlen("--socket="));
      }
    } else {
      return "unknown option " + arg;
    }
  }
  options->argv.assign(argv + i, argv + argc);
  if (options->mode == Mode::kRun && options->argv.empty()) return "no command given";
  return "";
}

}  // namespace sc
