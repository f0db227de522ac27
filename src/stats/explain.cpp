#include "fulcrum/explain.hpp"

#include <algorithm>
#include <cstdio>

#include "fulcrum/nearest_name.hpp"
#include "fulcrum/quote.hpp"
#include "fulcrum/scheduler.hpp"

namespace fulcrum {

namespace {

std::string hex64(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

// `ADDR` or `ADDR:PORT` (`[v6]:PORT`); nullopt when neither.
std::optional<SocketAddress> parse_client(std::string_view text, bool& has_port) {
  AddressParse parsed = parse_ip_literal(text);
  has_port = false;
  if (parsed.error.empty() && !parsed.addresses.empty()) return parsed.addresses.front();
  parsed = parse_address(text);
  has_port = true;
  if (parsed.error.empty() && !parsed.addresses.empty()) return parsed.addresses.front();
  return std::nullopt;
}

std::string server_json(const ServerRuntime& server) {
  return "{\"name\":" + quote(server.config->name) +
         ",\"state\":" + quote(to_string(server.state->status())) +
         ",\"weight\":" + std::to_string(server.state->weight()) + "}";
}

}  // namespace

ExplainReply explain_client(const Snapshot& snapshot, std::string_view service_name,
                            std::string_view client_text) {
  const auto found =
      std::find_if(snapshot.services.begin(), snapshot.services.end(),
                   [&](const ServiceRuntime& s) { return s.config->name == service_name; });
  if (found == snapshot.services.end()) {
    std::vector<std::string> names;
    for (const ServiceRuntime& s : snapshot.services) names.push_back(s.config->name);
    const std::optional<std::string> nearest = nearest_name(service_name, names);
    return {404, "no such service " + quote(service_name) +
                     (nearest ? "; did you mean " + quote(*nearest) + "?" : "")};
  }
  const ServiceRuntime& service = *found;
  const ServiceConfig& config = *service.config;
  bool has_port = false;
  const std::optional<SocketAddress> client = parse_client(client_text, has_port);
  if (!client) {
    return {400, "client " + quote(client_text) +
                     " is not an IP address, nor an address and port (198.18.0.7, "
                     "198.18.0.7:40000, [2001:db8::7]:40000)"};
  }
  std::string out = "{\"service\":" + quote(config.name) +
                    ",\"scheduler\":" + quote(to_string(config.scheduler)) +
                    ",\"client\":" + quote(has_port ? client->to_string() : client->host_string());
  if (config.scheduler != SchedulerKind::maglev) {
    out += ",\"server\":null,\"reason\":" +
           quote("scheduler " + std::string(to_string(config.scheduler)) +
                 " picks a server for each new session, whatever the client; only maglev maps a "
                 "client to a server") +
           "}";
    return {200, out};
  }
  const bool by_port = config.hash_key == HashKey::source_ip_port;
  if (by_port && !has_port) {
    return {400, "service " + quote(config.name) +
                     " hashes the client's address and port (hash_key source_ip_port): give "
                     "CLIENT:PORT"};
  }
  // The service's own servers (an sni_routes entry's have their own table,
  // for clients naming it). Of those, the group that serves: the primaries
  // while any is up with a weight, else the backups (the schedulers' rule,
  // in proxy and kernel modes).
  std::vector<const ServerRuntime*> own;
  for (const ServerRuntime& server : service.servers) {
    if (!server.config->route) own.push_back(&server);
  }
  const bool primaries_up = std::any_of(own.begin(), own.end(), [](const ServerRuntime* s) {
    return !s->config->backup && s->state->status() == ServerStatus::up && s->state->weight() > 0;
  });
  std::vector<const ServerRuntime*> group;
  for (const ServerRuntime* server : own) {
    if (server->config->backup != primaries_up) group.push_back(server);
  }
  std::vector<std::string> names;
  std::vector<uint32_t> weights_now;
  std::vector<uint32_t> weights_configured;
  for (const ServerRuntime* server : group) {
    names.push_back(server->config->name);
    const bool up = server->state->status() == ServerStatus::up;
    weights_now.push_back(up ? server->state->weight() : 0);
    weights_configured.push_back(server->config->weight);
  }
  const uint32_t slot = maglev_slot(*client, config.hash_key);
  const std::vector<uint32_t> now = build_maglev_table(names, weights_now, kMaglevTableSize);
  const std::vector<uint32_t> all_up =
      build_maglev_table(names, weights_configured, kMaglevTableSize);
  out += ",\"hash_key\":" + quote(by_port ? "source_ip_port" : "source_ip");
  out += ",\"slot\":" + std::to_string(slot);
  out += ",\"table_checksum\":" + quote(hex64(maglev_table_checksum(names, now)));
  out += ",\"group\":" + quote(primaries_up ? "primaries" : "backups");
  out += ",\"server\":" + (now.empty() ? std::string("null") : server_json(*group[now[slot]]));
  out +=
      ",\"all_up\":" + (all_up.empty() ? std::string("null") : server_json(*group[all_up[slot]]));
  out += ",\"skipped\":[";
  std::string reason;
  if (now.empty()) {
    reason = "no server of the group takes new sessions";
  } else if (!all_up.empty() && all_up[slot] != now[slot]) {
    out += server_json(*group[all_up[slot]]);
    reason = "the slot's server with every server up, " + names[all_up[slot]] +
             ", takes no new session now; the table without it gives " + names[now[slot]];
  } else {
    reason = "the slot's server, as with every server up";
  }
  if (!primaries_up) reason += "; no primary is up, so the backups serve";
  if (!config.sni_routes.empty())
    reason += "; this is for clients whose TLS server name matches no sni_routes entry";
  if (config.forwarding == Forwarding::dsr)
    reason += "; a flow that dsr's flow memory holds keeps the server it had";
  out += "],\"reason\":" + quote(reason) + "}";
  return {200, out};
}

}  // namespace fulcrum
