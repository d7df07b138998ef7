// Per-pod limits (daemon/edge/limits.h): what one key holds, never more.
#include "daemon/edge/limits.h"

#include <catch2/catch.hpp>
#include <vector>

namespace sc {

TEST_CASE("a keyed limiter gives each key its maximum and takes units back", "[limits]") {
  KeyedLimiter limiter(2);
  KeyedLimiter::Slot a1 = limiter.TryAcquire("pod a");
  KeyedLimiter::Slot a2 = limiter.TryAcquire("pod a");
  CHECK(a1.held());
  CHECK(a2.held());
  CHECK_FALSE(limiter.TryAcquire("pod a").held());
  CHECK(limiter.TryAcquire("pod b").held());  // another key is not affected
  CHECK(limiter.CountFor("pod a") == 2);
  CHECK(limiter.CountFor("pod b") == 0);  // the temporary gave its unit back
  a1.Reset();
  CHECK(limiter.CountFor("pod a") == 1);
  KeyedLimiter::Slot again = limiter.TryAcquire("pod a");
  CHECK(again.held());
  // A moved slot holds one unit, released once.
  KeyedLimiter::Slot moved = std::move(again);
  CHECK(moved.held());
  CHECK_FALSE(again.held());
  CHECK(limiter.CountFor("pod a") == 2);
  {
    std::vector<KeyedLimiter::Slot> slots;
    slots.push_back(std::move(moved));
    slots.push_back(std::move(a2));
  }
  CHECK(limiter.CountFor("pod a") == 0);
}

}  // namespace sc
