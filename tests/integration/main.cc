// The integration tests' main. The same binary is re-executed to play the
// processes of a simulated pod (see harness.h), so those modes are dispatched
// before Catch2 sees the command line.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <csignal>
#include <cstring>

#include "tests/integration/harness.h"

namespace {
bool playing_a_pod_process = false;
}  // namespace

// LeakSanitizer stops the world with ptrace at exit, which fails (after a long
// stall) for the processes that play a pod: they live in a new pid namespace
// under a reaper. Leaks are checked in the daemon and in the test process.
extern "C" int __lsan_is_turned_off() { return playing_a_pod_process ? 1 : 0; }

int main(int argc, char** argv) {
  playing_a_pod_process = argc > 1 && std::strncmp(argv[1], "__sc_pod_", 9) == 0;
  if (argc > 1 && std::strcmp(argv[1], "__sc_pod_init") == 0) {
    return sc::test::PodInitMain(argc, argv);
  }
  if (argc > 1 && std::strcmp(argv[1], "__sc_pod_exec") == 0) {
    return sc::test::PodExecMain(argc, argv);
  }
  if (argc > 1 && std::strcmp(argv[1], "__sc_pod_reaper") == 0) {
    return sc::test::PodReaperMain();
  }
  // A peer that goes away mid-write (a daemon the test killed) is an error
  // to report, not a reason for the whole suite to die of SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  return Catch::Session().run(argc, argv);
}
