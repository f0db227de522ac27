// Admission of new sessions, process wide: the global max_connections, each
// service's max_connections, and a budget of file descriptors under
// RLIMIT_NOFILE. A listener takes a ticket *before* accept(), so a client
// fulcrum cannot serve yet stays in the kernel backlog instead of being
// accepted and dropped.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "fulcrum/server_state.hpp"
#include "fulcrum/snapshot.hpp"

namespace fulcrum {

class Admission {
 public:
  // `fd_budget`: descriptors sessions may hold in total (sockets and pipes).
  Admission(uint64_t max_sessions, int64_t fd_budget);

  // Called after a release while some listener is paused, to wake it. Set
  // once before the workers start.
  void set_waker(std::function<void()> waker) { waker_ = std::move(waker); }

  // Takes a global session slot, a slot of `service` (limit 0 = none) and the
  // two descriptors of a session. All or nothing.
  bool try_admit(ServiceState& service, uint64_t service_limit);
  void release(ServiceState& service);
  // A session carried over by a binary upgrade: counted like an admitted
  // one (slots and two descriptors), whatever the limits.
  void admit_carried(ServiceState& service);
  // Descriptors a carried session brings besides its sockets (its pipes),
  // whatever the budget.
  void take_carried_fds(int64_t count) { fds_.fetch_sub(count); }

  // Extra descriptors (pipes) while a session runs.
  bool try_take_fds(int64_t count);
  void give_fds(int64_t count);
  // Descriptors held outside sessions grew (a reload added listeners or
  // health-checked servers: `count` > 0) or shrank. The budget may go below
  // zero: then no session is admitted until enough have ended.
  void reserve_fds(int64_t count) {
    fds_.fetch_sub(count);
    if (count < 0) wake_paused();
  }

  // A listener that could not admit registers as paused, then re-checks
  // `would_admit` (so a release racing with the pause is never missed).
  void add_paused() { paused_.fetch_add(1); }
  void remove_paused() { paused_.fetch_sub(1); }
  bool would_admit(const ServiceState& service, uint64_t service_limit) const;

  // A reload may change global.max_connections.
  void set_max_sessions(uint64_t max_sessions) {
    max_sessions_.store(max_sessions);
    wake_paused();
  }

  uint64_t active_sessions() const { return sessions_.load(std::memory_order_relaxed); }
  int64_t free_fds() const { return fds_.load(std::memory_order_relaxed); }

 private:
  void wake_paused();

  std::atomic<uint64_t> max_sessions_;
  std::atomic<uint64_t> sessions_{0};
  std::atomic<int64_t> fds_;
  std::atomic<int> paused_{0};
  std::function<void()> waker_;
};

// Listening sockets of `config`: one per worker and address, and the stats
// port's.
int64_t listening_fds(const Config& config, unsigned workers);

// Descriptors fulcrum may hold outside sessions while serving `config`
// with `workers` workers: the listening sockets (one per worker and
// address), one per health-checked server (a check in flight), the stats
// port and its clients (kMaxStatsConnections), and a margin for the
// rest (the log, a reload resolving names). Kept out of the session
// budget, so that at the file limit health checks and the stats port still
// work.
int64_t fds_outside_sessions(const Config& config, unsigned workers);

}  // namespace fulcrum
