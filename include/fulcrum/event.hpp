// RAII owners for libevent objects.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <memory>

namespace fulcrum {

struct EventFree {
  void operator()(event* ev) const { event_free(ev); }
};
struct EventBaseFree {
  void operator()(event_base* base) const { event_base_free(base); }
};

using EventPtr = std::unique_ptr<event, EventFree>;
using EventBasePtr = std::unique_ptr<event_base, EventBaseFree>;

inline timeval to_timeval(std::chrono::milliseconds d) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(d.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
  return tv;
}

// An event base whose timers run on CLOCK_MONOTONIC. libevent's default on
// Linux is CLOCK_MONOTONIC_COARSE, which moves in ticks of 1 to 4 ms: timers
// set for the same moment from different ticks then fire in different
// wake-ups, and each tick is waited for in wake-ups of 1 ms. The daemon's
// main loop needs the precise clock for the health checks' start grid
// (src/health/start_grid.hpp). With epoll it costs one descriptor (the
// timerfd libevent sleeps on, there before the session budget is counted)
// and a timerfd_settime per loop iteration that waits for a timer.
inline EventBasePtr new_precise_event_base() {
  event_config* config = event_config_new();
  if (config == nullptr) return nullptr;
  event_config_set_flag(config, EVENT_BASE_FLAG_PRECISE_TIMER);
  EventBasePtr base(event_base_new_with_config(config));
  event_config_free(config);
  return base;
}

// Adds `ev` with a timeout.
inline void add_with_timeout(event* ev, std::chrono::milliseconds d) {
  timeval tv = to_timeval(d);
  event_add(ev, &tv);
}

}  // namespace fulcrum
