// A cyclic cursor shared by all workers, for schedulers that walk a fixed
// order (rr over the servers, wrr over its smooth cycle).
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
// order minus the unusable servers. `order.length()` is the length of the
// order and `order.server_at(c)` the server index at cursor value c (the
// order takes it modulo its length).
//
// The walk is bounded by twice the number of servers: servers that are not
// up are dropped from the order when it is rebuilt, so only full servers are
// passed over, and when (nearly) all are full a scan of the servers is
// cheaper than walking a long cycle.
//
// The cursor is read with acquire and moved with release: a worker whose
// cursor passed positions that another worker read sees whatever that
// worker stored to read them (wrr computes its cycle as the workers reach
// it). On x86 these are the same instructions as relaxed ones.
template <typename Order>
std::optional<uint32_t> claim_next(std::atomic<uint64_t>& cursor, const Order& order,
                                   const std::vector<SchedServer>& servers,
                                   const PickContext& context) {
  const uint64_t length = order.length();
  if (length == 0) return std::nullopt;
  const uint64_t max_steps = std::min<uint64_t>(length, 2 * servers.size() + 16);
  // A position of the order and the server there.
  struct Found {
    uint64_t step;
    uint32_t index;
  };
  uint64_t start = cursor.load(std::memory_order_acquire);
  while (true) {
    std::optional<Found> chosen;
    std::optional<Found> fallback;
    for (uint64_t step = 0; step < max_steps; ++step) {
      const uint32_t index = order.server_at(start + step);
      if (!is_usable(servers[index])) continue;
      if (context.avoids(index)) {
        if (!fallback) fallback = Found{step, index};
        continue;
      }
      chosen = Found{step, index};
      break;
    }
    if (!chosen && max_steps < length) return scan_usable(servers, start, context);
    if (!chosen) chosen = fallback;
    if (!chosen) return std::nullopt;
    if (cursor.compare_exchange_weak(start, start + chosen->step + 1, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
      return chosen->index;
    }
  }
}

// rr's order: a list of server indices walked in turn.
struct IndexOrder {
  const std::vector<uint32_t>& indices;
  uint64_t length() const { return indices.size(); }
  uint32_t server_at(uint64_t cursor) const { return indices[cursor % indices.size()]; }
};

inline std::optional<uint32_t> claim_next(std::atomic<uint64_t>& cursor,
                                          const std::vector<uint32_t>& order,
                                          const std::vector<SchedServer>& servers,
                                          const PickContext& context) {
  return claim_next(cursor, IndexOrder{order}, servers, context);
}

}  // namespace fulcrum
