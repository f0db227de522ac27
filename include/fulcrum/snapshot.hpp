// An immutable view of the running configuration: services, their servers,
// their live state and a scheduler each. Workers hold it by shared_ptr; a
// session keeps the snapshot it started with until it ends.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fulcrum/config.hpp"
#include "fulcrum/scheduler.hpp"
#include "fulcrum/server_state.hpp"

namespace fulcrum {

struct ServerRuntime {
  const ServerConfig* config = nullptr;
  std::shared_ptr<ServerState> state;
};

// The servers one scheduler picks from: the service's own (`servers`
// without a route) or those of one sni_routes entry.
struct ServerGroup {
  std::unique_ptr<Scheduler> scheduler;
  std::vector<uint32_t> members;  // the scheduler's indices -> the service's

  // A server of this group, as an index into the service's servers;
  // `context.failed` holds service indices too.
  std::optional<uint32_t> pick(const PickContext& context) const;
};

struct ServiceRuntime {
  const ServiceConfig* config = nullptr;
  std::shared_ptr<ServiceState> state;
  std::vector<ServerRuntime> servers;
  // [0]: the servers without a route; [1 + i]: those of sni_routes[i].
  std::vector<ServerGroup> groups;
};

struct Snapshot {
  Config config;
  uint64_t generation = 1;
  std::vector<ServiceRuntime> services;

  Snapshot() = default;
  // The service that listens on `address`, or nullptr.
  const ServiceRuntime* service_listening_on(const SocketAddress& address) const;
  // A server by service and server name; both null when there is none.
  struct Found {
    const ServiceRuntime* service = nullptr;
    const ServerRuntime* server = nullptr;
  };
  Found find(std::string_view service_name, std::string_view server_name) const;
  Snapshot(const Snapshot&) = delete;  // runtimes point into `config`
  Snapshot& operator=(const Snapshot&) = delete;
};

// Live state by service name and by (service, server) name, kept across
// snapshots so that counters and state survive for what stays. What leaves
// the configuration is forgotten once its last session ends (SPEC.md): added
// again after that, it starts afresh — zero counters, no operator state, up
// (health checks then decide). Added again while sessions of the old one
// still run, it is still the same server and keeps its state, so that its
// active count (and max_connections) stays true. One gap, accepted: a
// client a worker accepts in the moment between a reload and that worker
// taking the new snapshot may still be sent to a server the reload removed
// and just forgot; its counts then go to the forgotten state. Main thread.
class StateRegistry {
 public:
  // The state of this service / server, made when there is none.
  std::shared_ptr<ServiceState> service(const std::string& service_name);
  std::shared_ptr<ServerState> server(const std::string& service_name,
                                      const std::string& server_name);

  // After a reload to `config`: the services and servers it lacks retire,
  // and those without a session are forgotten now.
  void retire_absent(const Config& config);
  // Forgets the retired states whose last session has ended (periodically).
  void forget_idle();
  // How many states are retired but not yet forgotten (tests).
  size_t retired() const { return retired_services_.size() + retired_servers_.size(); }

 private:
  using ServerKey = std::pair<std::string, std::string>;
  std::map<std::string, std::shared_ptr<ServiceState>> services_;
  std::map<ServerKey, std::shared_ptr<ServerState>> servers_;
  std::set<std::string> retired_services_;
  std::set<ServerKey> retired_servers_;
};

// Logs what a reload changed: services added, removed or changed, and per
// service the servers added, removed or changed.
void log_config_changes(const Snapshot& before, const Snapshot& after);

// `workers`: how many worker threads will pick from the schedulers.
std::shared_ptr<const Snapshot> build_snapshot(Config config, uint64_t generation,
                                               StateRegistry& registry, unsigned workers);

}  // namespace fulcrum
