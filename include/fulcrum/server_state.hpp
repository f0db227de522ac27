// The live part of a service and of a server: state and counters shared by
// all workers. Owned outside snapshots (by shared_ptr) so that a reload can
// hand the same state to the servers that stay.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fulcrum/load_index.hpp"
#include "fulcrum/source_table.hpp"

namespace fulcrum {

using SteadyTime = std::chrono::steady_clock::time_point;

// What the schedulers look at: up takes new sessions; down (health checks
// failing), drain and maint (set by an operator) do not. Sessions already
// running continue in every state.
enum class ServerStatus : uint8_t { up, down, drain, maint };
// "up", "down", "drain", "maint": the names /stats and the logs use.
std::string_view to_string(ServerStatus status);

// The operator's setting (admin API), kept across reloads for servers that
// stay: ready lets health decide, drain and maint take the server out.
enum class AdminState : uint8_t { ready, drain, maint };
// "ready", "drain", "maint": the names of the admin API, /stats and the logs.
std::string_view to_string(AdminState admin);

class ServerStateWriter;

// What the agent check (`health_check.agent`) last said of a server: facts
// the control plane weighs with the health checks' verdict and the
// operator's wishes. Each part keeps the agent's last word on it.
struct AgentView {
  bool says_down = false;  // its last up/down word was down
  // "agent says down", with the agent's text after `#` when it gave one.
  std::string down_reason;
  AdminState admin = AdminState::ready;     // its last ready/drain/maint
  std::optional<uint32_t> weight_percent;   // its last N%
  std::optional<uint32_t> max_connections;  // its last maxconn:N
  std::string reply;                        // its last reply line (empty: none yet)
  int64_t reply_ns = 0;                     // when it came (steady clock ns)
  // Why the last agent check failed (empty once it answers). It changes
  // nothing: as in HAProxy, reaching the server is the health check's job.
  std::string error;
};

// One server's live state. Two parts on separate cache lines:
//  - what the control plane decided (status, weights, the facts they come
//    from): read by every worker's scheduler on every pick, written only
//    through a ServerStateWriter, which only the ControlPlane makes (and the
//    scheduler unit tests);
//  - counters every session writes with relaxed atomics.
// Keeping them apart means a busy server's counters never invalidate the
// line the schedulers read (ServerStatePadding in the unit tests checks it).
struct alignas(64) ServerState {
  // ---- decided by the control plane (main thread), read-mostly
  ServerStatus status() const { return status_.load(std::memory_order_relaxed); }
  AdminState admin() const { return admin_.load(std::memory_order_relaxed); }
  // The health checks' verdict (true without checks).
  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }
  // The weight the operator (admin API, until the next reload) or else the
  // configuration file gives the server; 0 drains it.
  uint32_t assigned_weight() const { return assigned_weight_.load(std::memory_order_relaxed); }
  // The weight in force for new sessions, which schedulers use: 0 unless
  // the status is up, else the assigned one, ramped during slow start.
  uint32_t weight() const { return weight_.load(std::memory_order_relaxed); }
  // The session limit in force: the agent's maxconn:N, else the file's
  // max_connections (0 = unlimited).
  uint32_t max_connections() const { return max_connections_.load(std::memory_order_relaxed); }
  // When the server last came up (steady clock ns since its epoch); 0 when
  // it has been up since it was first configured (no slow start then).
  int64_t up_since_ns() const { return up_since_ns_.load(std::memory_order_relaxed); }
  // When the status last changed, or the server entered the configuration
  // (steady clock ns).
  int64_t last_change_ns() const { return last_change_ns_.load(std::memory_order_relaxed); }
  // The reason of the last failed health check, active or passive (empty:
  // none yet), and when it failed (steady clock ns). Main thread only.
  const std::string& last_error() const { return last_error_; }
  int64_t last_error_ns() const { return last_error_ns_; }
  // The agent check's word on the server. Main thread only.
  const AgentView& agent() const { return agent_; }
  // True while the assigned weight is the operator's (admin API), which the
  // agent's N% does not override. Main thread only.
  bool weight_by_operator() const { return weight_by_operator_; }

  // Takes one active slot unless the server is at max_connections(), and
  // gives it back. Safe from any worker; lock free unless the server is in
  // an lc/wlc scheduler's LoadIndex, which they tell.
  bool try_acquire();
  void release();
  // A session carried over by a binary upgrade takes its slot back,
  // whatever the limit (it is connected already).
  void acquire_carried();

