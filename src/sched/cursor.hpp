// A cyclic cursor shared by all workers, for schedulers that walk a fixed
// order (rr over the servers, wrr over its precomputed cycle).
#pragma once

#include <algorithm>
#include <atomic>
#include <optional>
#include <vector>

#include "fulcrum/scheduler.hpp"

namespace fulcrum {

// The usable server found first by a scan of `servers` from `start`, one
// the context does not avoid unless there is no other. The slow path of
// claim_next() and of Maglev's lookup: O(servers).
inline std::optional<uint32_t> scan_usable(const std::vector<SchedServer>& servers, uint64_t start,
                                           const PickContext& context) {
  const size_t n = servers.size();
  std::optional<uint32_t> fallback;
  for (size_t step = 0; step < n; ++step) {
    const auto index = static_cast<uint32_t>((start + step) % n);
    if (!is_usable(servers[index])) continue;
    if (!context.avoids(index)) return index;
    if (!fallback) fallback = index;
  }
  return fallback;
}

// Starting at the cursor, finds the first position of the order whose server
// is usable, preferring servers the context does not avoid, and moves the cursor just past
// that position with one compare-and-swap (retried when another worker moved
// it first). Skipped positions are thus passed over once, not re-dealt to
// the next pick, and the sequence seen by all workers together is exactly the
// order minus the unusable servers. `order[pos]` is a server index.
//
// The walk is bounded by twice the number of servers: servers that are not
// up are dropped from the order when it is rebuilt, so only full servers are
// passed over, and when (nearly) all are full a scan of the servers is
// cheaper than walking a long cycle.
inline std::optional<uint32_t> claim_next(std::atomic<uint64_t>& cursor,
                                          const std::vector<uint32_t>& order,
                                          const std::vector<SchedServer>& servers,
                                          const PickContext& context) {
  const size_t length = order.size();
  if (length == 0) return std::nullopt;
  const uint64_t max_steps = std::min<uint64_t>(length, 2 * servers.size() + 16);
  uint64_t start = cursor.load(std::memory_order_relaxed);
  while (true) {
    std::optional<uint64_t> chosen;
    std::optional<uint64_t> fallback;
    for (uint64_t step = 0; step < max_steps; ++step) {
      const uint32_t index = order[(start + step) % length];
      if (!is_usable(servers[index])) continue;
      if (context.avoids(index)) {
        if (!fallback) fallback = step;
        continue;
      }
      chosen = step;
      break;
    }
    if (!chosen && max_steps < length) return scan_usable(servers, start, context);
    if (!chosen) chosen = fallback;
    if (!chosen) return std::nullopt;
    if (cursor.compare_exchange_weak(start, start + *chosen + 1, std::memory_order_relaxed)) {
      return order[(start + *chosen) % length];
    }
  }
}

}  // namespace fulcrum
