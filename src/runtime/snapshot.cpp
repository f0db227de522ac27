#include "fulcrum/snapshot.hpp"

namespace fulcrum {

std::shared_ptr<ServiceState> StateRegistry::service(const std::string& service_name) {
  retired_services_.erase(service_name);
  auto& slot = services_[service_name];
  if (!slot) slot = std::make_shared<ServiceState>();
  return slot;
}

std::shared_ptr<ServerState> StateRegistry::server(const std::string& service_name,
                                                   const std::string& server_name) {
  ServerKey key{service_name, server_name};
  retired_servers_.erase(key);
  auto& slot = servers_[std::move(key)];
  if (!slot) slot = std::make_shared<ServerState>();
  return slot;
}

void StateRegistry::retire_absent(const Config& config) {
  std::set<std::string> services;
  std::set<ServerKey> servers;
  for (const ServiceConfig& service : config.services) {
    services.insert(service.name);
    for (const ServerConfig& server : service.servers) servers.insert({service.name, server.name});
  }
  for (const auto& [name, state] : services_) {
    if (!services.contains(name)) retired_services_.insert(name);
  }
  for (const auto& [key, state] : servers_) {
    if (!servers.contains(key)) retired_servers_.insert(key);
  }
  forget_idle();
}

void StateRegistry::forget_idle() {
  std::erase_if(retired_services_, [this](const std::string& name) {
    const auto found = services_.find(name);
    if (found->second->active.load(std::memory_order_relaxed) != 0) return false;
    services_.erase(found);
    return true;
  });
  std::erase_if(retired_servers_, [this](const ServerKey& key) {
    const auto found = servers_.find(key);
    if (found->second->active.load(std::memory_order_relaxed) != 0) return false;
    servers_.erase(found);
    return true;
  });
}

const ServiceRuntime* Snapshot::service_listening_on(const SocketAddress& address) const {
  for (const auto& service : services) {
    if (in_kernel(service.config->forwarding)) continue;
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

std::optional<uint32_t> ServerGroup::pick(const PickContext& context) const {
  std::vector<uint32_t> failed;
  for (uint32_t i = 0; i < members.size(); ++i) {
    if (context.avoids(members[i])) failed.push_back(i);
  }
  PickContext inner = context;
  inner.failed = failed;
  const std::optional<uint32_t> picked = scheduler->pick(inner);
  if (!picked) return std::nullopt;
  return members[*picked];
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
    const size_t group_count = 1 + service_config.sni_routes.size();
    std::vector<std::vector<SchedServer>> sched_servers(group_count);
    service.groups.resize(group_count);
    for (const auto& server_config : service_config.servers) {
      ServerRuntime server{&server_config,
                           registry.server(service_config.name, server_config.name)};
      const size_t group = server_config.route ? *server_config.route + 1 : 0;
      sched_servers[group].push_back(
          SchedServer{server_config.name, server_config.backup, server.state.get()});
      service.groups[group].members.push_back(static_cast<uint32_t>(service.servers.size()));
      service.servers.push_back(std::move(server));
    }
    const SchedulerOptions options{service_config.scheduler, service_config.hash_key, workers,
                                   &service.state->load_index};
    for (size_t group = 0; group < group_count; ++group)
      service.groups[group].scheduler = make_scheduler(options, std::move(sched_servers[group]));
    snapshot->services.push_back(std::move(service));
  }
  return snapshot;
}

}  // namespace fulcrum
