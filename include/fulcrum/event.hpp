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

// Adds `ev` with a timeout.
inline void add_with_timeout(event* ev, std::chrono::milliseconds d) {
  timeval tv = to_timeval(d);
  event_add(ev, &tv);
}

}  // namespace fulcrum
