// The live part of a service and of a server: state and counters shared by
// all workers. Owned outside snapshots (by shared_ptr) so that a reload can
// hand the same state to the servers that stay.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace fulcrum {

// What the schedulers look at: up takes new sessions; down (health checks
// failing), drain and maint (set by an operator) do not. Sessions already
// running continue in every state.
enum class ServerStatus : uint8_t { up, down, drain, maint };

// The operator's setting (admin API), kept across reloads for servers that
// stay: ready lets health decide, drain and maint take the server out.
enum class AdminState : uint8_t { ready, drain, maint };

// Counters written by workers with relaxed atomics; each instance sits on its
// own cache line so that servers never false-share.
struct alignas(64) ServerState {
  std::atomic<ServerStatus> status{ServerStatus::up};
  std::atomic<AdminState> admin{AdminState::ready};
  std::atomic<bool> healthy{true};  // the health checker's verdict
  // A weight set through the admin API (lasts until the next reload), or -1.
  std::atomic<int32_t> weight_override{-1};

  // The weight in force: the admin API's, else `configured`.
  uint32_t weight(uint32_t configured) const {
    const int32_t set = weight_override.load(std::memory_order_relaxed);
    return set >= 0 ? static_cast<uint32_t>(set) : configured;
  }
  std::atomic<uint32_t> active{0};
  std::atomic<uint64_t> total{0};
  std::atomic<uint64_t> connect_failures{0};
  std::atomic<uint64_t> connects{0};         // successful connects
  std::atomic<uint64_t> connect_time_us{0};  // their total duration
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  // When the server last came up (steady clock, ns since its epoch); 0 when it
  // has been up since start-up. Slow start ramps its weight from this moment.
  std::atomic<int64_t> up_since_ns{0};
  // When the status last changed (steady clock ns; 0 = never since start-up).
  std::atomic<int64_t> last_change_ns{0};
  // Failed health checks, active and passive, since start-up.
  std::atomic<uint64_t> checks_failed{0};
  // Failed connects of real sessions not yet counted by the health checker
  // (written by workers, drained by the main thread), and the last error.
  std::atomic<uint32_t> passive_failures{0};
  std::atomic<int> passive_error{0};
  // Connects to the server (sessions' and health checks') that failed for
  // want of fulcrum's own resources (is_local_error), and sessions whose
  // relay failed that way: fulcrum's failures, so never in
  // connect_failures, passive_failures or checks_failed.
  std::atomic<uint64_t> local_errors{0};

  // Sets the status; a change to up from any other status starts slow start.
  // Returns true when the status changed. Main thread.
  bool set_status(ServerStatus next, std::chrono::steady_clock::time_point now);
  // Derives the status from `admin` and `healthy` (maint and drain win over
  // health); returns true when it changed. Main thread.
  bool update_status(std::chrono::steady_clock::time_point now);

  // Takes one active slot unless the server is at `max_connections`
  // (0 = unlimited). Lock free; safe from any worker.
  bool try_acquire(uint32_t max_connections);
  void release() { active.fetch_sub(1, std::memory_order_relaxed); }
};

struct alignas(64) ServiceState {
  std::atomic<uint64_t> active{0};
  std::atomic<uint64_t> total{0};
  std::atomic<uint64_t> rejected{0};  // sessions closed without a server: no_server, connect_failed
  std::atomic<uint64_t> proxy_header_errors{0};  // clients closed for a missing or bad PROXY header
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  // The service's sessions' local errors (ServerState::local_errors without
  // the health checks'), each attempt counted, also those then retried.
  std::atomic<uint64_t> local_errors{0};
};

}  // namespace fulcrum
