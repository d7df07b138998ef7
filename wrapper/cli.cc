#include "wrapper/cli.h"

#include <cstdlib>
#include <cstring>

#include "common/names.h"
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

       sc-exec --entrypoint [--workdir DIR] [--wait SECONDS] [--] CMD [ARGS...]
       sc-exec --ready
       sc-exec --provide NAMESPACE/NAME [--ready] [--wait SECONDS]

Runs CMD inside this pod's StoppableContainer rootfs, through the node's
mount-helper daemon, and exits with CMD's status. CMD is looked up in the
PATH of the rootfs (the PATH passed along), not in this container's.

What is passed: this process's environment (minus SC_SOCKET and SC_EXEC_*),
its working directory (or --workdir), its uid/gid as the daemon sees them.
By default CMD gets this process's own stdin, stdout and stderr (the daemon
takes them by reference; nothing is copied): EOF on stdin is CMD's, and its
output goes where sc-exec's would. A keeper process in this pod, not the
daemon, waits for CMD, so the daemon may restart while CMD runs and nothing
is lost. With a terminal on stdin, CMD gets a terminal of its own, which the
keeper relays to this one: this one is put in raw mode (restored on exit),
its size is passed at start and on every SIGWINCH, and stdout/stderr are
merged. SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to
sc-exec are forwarded to CMD's process group. If sc-exec dies or is killed,
CMD gets SIGHUP and SIGTERM, then SIGKILL after the daemon's grace period.
With --stream (for an --instance session always), stdio is copied over the
gRPC stream instead, and a daemon restart ends the session: sc-exec then
stops CMD itself (SIGKILL after 5 s) and exits 124.

Modes:
  (default)       run CMD; through a symlink NAME -> sc-exec, runs NAME ARGS
  --entrypoint    for a container entrypoint: wait (bounded by --wait, a
                  progress line every 5 s on stderr) until the daemon is
                  SERVING and the rootfs is ready, then run CMD. As PID 1 it
                  also reaps orphaned zombies. A daemon restart while CMD
                  runs changes nothing. With --stream, CMD keeps running
                  without its output, and sc-exec exits 124 when it ends.
  --ready         readiness probe: exit 0 when the daemon answers and the
                  rootfs is ready, 123 (reason on stderr) when not ready.
  --provide NAMESPACE/NAME
                  the provider container of a provider pod: waits for the
                  daemon (bounded by --wait, default 300 s), asks it to
                  prepare instance NAMESPACE/NAME with the lower layers of
                  this pod's container that has ROOTFS_MARKER=true, then
                  waits; on SIGTERM, SIGINT or SIGHUP it releases the rootfs
                  (unmounted; the instance's upper layer is kept) and exits
                  0. The pod must mount the instance's directory.
                  With --ready: the provider's readiness probe, 0 when the
                  instance is READY.

Options:
  --workdir DIR   working directory inside the rootfs; it must exist there
                  (default: the current directory, or / when the rootfs
                  lacks it)
  --tty, --no-tty force a terminal on or off (default: on when stdin is one)
  --stream        copy stdio over the gRPC stream instead of handing it
                  over (as SC_EXEC_STREAM=1 does, also through a symlink)
  --wait SECONDS  --entrypoint: how long to wait for readiness (default 300)
  --rootfs PATH   where this pod sees the rootfs (default: the daemon's,
                  normally /rootfs)
  --instance NS/NAME
                  operators only (uid 0 in the daemon's namespaces): run in
                  that instance's rootfs, in fresh namespaces of its own
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
  124      the session ended without an exit status (the stream broke, or
           the keeper was killed)
  125      sc-exec itself failed
)";
}

std::string ParseCommandLine(int argc, char** argv, Options* options) {
  options->socket_path = SocketPathFromEnvironment();
  // The symlink form takes no options of sc-exec's own.
  const char* stream = std::getenv("SC_EXEC_STREAM");
  options->stream = stream != nullptr && std::strcmp(stream, "1") == 0;
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
    } else if (arg == "--entrypoint") {
      options->mode = Mode::kEntrypoint;
    } else if (arg == "--ready") {
      options->mode = Mode::kReady;
    } else if (arg == "--tty") {
      options->tty = 1;
    } else if (arg == "--no-tty") {
      options->tty = 0;
    } else if (arg == "--stream") {
      options->stream = true;
    } else if (arg == "--provide") {
      if (++i >= argc) return "--provide needs NAMESPACE/NAME";
      std::string error = ParseInstanceName(argv[i], &options->provide_ns, &options->provide_name);
      if (!error.empty()) return "--provide: " + error;
    } else if (arg == "--instance") {
      if (++i >= argc) return "--instance needs NAMESPACE/NAME";
      std::string error =
          ParseInstanceName(argv[i], &options->instance_ns, &options->instance_name);
      if (!error.empty()) return "--instance: " + error;
    } else if (arg == "--workdir" || arg == "--wait" || arg == "--rootfs") {
      if (++i >= argc) return arg + " needs a value";
      std::string value = argv[i];
      if (arg == "--workdir") {
        if (value.empty() || value[0] != '/') return "--workdir needs an absolute path";
        options->workdir = value;
      } else if (arg == "--rootfs") {
        if (value.empty() || value[0] != '/') return "--rootfs needs an absolute path";
        options->rootfs_path = value;
      } else {
        char* end = nullptr;
        long v = std::strtol(value.c_str(), &end, 10);
        if (end == value.c_str() || *end != '\0' || v < 0 || v > 86400) {
          return "--wait needs a number of seconds (0-86400)";
        }
        options->wait_seconds = static_cast<int>(v);
      }
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
  // --help and --version answer whatever else the line says.
  if (options->mode == Mode::kHelp || options->mode == Mode::kVersion) return "";
  if (!options->provide_name.empty()) {
    if (options->mode != Mode::kRun && options->mode != Mode::kReady) {
      return "--provide goes with --ready only";
    }
    if (!options->argv.empty()) return "--provide takes no command";
    options->mode = options->mode == Mode::kReady ? Mode::kProvideReady : Mode::kProvide;
  }
  if ((options->mode == Mode::kRun || options->mode == Mode::kEntrypoint) &&
      options->argv.empty()) {
    return "no command given";
  }
  return "";
}

}  // namespace sc
