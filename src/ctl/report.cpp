// The tables and confirmation lines of fulcrumctl.
#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "format.hpp"
#include "reply.hpp"

namespace fulcrum::ctl {

namespace {

using Align = Table::Align;

std::string count_text(const Node& node) { return std::to_string(node.count()); }

std::string last_reload_text(const Node& reload) {
  const Node at = reload["at"];
  const std::string when = at.is_null() ? "-" : at.string();
  if (reload["ok"].boolean()) return "ok at " + when;
  const Node error = reload["error"];
  return "failed at " + when + (error.is_null() ? "" : ": " + error.string());
}

// Bytes per second in the form of byte counts (`1.5KiB`), whole bytes.
std::string byte_rate_text(const Node& per_second) {
  const double value = per_second.number();
  return human_bytes(value > 0 ? static_cast<uint64_t>(std::llround(std::min(value, 1e18))) : 0);
}

// `FULL` while the server's sessions reach its max_connections, else the
// limit (`-`: none).
std::string max_text(const Node& sessions) {
  const uint64_t max = sessions["max"].count();
  if (max == 0) return "-";
  return sessions["active"].count() >= max ? "FULL" : std::to_string(max);
}

// `agent       SERVICE/SERVER: said "drain 50%", 2s ago`, with `; last
// error: ...` while its agent check fails (the word before still holds).
std::string agent_line(const std::string& server, const Node& agent) {
  const Node reply = agent["reply"];
  std::string out = "agent       " + server + ": ";
  if (reply.is_null()) {
    out += "no reply yet";
  } else {
    out += "said \"" + reply.string() + "\", " + human_duration(agent["reply_seconds"].number()) +
           " ago";
  }
  if (const Node error = agent["last_error"]; !error.is_null())
    out += "; last error: " + error.string();
  return out + "\n";
}

// Kernel forwarding (docs/forwarding.md) is newer than the rest of /stats:
// a service without `forwarding` is a TCP proxy, one without `packets` has
// no packet count.
std::string forwarding_of(const Node& service) {
  return service.has("forwarding") ? service["forwarding"].string() : "proxy";
}

std::string protocol_of(const Node& service) {
  return service.has("protocol") ? service["protocol"].string() : "tcp";
}

// The MODE column (`nat/udp`) is there when some service is not a TCP
// proxy: a document of proxies only prints as before it existed.
bool any_kernel_mode(const std::vector<Node>& services) {
  return std::any_of(services.begin(), services.end(), [](const Node& service) {
    return forwarding_of(service) != "proxy" || protocol_of(service) != "tcp";
  });
}

// The PACKETS_IN and PACKETS_OUT columns: there when some entry has packets.
bool any_packets(const std::vector<Node>& entries) {
  return std::any_of(entries.begin(), entries.end(),
                     [](const Node& entry) { return entry.has("packets"); });
}

// Whether any service refused a client (allow/deny, untrusted PROXY
// senders, source_limits): the DENIED and LIMITED columns appear then.
bool any_refused(const std::vector<Node>& services) {
  return std::any_of(services.begin(), services.end(), [](const Node& service) {
    const Node sessions = service["sessions"];
    return (sessions.has("denied") && sessions["denied"].number() > 0) ||
           (sessions.has("limited") && sessions["limited"].number() > 0);
  });
}

// Packets in and out (`-`: a proxy's, and dsr's replies, which go from the
// servers to the clients directly).
std::vector<std::string> packet_cells(const Node& entry, bool direct) {
  if (!entry.has("packets")) return {"-", "-"};
  const Node packets = entry["packets"];
  return {count_text(packets["in"]), direct ? "-" : count_text(packets["out"])};
}

// Appends `cells` to a table's row.
void append(std::vector<std::string>& row, const std::vector<std::string>& cells) {
  row.insert(row.end(), cells.begin(), cells.end());
}

// The ROUTE column: there when some server belongs to an sni_routes entry.
bool any_route(const std::vector<Node>& services) {
  return std::any_of(services.begin(), services.end(), [](const Node& service) {
    const std::vector<Node> servers = service["servers"].elements();
    return std::any_of(servers.begin(), servers.end(),
                       [](const Node& server) { return server.has("route"); });
  });
}

// A route's server names, `api.test,*.apps.test` (`-`: the service's own
// servers, for clients naming no route).
std::string route_text(const Node& server) {
  if (!server.has("route")) return "-";
  std::string out;
  for (const Node& name : server["route"].elements())
    out += (out.empty() ? "" : ",") + name.string();
  return out;
}

}  // namespace

std::string status_report(const Json& stats) {
  const Node root(stats, "");
  const Node config = root["config"];
  std::string out;
  out += "version      " + root["version"].string() + "\n";
  out += "uptime       " + human_duration(root["uptime_seconds"].number()) + "\n";
  out += "generation   " + count_text(config["generation"]) + "\n";
  out += "last reload  " + last_reload_text(config["last_reload"]) + "\n";

  const std::vector<Node> services = root["services"].elements();
  const bool modes = any_kernel_mode(services);
  const bool packets = any_packets(services);
  const bool refused = any_refused(services);
  Table table;
  table.add_column("SERVICE");
  table.add_column("SCHEDULER");
  if (modes) table.add_column("MODE");
  table.add_column("ACTIVE", Align::right);
  table.add_column("TOTAL", Align::right);
  table.add_column("REJECTED", Align::right);
  if (refused) {
    table.add_column("DENIED", Align::right);
    table.add_column("LIMITED", Align::right);
  }
  table.add_column("BYTES_IN", Align::right);
  table.add_column("BYTES_OUT", Align::right);
  if (packets) {
    table.add_column("PACKETS_IN", Align::right);
    table.add_column("PACKETS_OUT", Align::right);
  }
  table.add_column("SESS/S", Align::right);
  table.add_column("PEAK/S", Align::right);
  table.add_column("IN/S", Align::right);
  table.add_column("OUT/S", Align::right);
  table.add_column("UP", Align::right);
  for (const Node& service : services) {
    const Node sessions = service["sessions"];
    const Node bytes = service["bytes"];
    const Node rate = service["rate"];
    const std::vector<Node> servers = service["servers"].elements();
    size_t up = 0;
    for (const Node& server : servers) up += server["state"].string() == "up";
    std::vector<std::string> row = {service["name"].string(), service["scheduler"].string()};
    if (modes) row.push_back(forwarding_of(service) + "/" + protocol_of(service));
    append(row, {count_text(sessions["active"]), count_text(sessions["total"]),
                 count_text(sessions["rejected"])});
    if (refused) {
      append(row, {sessions.has("denied") ? count_text(sessions["denied"]) : "-",
                   sessions.has("limited") ? count_text(sessions["limited"]) : "-"});
    }
    append(row, {human_bytes(bytes["in"].count()), human_bytes(bytes["out"].count())});
    if (packets) append(row, packet_cells(service, forwarding_of(service) == "dsr"));
    append(row, {human_rate(rate["sessions_per_second"].number()),
                 human_rate(rate["peak_sessions_per_second"].number()),
                 byte_rate_text(rate["bytes_in_per_second"]),
                 byte_rate_text(rate["bytes_out_per_second"]),
                 std::to_string(up) + "/" + std::to_string(servers.size())});
    table.add_row(std::move(row));
  }
  out += '\n';
  out += table.render();
  return out;
}

std::string servers_report(const Json& stats) {
  const Node root(stats, "");
  const std::vector<Node> services = root["services"].elements();
  bool packets = false;
  for (const Node& service : services)
    packets = packets || any_packets(service["servers"].elements());
  Table table;
  const bool routes = any_route(services);
  table.add_column("SERVICE");
  table.add_column("SERVER");
  if (routes) table.add_column("ROUTE");
  table.add_column("ADDRESS");
  table.add_column("STATE");
  table.add_column("WEIGHT", Align::right);
  table.add_column("BACKUP");
  table.add_column("ACTIVE", Align::right);
  table.add_column("MAX", Align::right);
  table.add_column("TOTAL", Align::right);
  table.add_column("SESS/S", Align::right);
  table.add_column("PEAK/S", Align::right);
  table.add_column("IN/S", Align::right);
  table.add_column("OUT/S", Align::right);
  if (packets) {
    table.add_column("PACKETS_IN", Align::right);
    table.add_column("PACKETS_OUT", Align::right);
  }
  table.add_column("FAILURES", Align::right);
  table.add_column("CHECKS_FAILED", Align::right);
  table.add_column("LAST_CHANGE", Align::right);
  // Reasons, agent replies and counts with words have spaces: below the
  // table, so that every cell stays a word.
  std::string notes;
  for (const Node& service : services) {
    const std::string service_name = service["name"].string();
    const bool direct = forwarding_of(service) == "dsr";
    for (const Node& server : service["servers"].elements()) {
      const Node sessions = server["sessions"];
      const Node health = server["health"];
      const Node rate = server["rate"];
      std::vector<std::string> row = {service_name, server["name"].string()};
      if (routes) row.push_back(route_text(server));
      append(row, {server["address"].string(), server["state"].string(),
                   count_text(server["weight"]), server["backup"].boolean() ? "yes" : "no",
                   count_text(sessions["active"]), max_text(sessions),
                   count_text(sessions["total"]), human_rate(rate["sessions_per_second"].number()),
                   human_rate(rate["peak_sessions_per_second"].number()),
                   byte_rate_text(rate["bytes_in_per_second"]),
                   byte_rate_text(rate["bytes_out_per_second"])});
      if (packets) append(row, packet_cells(server, direct));
      append(row, {count_text(server["connect_failures"]), count_text(health["checks_failed"]),
                   human_duration(health["last_change_seconds"].number())});
      table.add_row(std::move(row));
      if (const Node last_error = health["last_error"]; !last_error.is_null()) {
        notes +=
            "last error  " + service_name + "/" + server["name"].string() + ": " +
            last_error.string() + ", " + human_duration(health["last_error_seconds"].number()) +
            " ago (last minute: failed checks " + count_text(health["checks_failed_last_minute"]) +
            ", failed connects " + count_text(server["connect_failures_last_minute"]) + ")\n";
      }
      // health.agent and sessions.closed_on_down are newer than the rest:
      // a daemon without them is still shown.
      if (health.has("agent") && !health["agent"].is_null())
        notes += agent_line(service_name + "/" + server["name"].string(), health["agent"]);
      if (sessions.has("closed_on_down")) {
        if (const uint64_t closed = sessions["closed_on_down"].count(); closed > 0) {
          notes += "closed      " + service_name + "/" + server["name"].string() + ": " +
                   std::to_string(closed) + (closed == 1 ? " session" : " sessions") +
                   " closed when it went down\n";
        }
      }
    }
  }
  return table.render() + (notes.empty() ? "" : "\n" + notes);
}

std::string server_change_report(std::string_view service, const Json& server) {
  const Node node(server, "");
  std::string out = std::string(service) + "/" + node["name"].string() + ": state " +
                    node["state"].string() + ", weight " + count_text(node["weight"]);
  // The weight in force is 0 out of service and ramps in slow start: show
  // the one the server will have, when it differs.
  if (node.has("assigned_weight") && node["assigned_weight"].number() != node["weight"].number())
    out += " (assigned " + count_text(node["assigned_weight"]) + ")";
  out += "\n";
  if (node.has("note")) out += "note: " + node["note"].string() + "\n";
  return out;
}

std::string reload_report(const Json& reply) {
  const Node node(reply, "");
  std::string out;
  if (node.has("message")) {
    out = node["message"].string() + "\n";
  } else if (node.has("generation")) {
    out = "reloaded: configuration generation " + count_text(node["generation"]) + "\n";
  } else {
    out = "reloaded\n";
  }
  // What the reload applied without: a restart would (daemons before the
  // list sent none).
  if (node.has("warnings")) {
    for (const Node& warning : node["warnings"].elements())
      out += "warning: " + warning.string() + "\n";
  }
  return out;
}

namespace {

// `NAME (STATE, weight W)`.
std::string explained_server(const Node& server) {
  return server["name"].string() + " (" + server["state"].string() + ", weight " +
         count_text(server["weight"]) + ")";
}

}  // namespace

std::string explain_report(const Json& reply) {
  const Node node(reply, "");
  const std::string service = node["service"].string();
  if (!node.has("slot"))
    return service + ": " + node["client"].string() + ": " + node["reason"].string() + "\n";
  std::string out = service + ": client " + node["client"].string() + " -> slot " +
                    count_text(node["slot"]) + " of the Maglev table " +
                    node["table_checksum"].string() + " (" + node["hash_key"].string() + ", " +
                    node["group"].string() + ")\n";
  out += "server: " +
         (node["server"].is_null() ? std::string("none") : explained_server(node["server"])) + "\n";
  for (const Node& skipped : node["skipped"].elements())
    out += "skipped: " + explained_server(skipped) + "\n";
  out += "why: " + node["reason"].string() + "\n";
  return out;
}

}  // namespace fulcrum::ctl
