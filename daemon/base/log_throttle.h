#ifndef DAEMON_BASE_LOG_THROTTLE_H_
#define DAEMON_BASE_LOG_THROTTLE_H_

#include <cstdint>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sc {

// Lets one log line of a kind through per interval, so that a flood of the
// same event (a pod opening thousands of connections) costs the log a line a
// second, not one per event; the lines held back are counted.
class LogThrottle {
 public:
  explicit LogThrottle(absl::Duration interval = absl::Seconds(1)) : interval_(interval) {}

  // True when a line may be written now; then *suppressed is how many were
  // held back since the last one.
  bool Allow(uint64_t* suppressed) {
    std::lock_guard<std::mutex> lock(mu_);
    absl::Time now = absl::Now();
    if (now - last_ < interval_) {
      ++held_back_;
      return false;
    }
    last_ = now;
    *suppressed = held_back_;
    held_back_ = 0;
    return true;
  }

 private:
  const absl::Duration interval_;
  std::mutex mu_;
  absl::Time last_ = absl::InfinitePast();
  uint64_t held_back_ = 0;
};

}  // namespace sc

#endif  // DAEMON_BASE_LOG_THROTTLE_H_
