#include "fulcrum/random.hpp"

#include <chrono>
#include <cstdint>

namespace fulcrum {

uint64_t thread_random() {
  // splitmix64 over a per-thread counter seeded from the thread's own
  // address and the clock: no shared state, different in every thread.
  thread_local uint64_t state =
      reinterpret_cast<uintptr_t>(&state) ^
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace fulcrum
