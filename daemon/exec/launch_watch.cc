#include "daemon/exec/launch_watch.h"

#include <signal.h>

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

namespace sc {
namespace {

// One thread for the whole daemon, started with the first launch. Never
// destroyed: it may still wait when static destructors run at exit.
class Watchdog {
 public:
  static Watchdog& Get() {
    static Watchdog* instance = new Watchdog();
    return *instance;
  }

  void Add(LaunchWatch::Entry* entry) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.insert(entry);
    wake_.notify_one();
  }

  bool Remove(LaunchWatch::Entry* entry) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.erase(entry);
    return entry->fired;
  }

 private:
  Watchdog() {
    std::thread([this] { Run(); }).detach();
  }

  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      auto now = std::chrono::steady_clock::now();
      auto next = std::chrono::steady_clock::time_point::max();
      for (LaunchWatch::Entry* e : entries_) {
        if (e->fired) continue;
        if (e->deadline <= now) {
          for (size_t i = 0; i < e->count; ++i) {
            int pid = e->pids[i].load(std::memory_order_relaxed);
            if (pid > 0) kill(pid, SIGKILL);
          }
          e->fired = true;
        } else if (e->deadline < next) {
          next = e->deadline;
        }
      }
      if (next == std::chrono::steady_clock::time_point::max()) {
        wake_.wait(lock);
      } else {
        wake_.wait_until(lock, next);
      }
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;
  std::set<LaunchWatch::Entry*> entries_;
};

}  // namespace

LaunchWatch::LaunchWatch(std::chrono::steady_clock::time_point deadline,
                         const std::atomic<int>* pids, size_t count)
    : entry_{deadline, pids, count} {
  Watchdog::Get().Add(&entry_);
}

bool LaunchWatch::Stop() {
  if (watching_) {
    watching_ = false;
    entry_.fired = Watchdog::Get().Remove(&entry_);
  }
  return entry_.fired;
}

LaunchWatch::~LaunchWatch() { Stop(); }

}  // namespace sc
