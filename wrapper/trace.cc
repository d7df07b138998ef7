#include "wrapper/trace.h"

#include <time.h>

#include <cstdio>
#include <cstdlib>

namespace sc {
namespace {

struct Point {
  const char* name;
  long long micros;
};
// Written by the main thread only.
bool enabled = false;
Point points[16];
int count = 0;

}  // namespace

void TraceInit() { enabled = std::getenv("SC_EXEC_TRACE") != nullptr; }

void TracePoint(const char* name) {
  if (!enabled || count == static_cast<int>(sizeof(points) / sizeof(points[0]))) return;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  points[count++] = {name, now.tv_sec * 1000000LL + now.tv_nsec / 1000};
}

void TraceDump() {
  for (int i = 0; i < count; ++i) {
    std::fprintf(stderr, "sc-exec-trace %s %lld\n", points[i].name, points[i].micros);
  }
}

}  // namespace sc
