// Cheap random numbers for scheduling decisions and jitter: a per-thread
// generator (splitmix64), seeded differently in each thread, no shared state.
#pragma once

#include <cstdint>

namespace fulcrum {

uint64_t thread_random();

// A uniform value in [low, high] (high >= low).
inline double thread_random_between(double low, double high) {
  return low + (high - low) * static_cast<double>(thread_random() >> 11) * 0x1.0p-53;
}

}  // namespace fulcrum
