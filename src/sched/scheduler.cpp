#include "fulcrum/scheduler.hpp"

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

bool is_usable(const SchedServer& server) {
  if (server.weight == 0) return false;
  if (server.state->status.load(std::memory_order_relaxed) != ServerStatus::up) return false;
  return server.max_connections == 0 ||
         server.state->active.load(std::memory_order_relaxed) < server.max_connections;
}

std::unique_ptr<Scheduler> make_scheduler(SchedulerKind kind, std::vector<SchedServer> servers) {
  switch (kind) {
    case SchedulerKind::rr: return make_rr_scheduler(std::move(servers));
    case SchedulerKind::wrr: return make_wrr_scheduler(std::move(servers));
    default: return nullptr;
  }
}

}  // namespace fulcrum
