#include "start_grid.hpp"

namespace fulcrum {

std::chrono::microseconds delay_to_start_grid(std::chrono::nanoseconds now, Duration delay,
                                              Duration interval) {
  using std::chrono::nanoseconds;
  const nanoseconds step = nanoseconds(interval) / 50;
  const nanoseconds due = now + delay;
  nanoseconds start = due;
  if (step > nanoseconds::zero() && due % step != nanoseconds::zero())
    start = due - due % step + step;
  // Rounded up: the timer must not fire before the grid's point.
  return std::chrono::ceil<std::chrono::microseconds>(start - now);
}

void add_on_start_grid(event* timer, Duration delay, Duration interval) {
  const std::chrono::microseconds wait =
      delay_to_start_grid(std::chrono::steady_clock::now().time_since_epoch(), delay, interval);
  const timeval tv{static_cast<time_t>(wait.count() / 1000000),
                   static_cast<suseconds_t>(wait.count() % 1000000)};
  event_add(timer, &tv);
}

}  // namespace fulcrum
