// When an active health check starts: on a grid of the steady clock whose
// step is a fiftieth of the check's interval. The checks due within one
// step start together, in one wake-up of the loop, instead of each in a
// wake-up of its own: with 1000 servers checked every second the loop wakes
// about 50 times a second instead of about 650, and each wake-up cost as
// much as 40 % of a connect check (bench/README.md, check_bench.py; a step
// of a hundredth woke 100 times and cost about 0.5 % of a CPU more). Their
// random first start and the +-10 % jitter of each interval still spread
// them over all the steps: about 2 % of a service's servers per step,
// never all at once.
#pragma once

#include <event2/event.h>

#include <chrono>

#include "fulcrum/duration.hpp"

namespace fulcrum {

// The delay from `now` (steady clock, since its epoch) to the first point
// of the grid of `interval` at or after `now + delay`, rounded up to a
// microsecond. Pure, so that it can be tested on its own.
std::chrono::microseconds delay_to_start_grid(std::chrono::nanoseconds now, Duration delay,
                                              Duration interval);

// Adds `timer` to fire at that point, `delay` from now at the earliest. The
// base should run its timers on the precise clock
// (new_precise_event_base()): on libevent's default coarse one, the timers
// of one point set from different clock ticks fire in different wake-ups.
void add_on_start_grid(event* timer, Duration delay, Duration interval);

}  // namespace fulcrum
