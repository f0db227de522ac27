// What a reload changed, for the log.
#include <map>
#include <sstream>

#include "fulcrum/log.hpp"
#include "fulcrum/snapshot.hpp"

namespace fulcrum {

namespace {

// A string among settings: its length first, so that no content can pass
// for a separator.
void put(std::ostringstream& out, const std::string& text) { out << text.size() << ':' << text; }

// Every setting of a health check, as comparable text.
std::string settings_of(const HealthCheckConfig& h) {
  std::ostringstream out;
  out << h.enabled << ',' << h.interval.count() << ',' << h.timeout.count() << ',' << h.rise << ','
      << h.fall << ',' << h.port << ',';
  put(out, h.send);
  put(out, h.expect);
  if (h.http) {
    out << ",http,";
    put(out, h.http->path);
    put(out, h.http->host);
    for (const StatusRange& range : h.http->statuses)
      out << range.first << '-' << range.last << ';';
    out << h.http->tls << h.http->verify;
  }
  if (h.agent) {
    out << ",agent," << h.agent->port << ',' << h.agent->interval.count() << ',';
    put(out, h.agent->send);
  }
  return out.str();
}

std::string cidrs(const std::vector<Cidr>& list) {
  std::string out;
  for (const Cidr& cidr : list) out += cidr.to_string() + ",";
  return out;
}

// Every setting of a service but its servers, as comparable text.
std::string settings_of(const ServiceConfig& s) {
  std::ostringstream out;
  for (const auto& address : s.listen) out << address.to_string() << ',';
  out << '|' << to_string(s.scheduler) << '|' << static_cast<int>(s.hash_key) << '|'
      << static_cast<int>(s.address_mode) << '|' << (s.source ? s.source->to_string() : "") << '|'
      << static_cast<int>(s.proxy_protocol) << '|' << s.accept_proxy_protocol.enabled << '|'
      << s.connect_timeout.count() << '|' << s.idle_timeout.count() << '|' << s.retries << '|'
      << s.max_connections << '|' << s.max_lifetime.count() << '|' << settings_of(s.health_check)
      << '|' << static_cast<int>(s.on_server_down) << '|' << to_string(s.forwarding) << '|'
      << to_string(s.protocol) << '|'
      << (s.dsr ? s.dsr->ingress + "," + s.dsr->egress + "," + std::to_string(s.dsr->flows) + "," +
                      (s.dsr->flow_timeout ? format_duration(*s.dsr->flow_timeout) : "")
                : "")
      << '|' << cidrs(s.accept_proxy_protocol.senders) << '|' << cidrs(s.allow) << '|'
      << cidrs(s.deny) << '|'
      << (s.source_limits ? std::to_string(s.source_limits->connections) + "," +
                                std::to_string(s.source_limits->rate)
                          : "");
  return out.str();
}

std::string settings_of(const ServerConfig& s) {
  std::ostringstream out;
  out << s.address.to_string() << '|' << s.weight << '|' << s.max_connections << '|' << s.backup
      << '|' << s.slow_start.count();
  return out.str();
}

template <typename Item>
std::map<std::string, const Item*> by_name(const std::vector<Item>& items) {
  std::map<std::string, const Item*> out;
  for (const auto& item : items) out[item.name] = &item;
  return out;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ",") + name;
  return out.empty() ? "-" : out;
}

}  // namespace

void log_config_changes(const Snapshot& before, const Snapshot& after) {
  const auto old_services = by_name(before.config.services);
  const auto new_services = by_name(after.config.services);
  std::vector<std::string> added, removed, changed;
  for (const auto& [name, service] : new_services) {
    const auto old = old_services.find(name);
    if (old == old_services.end()) {
      added.push_back(name);
      continue;
    }
    std::vector<std::string> servers_added, servers_removed, servers_changed;
    const auto old_servers = by_name(old->second->servers);
    const auto new_servers = by_name(service->servers);
    for (const auto& [server_name, server] : new_servers) {
      const auto was = old_servers.find(server_name);
      if (was == old_servers.end()) {
        servers_added.push_back(server_name);
      } else if (settings_of(*was->second) != settings_of(*server)) {
        servers_changed.push_back(server_name);
      }
    }
    for (const auto& [server_name, server] : old_servers) {
      if (!new_servers.contains(server_name)) servers_removed.push_back(server_name);
    }
    const bool settings_changed = settings_of(*old->second) != settings_of(*service);
    if (settings_changed || !servers_added.empty() || !servers_removed.empty() ||
        !servers_changed.empty()) {
      changed.push_back(name);
      log_info("service changed", {{"service", name},
                                   {"settings", settings_changed ? "changed" : "same"},
                                   {"servers_added", join(servers_added)},
                                   {"servers_removed", join(servers_removed)},
                                   {"servers_changed", join(servers_changed)}});
    }
  }
  for (const auto& [name, service] : old_services) {
    if (!new_services.contains(name)) removed.push_back(name);
  }
  log_info("configuration changes", {{"generation", after.generation},
                                     {"services_added", join(added)},
                                     {"services_removed", join(removed)},
                                     {"services_changed", join(changed)}});
}

}  // namespace fulcrum
