#ifndef DAEMON_EXEC_LAUNCH_WATCH_H_
#define DAEMON_EXEC_LAUNCH_WATCH_H_

#include <atomic>
#include <chrono>
#include <cstddef>

namespace sc {

// A deadline for the children of one launch. The launching thread waits
// inside clone3 until the workload has exec'd (CLONE_VFORK, see launch_children.cc),
// so it cannot time out by itself; a shared watchdog thread SIGKILLs the
// watched pids that are set (non-zero) once the deadline passes, which
// releases that thread. The pids are written by the kernel
// (CLONE_PARENT_SETTID) before each child runs.
//
// Unwatch (destroy) before reaping any of the pids: until then they cannot
// have been reused.
class LaunchWatch {
 public:
  LaunchWatch(std::chrono::steady_clock::time_point deadline, const std::atomic<int>* pids,
              size_t count);
  ~LaunchWatch();
  LaunchWatch(const LaunchWatch&) = delete;
  LaunchWatch& operator=(const LaunchWatch&) = delete;

  // Stops watching; true when the deadline had passed and the pids were
  // killed.
  bool Stop();

  struct Entry {
    std::chrono::steady_clock::time_point deadline;
    const std::atomic<int>* pids;
    size_t count;
    bool fired = false;
  };

 private:
  Entry entry_;
  bool watching_ = true;
};

}  // namespace sc

#endif  // DAEMON_EXEC_LAUNCH_WATCH_H_
