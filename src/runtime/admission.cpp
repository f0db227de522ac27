#include "fulcrum/admission.hpp"

#include "fulcrum/stats.hpp"

namespace fulcrum {

namespace {

constexpr int64_t kFdsPerSession = 2;  // client and server sockets

// Increments `counter` unless it has reached `limit` (0 = no limit).
bool take_slot(std::atomic<uint64_t>& counter, uint64_t limit) {
  if (limit == 0) {
    counter.fetch_add(1);
    return true;
  }
  uint64_t current = counter.load();
  while (current < limit) {
    if (counter.compare_exchange_weak(current, current + 1)) return true;
  }
  return false;
}

}  // namespace

Admission::Admission(uint64_t max_sessions, int64_t fd_budget)
    : max_sessions_(max_sessions), fds_(fd_budget) {}

bool Admission::try_admit(ServiceState& service, uint64_t service_limit) {
  if (!try_take_fds(kFdsPerSession)) return false;
  // A rollback is a release like any other: a listener that failed while
  // we held the slot may be paused waiting for it.
  if (!take_slot(sessions_, max_sessions_.load())) {
    give_fds(kFdsPerSession);
    return false;
  }
  if (!take_slot(service.active, service_limit)) {
    sessions_.fetch_sub(1);
    give_fds(kFdsPerSession);
    return false;
  }
  return true;
}

void Admission::admit_carried(ServiceState& service) {
  fds_.fetch_sub(kFdsPerSession);
  sessions_.fetch_add(1);
  service.active.fetch_add(1);
}

void Admission::release(ServiceState& service) {
  service.active.fetch_sub(1);
  sessions_.fetch_sub(1);
  fds_.fetch_add(kFdsPerSession);
  wake_paused();
}

bool Admission::try_take_fds(int64_t count) {
  int64_t current = fds_.load();
  while (current >= count) {
    if (fds_.compare_exchange_weak(current, current - count)) return true;
  }
  return false;
}

void Admission::give_fds(int64_t count) {
  fds_.fetch_add(count);
  wake_paused();
}

bool Admission::would_admit(const ServiceState& service, uint64_t service_limit) const {
  if (fds_.load() < kFdsPerSession) return false;
  if (const uint64_t max = max_sessions_.load(); max != 0 && sessions_.load() >= max) return false;
  return service_limit == 0 || service.active.load() < service_limit;
}

void Admission::wake_paused() {
  // Sequentially consistent with add_paused() + would_admit() in the
  // listener: either we see its registration or it sees our release.
  if (paused_.load() > 0 && waker_) waker_();
}

int64_t listening_fds(const Config& config, unsigned workers) {
  int64_t count = config.stats.enabled ? 1 : 0;
  for (const ServiceConfig& service : config.services) {
    if (!in_kernel(service.forwarding))
      count += static_cast<int64_t>(service.listen.size() * workers);
  }
  return count;
}

int64_t fds_outside_sessions(const Config& config, unsigned workers) {
  constexpr int64_t kMargin = 8;
  int64_t count = kMargin + listening_fds(config, workers);
  for (const ServiceConfig& service : config.services) {
    // One socket per checked server, one more where an agent is asked.
    if (!service.health_check.enabled) continue;
    const int64_t per_server = service.health_check.agent ? 2 : 1;
    count += per_server * static_cast<int64_t>(service.servers.size());
  }
  if (config.stats.enabled) count += static_cast<int64_t>(kMaxStatsConnections);
  return count;
}

}  // namespace fulcrum
