#ifndef WRAPPER_TRACE_H_
#define WRAPPER_TRACE_H_

namespace sc {

// Timing points of one sc-exec run, for scripts/bench.sh's breakdown of the
// exec round trip. Off unless SC_EXEC_TRACE is set in the environment (it is
// not passed on to the process: see PassedEnvironment); then TraceDump()
// prints "sc-exec-trace NAME MICROSECONDS" lines, one per point, each the
// CLOCK_MONOTONIC time, on stderr. Costs one clock_gettime per point when on
// and nothing else.
void TraceInit();
void TracePoint(const char* name);
void TraceDump();

}  // namespace sc

#endif  // WRAPPER_TRACE_H_
