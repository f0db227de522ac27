#include "fulcrum/snapshot.hpp"

namespace fulcrum {

std::shared_ptr<ServiceState> StateRegistry::service(const std::string& service_name) {
  auto& slot = services_[service_name];
  if (!slot) slot = std::make_shared<ServiceState>();
  return slot;
}

std::shared_ptr<ServerState> StateRegistry::server(const std::string& service_name,
                                                   const std::string& server_name) {
  auto& slot = servers_[{service_name, server_name}];
  if (!slot) slot = std::make_shared<ServerState>();
  return slot;
}

const ServiceRuntime* Snapshot::service_listening_on(const SocketAddress& address) const {
  for (const auto& service : services) {
    for (const auto& listen : service.config->listen) {
      if (listen == address) return &service;
    }
  }
  return nullptr;
}

Snapshot::Found Snapshot::find(std::string_view service_name, std::string_view server_name) const {
  for (const auto& service : services) {
    if (service.config->name != service_name) continue;
    for (const auto& server : service.servers) {
      if (server.config->name == server_name) return {&service, &server};
    }
  }
  return {};
}

std::shared_ptr<const Snapshot> build_snapshot(Config config, uint64_t generation,
                                               StateRegistry& registry, unsigned workers) {
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->config = std::move(config);
  snapshot->generation = generation;
  for (const auto& service_config : snapshot->config.services) {
    ServiceRuntime service;
    service.config = &service_config;
    service.state = registry.service(service_config.name);
    std::vector<SchedServer> sched_servers;
    for (const auto& server_config : service_config.servers) {
      ServerRuntime server{&server_config,
                           registry.server(service_config.name, server_config.name)};
      sched_servers.push_back(SchedServer{server_config.name, server_config.max_connections,
                                          server_config.backup, server.state.get()});
      service.servers.push_back(std::move(server));
    }
    const SchedulerOptions options{service_config.scheduler, service_config.hash_key, workers};
    service.scheduler = make_scheduler(options, std::move(sched_servers));
    snapshot->services.push_back(std::move(service));
  }
  return snapshot;
}

}  // namespace fulcrum
