// sc-session: the processes a session needs besides its workload, as one
// small static binary that the daemon carries inside itself and execs from a
// sealed memfd (daemon/exec/session_binary.h): a by-reference session's keeper
// (keeper.h) and an operator exec's pid 1 (pid1.h). Static and free of the
// daemon's libraries, it starts in well under a millisecond where the
// daemon's own binary needed 40-90 ms to load its shared libraries, time that
// `sc-exec true` waited for. argv[0] names the role.
#include <cstring>

#include "session/keeper.h"
#include "session/pid1.h"

int main(int argc, char** argv) {
  if (argc >= 1 && std::strcmp(argv[0], sc::kKeeperName) == 0) sc::KeeperMain(argc, argv);
  if (argc >= 1 && std::strcmp(argv[0], sc::kPidNamespaceInitName) == 0) {
    sc::PidNamespaceInitMain();
  }
  return 2;
}
