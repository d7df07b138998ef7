// The integration tests' main. The same binary is re-executed to play the
// processes of a simulated pod (see harness.h), so those modes are dispatched
// before Catch2 sees the command line.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstring>

#include "tests/integration/harness.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "__sc_pod_init") == 0) {
    return sc::test::PodInitMain(argc, argv);
  }
  if (argc > 1 && std::strcmp(argv[1], "__sc_pod_exec") == 0) {
    return sc::test::PodExecMain(argc, argv);
  }
  if (argc > 1 && std::strcmp(argv[1], "__sc_pod_reaper") == 0) {
    return sc::test::PodReaperMain();
  }
  return Catch::Session().run(argc, argv);
}
