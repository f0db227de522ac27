#include "fulcrum/server_state.hpp"

#include <utility>

namespace fulcrum {

bool ServerState::try_acquire() {
  const uint32_t max_connections = max_connections_.load(std::memory_order_relaxed);
  bool taken = false;
  if (max_connections == 0) {
    active.fetch_add(1, std::memory_order_relaxed);
    taken = true;
  } else {
    uint32_t current = active.load(std::memory_order_relaxed);
    while (!taken && current < max_connections)
      taken = active.compare_exchange_weak(current, current + 1, std::memory_order_relaxed);
  }
  if (LoadIndex* index = load_index_.load(std::memory_order_acquire); taken && index != nullptr)
    index->changed(this);
  return taken;
}

void ServerState::acquire_carried() {
  active.fetch_add(1, std::memory_order_relaxed);
  if (LoadIndex* index = load_index_.load(std::memory_order_acquire)) index->changed(this);
}

void ServerState::release() {
  active.fetch_sub(1, std::memory_order_relaxed);
  if (LoadIndex* index = load_index_.load(std::memory_order_acquire)) index->changed(this);
}

std::string_view to_string(ServerStatus status) {
  switch (status) {
    case ServerStatus::up: return "up";
    case ServerStatus::down: return "down";
    case ServerStatus::drain: return "drain";
    case ServerStatus::maint: return "maint";
  }
  return "down";
}

std::string_view to_string(AdminState admin) {
  switch (admin) {
    case AdminState::ready: return "ready";
    case AdminState::drain: return "drain";
    case AdminState::maint: return "maint";
  }
  return "ready";
}

namespace {

int64_t nanoseconds_of(SteadyTime time) {
  const int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
  // 0 means "never" in the state's time fields: never store it for a real moment.
  return ns == 0 ? 1 : ns;
}

}  // namespace

void ServerStateWriter::mark_configured(SteadyTime now) {
  if (state_.last_change_ns_.load(std::memory_order_relaxed) == 0)
    state_.last_change_ns_.store(nanoseconds_of(now), std::memory_order_relaxed);
}

bool ServerStateWriter::set_status(ServerStatus next, SteadyTime now) {
  const ServerStatus previous = state_.status_.exchange(next, std::memory_order_relaxed);
  if (previous == next) return false;
  const int64_t ns = nanoseconds_of(now);
  state_.last_change_ns_.store(ns, std::memory_order_relaxed);
  if (next == ServerStatus::up) state_.up_since_ns_.store(ns, std::memory_order_relaxed);
  return true;
}

void ServerStateWriter::carry_over(ServerStatus status, int64_t up_since_ns, int64_t last_change_ns,
                                   std::string last_error, int64_t last_error_ns) {
  state_.status_.store(status, std::memory_order_relaxed);
  state_.up_since_ns_.store(up_since_ns, std::memory_order_relaxed);
  state_.last_change_ns_.store(last_change_ns, std::memory_order_relaxed);
  state_.last_error_ = std::move(last_error);
  state_.last_error_ns_ = last_error_ns;
}

void ServerStateWriter::set_last_error(std::string reason, SteadyTime now) {
  state_.last_error_ = std::move(reason);
  state_.last_error_ns_ = nanoseconds_of(now);
}

}  // namespace fulcrum
