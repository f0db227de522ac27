#include "fulcrum/server_state.hpp"

#include <utility>

namespace fulcrum {

bool ServerState::try_acquire(uint32_t max_connections) {
  if (max_connections == 0) {
    active.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  uint32_t current = active.load(std::memory_order_relaxed);
  while (current < max_connections) {
    if (active.compare_exchange_weak(current, current + 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

bool ServerStateWriter::set_status(ServerStatus next, SteadyTime now) {
  const ServerStatus previous = state_.status_.exchange(next, std::memory_order_relaxed);
  if (previous == next) return false;
  const int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  state_.last_change_ns_.store(ns, std::memory_order_relaxed);
  // 0 means "up since first configured": never store it for a real moment.
  if (next == ServerStatus::up)
    state_.up_since_ns_.store(ns == 0 ? 1 : ns, std::memory_order_relaxed);
  return true;
}

void ServerStateWriter::set_last_error(std::string reason, SteadyTime now) {
  state_.last_error_ = std::move(reason);
  state_.last_error_ns_ =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
}

}  // namespace fulcrum
