#include "fulcrum/control_plane.hpp"

#include <algorithm>
#include <utility>

#include "fulcrum/log.hpp"

namespace fulcrum {

uint32_t slow_start_weight(uint32_t weight, Duration slow_start,
                           std::optional<std::chrono::nanoseconds> since_up) {
  if (weight == 0 || slow_start.count() == 0 || !since_up || *since_up >= slow_start) return weight;
  if (since_up->count() <= 0) return 1;
  const double fraction = static_cast<double>(since_up->count()) /
                          static_cast<double>(std::chrono::nanoseconds(slow_start).count());
  const auto ramped = static_cast<uint32_t>(static_cast<double>(weight) * fraction);
  return ramped == 0 ? 1 : ramped;
}

namespace {

// The weight new sessions are given while up, before slow start: the
// operator's, else the file's scaled by the agent's N % (a non-zero
// percentage never rounds down to a drain).
uint32_t weight_before_slow_start(const ServerState& state) {
  const uint32_t assigned = state.assigned_weight();
  const std::optional<uint32_t> percent = state.agent().weight_percent;
  if (state.weight_by_operator() || !percent) return assigned;
  const uint64_t scaled = uint64_t{assigned} * *percent / 100;
  if (scaled == 0 && *percent != 0 && assigned != 0) return 1;
  return static_cast<uint32_t>(std::min<uint64_t>(scaled, kMaxWeight));
}

}  // namespace

bool ControlPlane::settle(const ServerRuntime& server, SteadyTime now) {
  ServerState& state = *server.state;
  ServerStateWriter writer(state);
  const AgentView& agent = state.agent();
  // An operator's maint or drain win over everything; else the agent's;
  // then a weight of 0 (a drain by weight, as in SPEC.md) wins over health;
  // health (the checks' verdict and the agent's up/down) decides the rest.
  const AdminState admin = state.admin() != AdminState::ready ? state.admin() : agent.admin;
  const uint32_t assigned = weight_before_slow_start(state);
  ServerStatus status = state.healthy() && !agent.says_down ? ServerStatus::up : ServerStatus::down;
  if (assigned == 0) status = ServerStatus::drain;
  // A discovered server no longer in the DNS answer takes no new session.
  if (admin == AdminState::drain || server.config->departing) status = ServerStatus::drain;
  if (admin == AdminState::maint) status = ServerStatus::maint;
  bool changed = writer.set_status(status, now);
  changed |=
      writer.set_max_connections(agent.max_connections.value_or(server.config->max_connections));

  // The weight in force for new sessions: none unless up, ramped during
  // slow start.
  std::optional<std::chrono::nanoseconds> since_up;
  if (const int64_t up_since = state.up_since_ns(); up_since != 0)
    since_up = now.time_since_epoch() - std::chrono::nanoseconds(up_since);
  const uint32_t weight = status != ServerStatus::up
                              ? 0
                              : slow_start_weight(assigned, server.config->slow_start, since_up);
  changed |= writer.set_weight(weight);
  return changed;
}

std::shared_ptr<const Snapshot> ControlPlane::install(Config config, SteadyTime now) {
  // Discovery goes on for services that ask the same name; others start
  // afresh or stop.
  std::map<std::string, DiscoveryStatus> kept;
  for (const ServiceConfig& service : config.services) {
    if (!service.discover) continue;
    const std::string query =
        service.discover->name +
        (service.discover->port ? ":" + std::to_string(*service.discover->port) : "");
    auto found = discovery_.find(service.name);
    DiscoveryStatus status = found != discovery_.end() && found->second.query == query
                                 ? std::move(found->second)
                                 : DiscoveryStatus{query, {}, {}, 0, std::nullopt, {}};
    kept.emplace(service.name, std::move(status));
  }
  discovery_ = std::move(kept);
  file_config_ = config;
  const uint64_t generation = snapshot_ ? snapshot_->generation + 1 : adopted_generation_ + 1;
  // The first snapshot after an upgrade ends no operator's weight.
  const bool reload = !std::exchange(adopted_, false);
  return build(with_discovered(std::move(config)), generation, reload, now);
}

void ControlPlane::carry(UpgradeState& state) const {
  state.generation = snapshot_->generation;
  for (const ServiceRuntime& service : snapshot_->services) {
    const ServiceState& s = *service.state;
    const auto get = [](const std::atomic<uint64_t>& counter) {
      return counter.load(std::memory_order_relaxed);
    };
    state.services.push_back(CarriedService{
        service.config->name, get(s.total), get(s.rejected), get(s.proxy_header_errors),
        get(s.denied), get(s.limited), get(s.bytes_in), get(s.bytes_out), get(s.local_errors),
        get(s.packets_in), get(s.packets_out), get(s.packets_not_remembered)});
    for (const ServerRuntime& server : service.servers) {
      const ServerState& v = *server.state;
      CarriedServer c;
      c.service = service.config->name;
      c.name = server.config->name;
      c.status = v.status();
      c.admin = v.admin();
      c.healthy = v.healthy();
      c.assigned_weight = v.assigned_weight();
      c.weight_by_operator = v.weight_by_operator();
      c.up_since_ns = v.up_since_ns();
      c.last_change_ns = v.last_change_ns();
      c.last_error = v.last_error();
      c.last_error_ns = v.last_error_ns();
      c.agent = v.agent();
      c.total = get(v.total);
      c.connect_failures = get(v.connect_failures);
      c.connects = get(v.connects);
      c.connect_time_us = get(v.connect_time_us);
      c.bytes_in = get(v.bytes_in);
      c.bytes_out = get(v.bytes_out);
      c.checks_failed = get(v.checks_failed);
      c.local_errors = get(v.local_errors);
      c.closed_on_down = get(v.closed_on_down);
      c.packets_in = get(v.packets_in);
      c.packets_out = get(v.packets_out);
      state.servers.push_back(std::move(c));
    }
  }
  for (const auto& [service, status] : discovery_)
    state.discoveries.push_back(CarriedDiscovery{service, status});
}

void ControlPlane::adopt(const UpgradeState& state) {
  const auto set = [](std::atomic<uint64_t>& counter, uint64_t value) {
    counter.store(value, std::memory_order_relaxed);
  };
  for (const CarriedService& c : state.services) {
    ServiceState& s = *registry_.service(c.name);
    set(s.total, c.total);
    set(s.rejected, c.rejected);
    set(s.proxy_header_errors, c.proxy_header_errors);
    set(s.denied, c.denied);
    set(s.limited, c.limited);
    set(s.bytes_in, c.bytes_in);
    set(s.bytes_out, c.bytes_out);
    set(s.local_errors, c.local_errors);
    set(s.packets_in, c.packets_in);
    set(s.packets_out, c.packets_out);
    set(s.packets_not_remembered, c.packets_not_remembered);
  }
  for (const CarriedServer& c : state.servers) {
    ServerState& v = *registry_.server(c.service, c.name);
    ServerStateWriter writer(v);
    writer.carry_over(c.status, c.up_since_ns, c.last_change_ns, c.last_error, c.last_error_ns);
    writer.set_admin(c.admin);
    writer.set_healthy(c.healthy);
    writer.set_assigned_weight(c.assigned_weight);
    writer.set_weight_by_operator(c.weight_by_operator);
    writer.agent() = c.agent;
    set(v.total, c.total);
    set(v.connect_failures, c.connect_failures);
    set(v.connects, c.connects);
    set(v.connect_time_us, c.connect_time_us);
    set(v.bytes_in, c.bytes_in);
    set(v.bytes_out, c.bytes_out);
    set(v.checks_failed, c.checks_failed);
    set(v.local_errors, c.local_errors);
    set(v.closed_on_down, c.closed_on_down);
    set(v.packets_in, c.packets_in);
    set(v.packets_out, c.packets_out);
  }
  for (const CarriedDiscovery& carried : state.discoveries)
    discovery_[carried.service] = carried.status;
  adopted_generation_ = state.generation;
  adopted_ = true;
}

Config ControlPlane::with_discovered(Config config) const {
  for (ServiceConfig& service : config.services) {
    const auto found = discovery_.find(service.name);
    if (found == discovery_.end()) continue;
    const auto add = [&service](const DiscoveredServer& discovered, bool departing) {
      // A server of the file keeps its name.
      const bool taken = std::any_of(
          service.servers.begin(), service.servers.end(),
          [&discovered](const ServerConfig& server) { return server.name == discovered.name; });
      if (taken) return;
      ServerConfig server;
      server.name = discovered.name;
      server.address_text = discovered.name;
      server.address = discovered.address;
      server.weight = discovered.weight;
      server.backup = discovered.backup;
      server.discovered = true;
      server.departing = departing;
      service.servers.push_back(std::move(server));
    };
    for (const DiscoveredServer& server : found->second.current) add(server, false);
    for (const DiscoveredServer& server : found->second.departing) add(server, true);
  }
  return config;
}

std::shared_ptr<const Snapshot> ControlPlane::build(Config config, uint64_t generation, bool reload,
                                                    SteadyTime now) {
  auto next = build_snapshot(std::move(config), generation, registry_, workers_);
  registry_.retire_absent(next->config);
  ChangeSet changes{next, snapshot_, true, {}};
  for (const ServiceRuntime& service : next->services) {
    const std::optional<SourceLimits>& limits = service.config->source_limits;
    service.state->sources.set_limits(limits ? limits->connections : 0, limits ? limits->rate : 0);
    for (const ServerRuntime& server : service.servers) {
      ServerStateWriter writer(*server.state);
      // A server new to the configuration starts its state's clock now.
      writer.mark_configured(now);
      // An operator's weight ends with a reload, not with a DNS change.
      if (reload || !server.state->weight_by_operator()) {
        writer.set_assigned_weight(server.config->weight);
        writer.set_weight_by_operator(false);
      }
      // Nothing would ever report this server healthy again otherwise.
      if (!service.config->health_check.enabled) writer.set_healthy(true);
      // Nor would an agent that is no longer asked take back its word.
      if (!service.config->health_check.enabled || !service.config->health_check.agent)
        writer.agent() = AgentView{};
      settle(server, now);
    }
    changes.services.push_back(&service);
  }
  snapshot_ = next;
  for (DataPlane* plane : planes_) plane->apply(changes);
  return next;
}

void ControlPlane::rebuild_discovered(SteadyTime now) {
  if (!snapshot_) return;
  const auto next = build(with_discovered(file_config_), snapshot_->generation, false, now);
  if (on_rebuilt_) on_rebuilt_(next);
}

void ControlPlane::report_discovery(const std::string& service,
                                    std::optional<std::vector<DiscoveredServer>> servers,
                                    std::string error, std::chrono::system_clock::time_point at,
                                    SteadyTime now) {
  const auto found = discovery_.find(service);
  if (found == discovery_.end()) return;
  DiscoveryStatus& status = found->second;
  if (!servers) {
    ++status.errors;
    status.last_error = std::move(error);
    return;
  }
  status.last_success = at;
  std::vector<DiscoveredServer> before = status.current;
  if (!merge_discovered(status, std::move(*servers))) return;
  // Which names came and went, for the log.
  std::string added;
  std::string departed;
  const auto has = [](const std::vector<DiscoveredServer>& list, const std::string& name) {
    return std::any_of(list.begin(), list.end(),
                       [&name](const DiscoveredServer& s) { return s.name == name; });
  };
  for (const DiscoveredServer& server : status.current) {
    if (!has(before, server.name)) added += (added.empty() ? "" : ",") + server.name;
  }
  for (const DiscoveredServer& server : before) {
    if (!has(status.current, server.name)) departed += (departed.empty() ? "" : ",") + server.name;
  }
  log_info("discovered servers changed", {{"service", service},
                                          {"servers", status.current.size()},
                                          {"added", added.empty() ? "-" : added},
                                          {"departing", departed.empty() ? "-" : departed}});
  rebuild_discovered(now);
}

const DiscoveryStatus* ControlPlane::discovery(const std::string& service) const {
  const auto found = discovery_.find(service);
  return found == discovery_.end() ? nullptr : &found->second;
}

std::string ControlPlane::check(const Config& config, SteadyTime now) const {
  StateRegistry apart;  // the live states are not touched
  const uint64_t generation = snapshot_ ? snapshot_->generation + 1 : 1;
  auto next = build_snapshot(with_discovered(config), generation, apart, workers_);
  ChangeSet changes{next, nullptr, true, {}};
  for (const ServiceRuntime& service : next->services) {
    for (const ServerRuntime& server : service.servers) {
      ServerStateWriter(*server.state).set_assigned_weight(server.config->weight);
      settle(server, now);
    }
    changes.services.push_back(&service);
  }
  for (DataPlane* plane : planes_) {
    if (std::string refused = plane->check(changes); !refused.empty()) return refused;
  }
  return "";
}

void ControlPlane::report_health(const ServiceRuntime& service, const ServerRuntime& server,
                                 bool healthy, SteadyTime now) {
  if (server.state->healthy() == healthy) return;
  ServerStateWriter(*server.state).set_healthy(healthy);
  if (settle(server, now)) publish({&service});
}

void ControlPlane::report_check_failure(const ServerRuntime& server, std::string reason,
                                        SteadyTime now) {
  ServerStateWriter(*server.state).set_last_error(std::move(reason), now);
}

void ControlPlane::report_agent(const ServiceRuntime& service, const ServerRuntime& server,
                                const AgentReply& reply, std::string line, SteadyTime now) {
  ServerStateWriter writer(*server.state);
  AgentView& agent = writer.agent();
  const AgentView before = agent;
  if (reply.up) agent.says_down = !*reply.up;
  if (reply.up == false) {
    agent.down_reason =
        reply.description.empty() ? "agent says down" : "agent says down: " + reply.description;
  }
  if (reply.admin) agent.admin = *reply.admin;
  if (reply.weight_percent) agent.weight_percent = reply.weight_percent;
  if (reply.max_connections) agent.max_connections = reply.max_connections;
  agent.reply = std::move(line);
  agent.reply_ns = now.time_since_epoch().count();
  agent.error.clear();
  if (agent.says_down != before.says_down) {
    // The agent's up or down takes effect at once: one reply is the whole
    // streak, as the log line says.
    if (agent.says_down) writer.set_last_error(agent.down_reason, now);
    Log::write(agent.says_down ? LogLevel::warn : LogLevel::info,
               agent.says_down ? "server down" : "server up",
               {{"service", service.config->name},
                {"server", server.config->name},
                {"address", server.config->address.to_string()},
                {"reason", agent.says_down ? agent.down_reason : std::string("agent says up")},
                {"check", "agent"},
                {"streak", 1},
                {"needed", 1}});
  }
  const ServerStatus status_before = server.state->status();
  const uint32_t weight_before = server.state->weight();
  const uint32_t max_before = server.state->max_connections();
  const bool changed = settle(server, now);
  if (agent.admin != before.admin || agent.weight_percent != before.weight_percent ||
      agent.max_connections != before.max_connections) {
    Log::write(LogLevel::info, "agent changed",
               {{"service", service.config->name},
                {"server", server.config->name},
                {"reply", agent.reply},
                {"state", std::string(to_string(server.state->status()))},
                {"was", std::string(to_string(status_before))},
                {"weight", server.state->weight()},
                {"weight_was", weight_before},
                {"max_connections", server.state->max_connections()},
                {"max_connections_was", max_before}});
  }
  if (changed) publish({&service});
}

void ControlPlane::report_agent_failure(const ServerRuntime& server, std::string reason) {
  ServerStateWriter(*server.state).agent().error = std::move(reason);
}

void ControlPlane::operator_request(const ServiceRuntime& service, const ServerRuntime& server,
                                    std::optional<AdminState> state, std::optional<uint32_t> weight,
                                    SteadyTime now) {
  ServerStateWriter writer(*server.state);
  if (state) writer.set_admin(*state);
  if (weight) {
    writer.set_assigned_weight(*weight);
    writer.set_weight_by_operator(true);
  } else if (state == AdminState::ready && server.state->assigned_weight() == 0) {
    // `ready` takes the server back into service: a drain by an operator's
    // weight 0 ends too, back to the file's weight (which may itself be 0).
    writer.set_assigned_weight(server.config->weight);
    writer.set_weight_by_operator(false);
  }
  if (settle(server, now)) publish({&service});
}

void ControlPlane::tick(SteadyTime now) {
  registry_.forget_idle();
  if (!snapshot_) return;
  // Departed discovered servers leave once their last session has ended.
  bool departed = false;
  for (auto& entry : discovery_) {
    const std::string& service = entry.first;
    std::erase_if(entry.second.departing, [&](const DiscoveredServer& server) {
      const Snapshot::Found where = snapshot_->find(service, server.name);
      const bool idle =
          !where.server || where.server->state->active.load(std::memory_order_relaxed) == 0;
      departed |= idle;
      return idle;
    });
  }
  if (departed) rebuild_discovered(now);
  std::vector<const ServiceRuntime*> moved;
  for (const ServiceRuntime& service : snapshot_->services) {
    bool changed = false;
    for (const ServerRuntime& server : service.servers) {
      if (server.config->slow_start.count() != 0) changed |= settle(server, now);
    }
    if (changed) moved.push_back(&service);
  }
  if (!moved.empty()) publish(std::move(moved));
}

void ControlPlane::publish(std::vector<const ServiceRuntime*> services) {
  const ChangeSet changes{snapshot_, nullptr, false, std::move(services)};
  for (DataPlane* plane : planes_) plane->apply(changes);
}

}  // namespace fulcrum
