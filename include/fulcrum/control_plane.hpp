// The one owner of live server state (DESIGN.md "Control plane and data
// planes"). Inputs only report facts — the health checks' verdict, the
// operator's request, a new configuration, the passing of time for slow
// start — and the ControlPlane alone turns them into each server's status
// and weight, then tells every data plane in one ChangeSet. It is the only
// code that makes a ServerStateWriter (docs/architecture.md shows the grep).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fulcrum/agent_reply.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/data_plane.hpp"
#include "fulcrum/discovered.hpp"
#include "fulcrum/server_state.hpp"
#include "fulcrum/snapshot.hpp"
#include "fulcrum/upgrade_state.hpp"

namespace fulcrum {

class ControlPlane {
 public:
  // `workers`: how many worker threads pick from the schedulers.
  explicit ControlPlane(unsigned workers) : workers_(workers) {}
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Data planes told about every change, in the order they were added.
  // `plane` must outlive this object. Before the first install().
  void add_data_plane(DataPlane& plane) { planes_.push_back(&plane); }

  // Start-up and reload: builds the snapshot of `config` (generation 1, then
  // one more each time), giving servers that stay their live state; a
  // weight set by the operator ends here (SPEC.md), a drain or maint stays;
  // a server whose service no longer checks health counts as healthy again,
  // and one whose service no longer asks an agent forgets what it said.
  // Settles every server and publishes the whole snapshot. Returns it.
  std::shared_ptr<const Snapshot> install(Config config, SteadyTime now);
  // A reload's configuration, before install(): empty when every data
  // plane can apply it (DataPlane::check, on a snapshot of `config` with
  // every server up, built apart from the live state), else the first
  // refusal. Changes nothing.
  std::string check(const Config& config, SteadyTime now) const;
  // A binary upgrade, in the old image: the live state of every service
  // and server of the snapshot in force (counters, status, operator state
  // and weight, last failure) and what discovery knows, with the
  // generation, into `state`.
  void carry(UpgradeState& state) const;
  // In the new image, before the first install(): takes that state up, so
  // that install() gives it to the servers that are still configured,
  // keeps the operator's weights (no reload happened) and numbers its
  // snapshot generation + 1.
  void adopt(const UpgradeState& state);

  // The snapshot in force (null before the first install()).
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }

  // The health checks' verdict on a server, once rise/fall decided it.
  void report_health(const ServiceRuntime& service, const ServerRuntime& server, bool healthy,
                     SteadyTime now);
  // A health check of `server` failed (an active one, or a session's failed
  // connect counted passively) for `reason`: kept for the operator
  // (/stats health.last_error); decides nothing by itself.
  void report_check_failure(const ServerRuntime& server, std::string reason, SteadyTime now);
  // The agent check's reply (health_check.agent). Its down word takes the
  // server down at once and its up word lets health decide again; its
  // drain and maint apply while the operator's state is ready; its N %
  // scales the file's weight unless the operator set one; its maxconn:N
  // replaces max_connections. Parts it does not mention keep its earlier
  // word.
  void report_agent(const ServiceRuntime& service, const ServerRuntime& server,
                    const AgentReply& reply, std::string line, SteadyTime now);
  // An agent check failed (no connection, no line, words not understood):
  // kept for the operator; the agent's earlier word stays in force.
  void report_agent_failure(const ServerRuntime& server, std::string reason);
  // The operator's request (admin API): a state and/or a weight. A weight
  // lasts until the next reload, a state until it is set again.
  void operator_request(const ServiceRuntime& service, const ServerRuntime& server,
                        std::optional<AdminState> state, std::optional<uint32_t> weight,
                        SteadyTime now);
  // Time passes: servers in slow start get their next weight, departed
  // discovered servers without sessions leave. Called periodically;
  // publishes only the services whose weights moved.
  void tick(SteadyTime now);

  // DNS discovery's word on `service` (discovery.hpp): the servers of a
  // good answer, or none and why it failed (a failed or empty answer keeps
  // the servers known). A changed set builds a new snapshot of the same
  // generation (servers that stay keep their state, the operator's weight
  // included) and hands it to `on_rebuilt`.
  void report_discovery(const std::string& service,
                        std::optional<std::vector<DiscoveredServer>> servers, std::string error,
                        std::chrono::system_clock::time_point at, SteadyTime now);
  // What discovery found for `service` (null: it does not discover).
  const DiscoveryStatus* discovery(const std::string& service) const;
  // Called with each snapshot built by discovery rather than install():
  // the daemon serves it as it serves a reload's.
  void on_rebuilt(std::function<void(const std::shared_ptr<const Snapshot>&)> callback) {
    on_rebuilt_ = std::move(callback);
  }

 private:
  // Recomputes a server's status and weight from its facts; true when
  // either changed.
  static bool settle(const ServerRuntime& server, SteadyTime now);
  // Publishes `services` of the snapshot in force to every data plane.
  void publish(std::vector<const ServiceRuntime*> services);
  // The file's configuration with each service's discovered servers.
  Config with_discovered(Config config) const;
  // Builds and publishes the snapshot of `config`; `reload`: an operator's
  // weight ends (install), else it stays (discovery).
  std::shared_ptr<const Snapshot> build(Config config, uint64_t generation, bool reload,
                                        SteadyTime now);
  // A new snapshot of the file's configuration and what discovery knows.
  void rebuild_discovered(SteadyTime now);

  unsigned workers_;
  StateRegistry registry_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<DataPlane*> planes_;
  Config file_config_;                                // the last installed, before discovery
  std::map<std::string, DiscoveryStatus> discovery_;  // by service name
  std::function<void(const std::shared_ptr<const Snapshot>&)> on_rebuilt_;
  uint64_t adopted_generation_ = 0;  // the upgraded image's, until install()
  bool adopted_ = false;
};

// The weight in force `since_up` after a server came up with `weight` and a
// `slow_start` ramp: linear from 1 to `weight` (0 stays 0). Exposed for tests.
uint32_t slow_start_weight(uint32_t weight, Duration slow_start,
                           std::optional<std::chrono::nanoseconds> since_up);

}  // namespace fulcrum
