// The health checks' start grid: a check starts at the first point of its
// grid (steps of a fiftieth of its interval) at or after it is due, so that
// the checks due within one step start in one wake-up of the loop.
#include <doctest/doctest.h>

#include <chrono>

#include "../../src/health/start_grid.hpp"

using fulcrum::delay_to_start_grid;
using fulcrum::Duration;
using std::chrono::microseconds;
using std::chrono::nanoseconds;

TEST_CASE("a check starts at the next point of a grid of a fiftieth of its interval") {
  // Interval 1 s: steps of 20 ms. Due at 1.123456789 s: starts at 1.140 s,
  // 16.543211 ms later than due, rounded up to the microsecond.
  CHECK(delay_to_start_grid(nanoseconds(123456789), Duration(1000), Duration(1000)) ==
        microseconds(1016544));
  // Interval 2 s (steps of 40 ms), due at 5.000001 s: at 5.040 s.
  CHECK(delay_to_start_grid(nanoseconds(3000001000), Duration(2000), Duration(2000)) ==
        microseconds(2039999));
}

TEST_CASE("a check due on a point of its grid starts when due") {
  CHECK(delay_to_start_grid(nanoseconds(40000000), Duration(960), Duration(1000)) ==
        microseconds(960000));
  CHECK(delay_to_start_grid(nanoseconds(0), Duration(0), Duration(1000)) == microseconds(0));
}

TEST_CASE("checks due within one step start together, the next step's apart") {
  const Duration interval(1000);
  // Due at 7.2001 s, 7.2100 s and 7.219999 s: all at 7.220 s.
  const nanoseconds first = nanoseconds(6200100000) +
                            delay_to_start_grid(nanoseconds(6200100000), Duration(1000), interval);
  const nanoseconds second = nanoseconds(6210000000) +
                             delay_to_start_grid(nanoseconds(6210000000), Duration(1000), interval);
  const nanoseconds third = nanoseconds(6719999000) +
                            delay_to_start_grid(nanoseconds(6719999000), Duration(500), interval);
  CHECK(first == nanoseconds(7220000000));
  CHECK(second == nanoseconds(7220000000));
  CHECK(third == nanoseconds(7220000000));
  // Due at 7.220001 s: the next point, 7.240 s.
  CHECK(nanoseconds(6220001000) +
            delay_to_start_grid(nanoseconds(6220001000), Duration(1000), interval) ==
        nanoseconds(7240000000));
}

TEST_CASE("whatever the clock reads, the start is on the grid, at most one step late") {
  const Duration interval(300);  // steps of 6 ms
  for (int64_t now = 0; now < 20000000; now += 999983) {
    const microseconds wait = delay_to_start_grid(nanoseconds(now), Duration(270), interval);
    const int64_t start = now + nanoseconds(wait).count();
    CAPTURE(now);
    CHECK(wait >= Duration(270));
    CHECK(wait < Duration(270) + microseconds(6001));
    // On the grid, or at most the microsecond of rounding up after it.
    CHECK(start % 6000000 < 1000);
  }
}