 private:
  friend class ServerStateWriter;
  friend class LoadIndex;
  // The index of the lc/wlc schedulers that hold the server (set by the
  // index; null for the other schedulers). Not part of the state proper.
  mutable std::atomic<LoadIndex*> load_index_{nullptr};
  // Its slot in that index (UINT32_MAX: none); read and written under the
  // index's lock only.
  mutable uint32_t load_slot_ = UINT32_MAX;
  std::atomic<ServerStatus> status_{ServerStatus::up};
  std::atomic<AdminState> admin_{AdminState::ready};
  std::atomic<bool> healthy_{true};
  std::atomic<uint32_t> assigned_weight_{1};
  std::atomic<uint32_t> weight_{1};
  std::atomic<uint32_t> max_connections_{0};
  std::atomic<int64_t> up_since_ns_{0};
  std::atomic<int64_t> last_change_ns_{0};

 public:
  // ---- counters, written by every session (own cache line from here on)
  alignas(64) std::atomic<uint32_t> active{0};
  std::atomic<uint64_t> total{0};
  std::atomic<uint64_t> connect_failures{0};
  std::atomic<uint64_t> connects{0};         // successful connects
  std::atomic<uint64_t> connect_time_us{0};  // their total duration
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
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
  // Relaying sessions reset because the server was marked down in a
  // service with on_server_down: close.
  std::atomic<uint64_t> closed_on_down{0};
  // Kernel modes only (read from nft counters): packets from clients and
  // to them. For them, `active` is the server's flows in conntrack.
  std::atomic<uint64_t> packets_in{0};
  std::atomic<uint64_t> packets_out{0};

 private:
  // ---- for the operator, main thread only (own cache line: written on
  // failures, never beside what the workers write)
  alignas(64) std::string last_error_;
  int64_t last_error_ns_ = 0;
  AgentView agent_;
  bool weight_by_operator_ = false;
};

// The only way to change what ServerState's first part holds. Made by the
// ControlPlane, the one writer of server state (docs/architecture.md), and by
// unit tests that set up a scheduler's view directly. Main thread.
class ServerStateWriter {
 public:
  explicit ServerStateWriter(ServerState& state) : state_(state) {}

  // Sets the status; a change to up from any other status restarts slow
  // start. Returns true when the status changed.
  bool set_status(ServerStatus next, SteadyTime now);
  // Starts the clock of last_change_ns for a state new to the
  // configuration (start-up, or a server a reload adds); no-op afterwards.
  void mark_configured(SteadyTime now);
  void set_admin(AdminState admin) { state_.admin_.store(admin, std::memory_order_relaxed); }
  void set_healthy(bool healthy) { state_.healthy_.store(healthy, std::memory_order_relaxed); }
  void set_assigned_weight(uint32_t weight) {
    state_.assigned_weight_.store(weight, std::memory_order_relaxed);
  }
  // Returns true when the weight in force changed.
  bool set_weight(uint32_t weight) {
    return state_.weight_.exchange(weight, std::memory_order_relaxed) != weight;
  }
  // Returns true when the limit in force changed.
  bool set_max_connections(uint32_t limit) {
    return state_.max_connections_.exchange(limit, std::memory_order_relaxed) != limit;
  }
  void set_last_error(std::string reason, SteadyTime now);
  // A binary upgrade brings the state as the old image left it: status and
  // its clocks, the last failure, exactly (steady clock ns).
  void carry_over(ServerStatus status, int64_t up_since_ns, int64_t last_change_ns,
                  std::string last_error, int64_t last_error_ns);
  void set_weight_by_operator(bool by_operator) { state_.weight_by_operator_ = by_operator; }
  AgentView& agent() { return state_.agent_; }

 private:
  ServerState& state_;
};

struct alignas(64) ServiceState {
  std::atomic<uint64_t> active{0};
  std::atomic<uint64_t> total{0};
  // Sessions no server could take: ends no_server, connect_failed, local_error.
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> proxy_header_errors{0};  // clients closed for a missing or bad PROXY header
  // Clients closed at once (SPEC.md "At the edge"): by allow/deny or as
  // untrusted PROXY senders, and by source_limits.
  std::atomic<uint64_t> denied{0};
  std::atomic<uint64_t> limited{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  // The service's sessions' local errors (ServerState::local_errors without
  // the health checks'), each attempt counted, also those then retried.
  std::atomic<uint64_t> local_errors{0};
  // Kernel modes only, as ServerState's.
  std::atomic<uint64_t> packets_in{0};
  std::atomic<uint64_t> packets_out{0};
  // dsr only: packets forwarded while the flow memory had no room for
  // their flow (dsr.flows).
  std::atomic<uint64_t> packets_not_remembered{0};
  // source_limits' clients, kept across reloads with the counters.
  SourceTable sources;
  // lc and wlc: the servers by load, for every scheduler of the service.
  LoadIndex load_index;
};

}  // namespace fulcrum
