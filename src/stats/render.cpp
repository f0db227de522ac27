// Rendering of /stats (JSON) and /metrics (Prometheus text) from the live
// state. Counters are read with relaxed loads: each value is exact, the
// document as a whole is a near-instant view, and counters never go back.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <span>

#include "fulcrum/control_plane.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/open_files.hpp"
#include "fulcrum/stats.hpp"
#include "fulcrum/version.hpp"

namespace fulcrum {

namespace {

// A Prometheus label value: backslash, double quote and newline escaped,
// nothing else. Not quote(): the text format defines only these three
// escapes in label values, and Prometheus rejects any other (\t, \u0001) as
// an invalid escape sequence; other bytes are allowed as they are.
std::string label_value(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string rfc3339(std::chrono::system_clock::time_point at) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(at);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buffer;
}

double seconds_since(std::chrono::steady_clock::time_point since,
                     std::chrono::steady_clock::time_point now) {
  return std::chrono::duration<double>(now - since).count();
}

constexpr ServerStatus kStatuses[] = {ServerStatus::up, ServerStatus::down, ServerStatus::drain,
                                      ServerStatus::maint};

double last_change_seconds(const ServerRuntime& server, std::chrono::steady_clock::time_point now) {
  const std::chrono::steady_clock::time_point since(
      std::chrono::nanoseconds(server.state->last_change_ns()));
  return seconds_since(since, now);
}

std::string number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f", value);
  return buffer;
}

template <typename T>
std::string load(const std::atomic<T>& value) {
  return std::to_string(value.load(std::memory_order_relaxed));
}

// "rate": the daemon's figures over the last 10 s (SPEC.md).
std::string rate_json(const Rates& rates) {
  return ",\"rate\":{\"sessions_per_second\":" + number(rates.sessions_per_second) +
         ",\"bytes_in_per_second\":" + number(rates.bytes_in_per_second) +
         ",\"bytes_out_per_second\":" + number(rates.bytes_out_per_second) +
         ",\"peak_sessions_per_second\":" + number(rates.peak_sessions_per_second) + "}";
}

template <typename State>
Rates rates_of(const StatsContext& context, const State& state) {
  return context.sampler ? context.sampler->rates(state) : Rates{};
}

struct ProcessFigures {
  int64_t open_fds = 0;
  int64_t max_fds = 0;
  int64_t resident_bytes = 0;
  double cpu_seconds = 0;
};

ProcessFigures process_figures() {
  ProcessFigures figures;
  figures.open_fds = count_open_fds();
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    long pages_total = 0;
    long pages_resident = 0;
    if (std::fscanf(f, "%ld %ld", &pages_total, &pages_resident) == 2) {
      figures.resident_bytes = pages_resident * sysconf(_SC_PAGESIZE);
    }
    std::fclose(f);
  }
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    figures.cpu_seconds =
        static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
        static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) figures.max_fds = static_cast<int64_t>(limit.rlim_cur);
  return figures;
}

std::string optional_number(std::optional<uint32_t> value) {
  return value ? std::to_string(*value) : "null";
}

std::string optional_string(const std::string& text) {
  return text.empty() ? "null" : json_string(text);
}

// health.agent of a server: what its agent last said (null without an agent).
std::string agent_json(const ServiceRuntime& service, const ServerState& st,
                       std::chrono::steady_clock::time_point now) {
  const HealthCheckConfig& check = service.config->health_check;
  if (!check.enabled || !check.agent) return "null";
  const AgentView& agent = st.agent();
  std::string out = "{\"reply\":" + optional_string(agent.reply);
  if (agent.reply_ns == 0) {
    out += ",\"reply_seconds\":null";
  } else {
    const auto at = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(agent.reply_ns));
    out += ",\"reply_seconds\":" + number(seconds_since(at, now));
  }
  out += ",\"says\":" + json_string(agent.says_down ? "down" : "up");
  out += ",\"admin\":" + json_string(to_string(agent.admin));
  out += ",\"weight_percent\":" + optional_number(agent.weight_percent);
  out += ",\"max_connections\":" + optional_number(agent.max_connections);
  out += ",\"last_error\":" + optional_string(agent.error);
  return out + "}";
}

}  // namespace

std::string render_server_json(const ServiceRuntime& service, const ServerRuntime& server,
                               const StatsContext& context,
                               std::chrono::steady_clock::time_point now) {
  const ServerState& st = *server.state;
  std::string out = "{\"name\":" + json_string(server.config->name);
  out += ",\"address\":" + json_string(server.config->address.to_string());
  out += ",\"state\":" + json_string(to_string(st.status()));
  out += ",\"weight\":" + std::to_string(st.weight());
  out += ",\"assigned_weight\":" + std::to_string(st.assigned_weight());
  out += ",\"configured_weight\":" + std::to_string(server.config->weight);
  out += ",\"backup\":" + std::string(server.config->backup ? "true" : "false");
  // DNS discovery's servers (SPEC.md "Servers from DNS").
  if (server.config->discovered) out += ",\"discovered\":true";
  // sni_routes: the server names whose clients this server takes.
  if (server.config->route)
    out += ",\"route\":" + json_strings(service.config->sni_routes[*server.config->route].names);
  out += ",\"sessions\":{\"active\":" + load(st.active) + ",\"total\":" + load(st.total) +
         ",\"max\":" + std::to_string(st.max_connections()) +
         ",\"closed_on_down\":" + load(st.closed_on_down) + "}";
  // One reading of the failure counters for the totals and the recent counts.
  const FailureSample failures = read_failures(st);
  out += ",\"connect_failures\":" + std::to_string(failures.connect_failures);
  out += ",\"local_errors\":" + load(st.local_errors);
  const uint64_t connects = st.connects.load(std::memory_order_relaxed);
  const double connect_ms =
      connects == 0 ? 0.0
                    : static_cast<double>(st.connect_time_us.load(std::memory_order_relaxed)) /
                          1000.0 / static_cast<double>(connects);
  out += ",\"connect_time_ms_avg\":" + number(connect_ms);
  out += ",\"bytes\":{\"in\":" + load(st.bytes_in) + ",\"out\":" + load(st.bytes_out) + "}";
  if (in_kernel(service.config->forwarding))
    out += ",\"packets\":{\"in\":" + load(st.packets_in) + ",\"out\":" + load(st.packets_out) + "}";
  out += rate_json(rates_of(context, st));
  const StatsSampler::RecentFailures recent = context.sampler
                                                  ? context.sampler->recent_failures(st, failures)
                                                  : StatsSampler::RecentFailures{};
  out += ",\"connect_failures_last_minute\":" + std::to_string(recent.connect_failures);
  out += ",\"health\":{\"enabled\":" +
         std::string(service.config->health_check.enabled ? "true" : "false") +
         ",\"checks_failed\":" + std::to_string(failures.checks_failed) +
         ",\"checks_failed_last_minute\":" + std::to_string(recent.checks_failed) +
         ",\"last_change_seconds\":" + number(last_change_seconds(server, now));
  if (st.last_error().empty()) {
    out += ",\"last_error\":null,\"last_error_seconds\":null";
  } else {
    const auto at =
        std::chrono::steady_clock::time_point(std::chrono::nanoseconds(st.last_error_ns()));
    out += ",\"last_error\":" + json_string(st.last_error()) +
           ",\"last_error_seconds\":" + number(seconds_since(at, now));
  }
  out += ",\"agent\":" + agent_json(service, st, now);
  out += "}}";
  return out;
}

namespace {

std::string hex64(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

// `null` when announcing is off, else the interface and each VIP's state.
std::string announce_json(const StatsContext& context) {
  const Announcer* announcer = context.announcer;
  if (announcer == nullptr || announcer->interface().empty()) return "null";
  std::string out = "{\"interface\":" + json_string(announcer->interface()) +
                    ",\"kind\":" + json_string(announcer->kind()) + ",\"vips\":[";
  bool first = true;
  for (const Announcer::Vip& vip : announcer->vips()) {
    if (!first) out += ',';
    first = false;
    out += "{\"address\":" + json_string(vip.address.host_string()) +
           ",\"announced\":" + (vip.announced ? "true" : "false") +
           ",\"usable\":" + (vip.usable ? "true" : "false") +
           ",\"services\":" + json_strings(vip.services) + "}";
  }
  return out + "]}";
}

// Whether every VIP of the service is announced; none when announcing is
// off or the service has no VIP (wildcard and loopback listen addresses).
std::optional<bool> service_announced(const StatsContext& context, const ServiceConfig& service) {
  const Announcer* announcer = context.announcer;
  if (announcer == nullptr || announcer->interface().empty()) return std::nullopt;
  std::optional<bool> all;
  for (const Announcer::Vip& vip : announcer->vips()) {
    if (std::find(vip.services.begin(), vip.services.end(), service.name) == vip.services.end())
      continue;
    all = all.value_or(true) && vip.announced;
  }
  return all;
}

// The service's DNS discovery, or null when it does not discover.
const DiscoveryStatus* discovery_of(const StatsContext& context, const ServiceConfig& service) {
  if (context.control_plane == nullptr || !service.discover) return nullptr;
  return context.control_plane->discovery(service.name);
}

std::string discovery_json(const DiscoveryStatus& status) {
  return "{\"name\":" + json_string(status.query) +
         ",\"servers\":" + std::to_string(status.current.size()) +
         ",\"departing\":" + std::to_string(status.departing.size()) +
         ",\"errors\":" + std::to_string(status.errors) + ",\"last_success\":" +
         (status.last_success ? json_string(rfc3339(*status.last_success)) : std::string("null")) +
         ",\"last_error\":" +
         (status.last_error.empty() ? std::string("null") : json_string(status.last_error)) + "}";
}

}  // namespace

std::string render_stats_json(const StatsContext& context) {
  const auto now = std::chrono::steady_clock::now();
  const Snapshot& snapshot = *context.snapshot;
  std::string out;
  out.reserve(4096);
  out += "{\"version\":" + json_string(version());
  out += ",\"uptime_seconds\":" + number(seconds_since(context.started, now));
  // The PID's: an upgrade execs a new binary in the same process, and both
  // go on from the old image's.
  out += ",\"started_at\":" + json_string(rfc3339(context.started_wall));
  if (const UpgradeStatus* upgrade = context.upgrade) {
    out += ",\"upgrades\":" + std::to_string(upgrade->upgrades);
    out += ",\"upgrade\":{\"in_progress\":" + std::string(upgrade->in_progress ? "true" : "false") +
           ",\"last_failure\":";
    out += upgrade->last_failure_at ? "{\"at\":" + json_string(rfc3339(*upgrade->last_failure_at)) +
                                          ",\"error\":" + json_string(upgrade->last_error) + "}"
                                    : std::string("null");
    out += "}";
  } else {
    out += ",\"upgrades\":0,\"upgrade\":{\"in_progress\":false,\"last_failure\":null}";
  }
  out += ",\"config\":{\"generation\":" + std::to_string(snapshot.generation);
  ReloadStatus none;
  none.at = context.started_wall;
  const ReloadStatus& reload = context.reload ? *context.reload : none;
  out += ",\"last_reload\":{\"ok\":" + std::string(reload.ok ? "true" : "false") +
         ",\"at\":" + json_string(rfc3339(reload.at)) +
         ",\"error\":" + (reload.ok ? std::string("null") : json_string(reload.error)) +
         ",\"errors\":" + json_strings(reload.errors) +
         ",\"warnings\":" + json_strings(reload.warnings) + "}";
  out += ",\"reloads\":{\"succeeded\":" + std::to_string(reload.succeeded) +
         ",\"failed\":" + std::to_string(reload.failed) + "}}";
  out += ",\"log_lines_dropped\":" + std::to_string(Log::lines_dropped());
  out += ",\"announce\":" + announce_json(context);
  out += ",\"services\":[";
  bool first_service = true;
  for (const ServiceRuntime& service : snapshot.services) {
    if (!first_service) out += ',';
    first_service = false;
    const ServiceState& s = *service.state;
    out += "{\"name\":" + json_string(service.config->name) + ",\"listen\":[";
    for (size_t i = 0; i < service.config->listen.size(); ++i) {
      if (i > 0) out += ',';
      out += json_string(service.config->listen[i].to_string());
    }
    out += "],\"scheduler\":" + json_string(to_string(service.config->scheduler));
    if (const std::optional<uint64_t> checksum = service.groups.front().scheduler->table_checksum())
      out += ",\"maglev_checksum\":" + json_string(hex64(*checksum));
    if (const std::optional<bool> announced = service_announced(context, *service.config))
      out += ",\"announced\":" + std::string(*announced ? "true" : "false");
    out += ",\"forwarding\":" + json_string(to_string(service.config->forwarding));
    out += ",\"protocol\":" + json_string(to_string(service.config->protocol));
    out += ",\"sessions\":{\"active\":" + load(s.active) + ",\"total\":" + load(s.total) +
           ",\"rejected\":" + load(s.rejected) +
           ",\"proxy_header_errors\":" + load(s.proxy_header_errors) +
           ",\"denied\":" + load(s.denied) + ",\"limited\":" + load(s.limited) + "}";
    out += ",\"bytes\":{\"in\":" + load(s.bytes_in) + ",\"out\":" + load(s.bytes_out) + "}";
    if (in_kernel(service.config->forwarding))
      out += ",\"packets\":{\"in\":" + load(s.packets_in) + ",\"out\":" + load(s.packets_out) + "}";
    if (service.config->forwarding == Forwarding::dsr)
      out += ",\"packets_not_remembered\":" + load(s.packets_not_remembered);
    out += ",\"local_errors\":" + load(s.local_errors);
    out += rate_json(rates_of(context, s));
    if (const DiscoveryStatus* discovery = discovery_of(context, *service.config))
      out += ",\"discovery\":" + discovery_json(*discovery);
    out += ",\"servers\":[";
    bool first_server = true;
    for (const ServerRuntime& server : service.servers) {
      if (!first_server) out += ',';
      first_server = false;
      out += render_server_json(service, server, context, now);
    }
    out += "]}";
  }
  out += "]}\n";
  return out;
}

std::string render_metrics(const StatsContext& context) {
  const Snapshot& snapshot = *context.snapshot;
  std::string out;
  out.reserve(8192);
  const auto family = [&out](std::string_view name, std::string_view type, std::string_view help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  };
  const auto sample = [&out](std::string_view name, const std::string& labels,
                             const std::string& value) {
    out += name;
    if (!labels.empty()) out += "{" + labels + "}";
    out += ' ';
    out += value;
    out += '\n';
  };
  const auto service_label = [](const ServiceRuntime& service) {
    return "service=\"" + label_value(service.config->name) + "\"";
  };
  const auto server_label = [&service_label](const ServiceRuntime& service,
                                             const ServerRuntime& server) {
    return service_label(service) + ",server=\"" + label_value(server.config->name) + "\"";
  };

  family("fulcrum_build_info", "gauge", "Build information; the value is always 1.");
  sample("fulcrum_build_info", "version=\"" + label_value(version()) + "\"", "1");
  family("fulcrum_config_generation", "gauge",
         "Configuration generation: 1 at start, +1 per successful reload.");
  sample("fulcrum_config_generation", "", std::to_string(snapshot.generation));
  family("fulcrum_config_reloads_total", "counter", "Configuration reloads by result.");
  const uint64_t succeeded = context.reload ? context.reload->succeeded : 0;
  const uint64_t failed = context.reload ? context.reload->failed : 0;
  sample("fulcrum_config_reloads_total", "result=\"success\"", std::to_string(succeeded));
  sample("fulcrum_config_reloads_total", "result=\"failure\"", std::to_string(failed));
  // Prometheus' own prometheus_config_last_reload_successful, for alerts:
  // the file on disk is not what runs while it is 0.
  family("fulcrum_upgrades_total", "counter",
         "Binary upgrades in place (SIGUSR2) since the process started.");
  sample("fulcrum_upgrades_total", "",
         std::to_string(context.upgrade != nullptr ? context.upgrade->upgrades : 0));
  family("fulcrum_config_last_reload_successful", "gauge",
         "1 when the last reload applied (or none was asked since start-up), 0 when it failed.");
  sample("fulcrum_config_last_reload_successful", "",
         context.reload == nullptr || context.reload->ok ? "1" : "0");

  struct ServiceMetric {
    const char* name;
    const char* type;
    const char* help;
    const std::atomic<uint64_t> ServiceState::*field;
  };
  const ServiceMetric service_metrics[] = {
      {"fulcrum_service_sessions_active", "gauge", "Sessions of the service open now.",
       &ServiceState::active},
      {"fulcrum_service_sessions_total", "counter", "Sessions accepted by the service.",
       &ServiceState::total},
      {"fulcrum_service_sessions_rejected_total", "counter",
       "Sessions closed because no server could take them (no usable server, every connect "
       "failed, or fulcrum short of resources).",
       &ServiceState::rejected},
      {"fulcrum_service_bytes_in_total", "counter", "Bytes from clients delivered to servers.",
       &ServiceState::bytes_in},
      {"fulcrum_service_bytes_out_total", "counter", "Bytes from servers delivered to clients.",
       &ServiceState::bytes_out},
      {"fulcrum_service_proxy_header_errors_total", "counter",
       "Clients closed for a missing, malformed, oversized or late PROXY header.",
       &ServiceState::proxy_header_errors},
      {"fulcrum_service_sessions_denied_total", "counter",
       "Clients closed at once by allow/deny, or as PROXY senders accept_proxy_protocol does not "
       "list.",
       &ServiceState::denied},
      {"fulcrum_service_sessions_limited_total", "counter",
       "Clients closed at once by source_limits (concurrent sessions or new sessions per second "
       "of one client).",
       &ServiceState::limited},
      {"fulcrum_service_local_errors_total", "counter",
       "Session connect attempts and relays that failed for want of fulcrum's own resources "
       "(descriptors, memory, buffers, source ports); not counted as connect failures.",
       &ServiceState::local_errors},
  };
  for (const auto& metric : service_metrics) {
    family(metric.name, metric.type, metric.help);
    for (const ServiceRuntime& service : snapshot.services) {
      sample(metric.name, service_label(service), load((*service.state).*metric.field));
    }
  }

  // DNS discovery, for the services that discover.
  std::vector<std::pair<const ServiceRuntime*, const DiscoveryStatus*>> discovering;
  for (const ServiceRuntime& service : snapshot.services) {
    if (const DiscoveryStatus* status = discovery_of(context, *service.config))
      discovering.emplace_back(&service, status);
  }
  if (!discovering.empty()) {
    family("fulcrum_service_discovery_errors_total", "counter",
           "DNS discovery answers that failed or were empty (the known servers stayed).");
    for (const auto& [service, status] : discovering)
      sample("fulcrum_service_discovery_errors_total", service_label(*service),
             std::to_string(status->errors));
    family("fulcrum_service_discovery_last_success_timestamp_seconds", "gauge",
           "When DNS discovery last had a good answer (Unix time; 0: never).");
    for (const auto& [service, status] : discovering) {
      const double at =
          status->last_success
              ? std::chrono::duration<double>(status->last_success->time_since_epoch()).count()
              : 0.0;
      sample("fulcrum_service_discovery_last_success_timestamp_seconds", service_label(*service),
             number(at));
    }
    family("fulcrum_service_discovery_servers", "gauge",
           "Servers in the last good DNS answer (departing ones not counted).");
    for (const auto& [service, status] : discovering)
      sample("fulcrum_service_discovery_servers", service_label(*service),
             std::to_string(status->current.size()));
  }

  // A gauge with one sample per server, its value read by `value`.
  const auto server_gauge = [&](std::string_view name, std::string_view help, auto value) {
    family(name, "gauge", help);
    for (const ServiceRuntime& service : snapshot.services) {
      for (const ServerRuntime& server : service.servers)
        sample(name, server_label(service, server), value(server));
    }
  };
  server_gauge("fulcrum_server_up",
               "1 when the server passes its health checks (or has none), else 0; see "
               "fulcrum_server_state for drain and maint.",
               [](const ServerRuntime& server) { return server.state->healthy() ? "1" : "0"; });
  family("fulcrum_server_state", "gauge",
         "1 for the server's current state (up, down, drain, maint), 0 for the others.");
  for (const ServiceRuntime& service : snapshot.services) {
    for (const ServerRuntime& server : service.servers) {
      const ServerStatus current = server.state->status();
      for (const ServerStatus status : kStatuses) {
        sample("fulcrum_server_state",
               server_label(service, server) + ",state=\"" + std::string(to_string(status)) + "\"",
               status == current ? "1" : "0");
      }
    }
  }
  server_gauge("fulcrum_server_weight",
               "Weight in force for new sessions: 0 unless the server is up, ramping during slow "
               "start, else the configured weight or the one set through the admin API.",
               [](const ServerRuntime& server) { return std::to_string(server.state->weight()); });
  server_gauge("fulcrum_server_configured_weight",
               "Weight the configuration file gives the server.",
               [](const ServerRuntime& server) { return std::to_string(server.config->weight); });
  server_gauge("fulcrum_server_sessions_active", "Sessions open on the server now.",
               [](const ServerRuntime& server) { return load(server.state->active); });
  server_gauge(
      "fulcrum_server_max_connections",
      "The server's session limit in force (0 = unlimited): its agent's maxconn:N, else its "
      "max_connections; it is full while fulcrum_server_sessions_active reaches it.",
      [](const ServerRuntime& server) { return std::to_string(server.state->max_connections()); });
  struct ServerMetric {
    const char* name;
    const char* help;
    const std::atomic<uint64_t> ServerState::*field;
  };
  const ServerMetric server_metrics[] = {
      {"fulcrum_server_sessions_total", "Sessions sent to the server.", &ServerState::total},
      {"fulcrum_server_connect_failures_total",
       "Failed connect attempts to the server, retried ones included.",
       &ServerState::connect_failures},
      {"fulcrum_server_connects_total", "Successful connects to the server.",
       &ServerState::connects},
      {"fulcrum_server_bytes_in_total", "Bytes from clients delivered to the server.",
       &ServerState::bytes_in},
      {"fulcrum_server_bytes_out_total", "Bytes from the server delivered to clients.",
       &ServerState::bytes_out},
      {"fulcrum_server_health_checks_failed_total", "Failed health checks, active and passive.",
       &ServerState::checks_failed},
      {"fulcrum_server_local_errors_total",
       "Connects to the server (sessions and health checks) and relays that failed for want of "
       "fulcrum's own resources (descriptors, memory, buffers, source ports); neither connect "
       "failures nor failed health checks.",
       &ServerState::local_errors},
      {"fulcrum_server_sessions_closed_on_down_total",
       "Sessions reset because the server was marked down (on_server_down: close).",
       &ServerState::closed_on_down},
  };
  for (const auto& metric : server_metrics) {
    family(metric.name, "counter", metric.help);
    for (const ServiceRuntime& service : snapshot.services) {
      for (const ServerRuntime& server : service.servers) {
        sample(metric.name, server_label(service, server), load((*server.state).*metric.field));
      }
    }
  }

  family("fulcrum_server_connect_seconds_total", "counter",
         "Total time of the successful connects to the server (divide by "
         "fulcrum_server_connects_total).");
  for (const ServiceRuntime& service : snapshot.services) {
    for (const ServerRuntime& server : service.servers) {
      const double seconds =
          static_cast<double>(server.state->connect_time_us.load(std::memory_order_relaxed)) / 1e6;
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%.6f", seconds);
      sample("fulcrum_server_connect_seconds_total", server_label(service, server), buffer);
    }
  }

  // Kernel modes (SPEC.md "Forwarding in the kernel"): packets, from the
  // nft counters; services of `forwarding: proxy` have no sample.
  const bool any_kernel =
      std::any_of(snapshot.services.begin(), snapshot.services.end(),
                  [](const ServiceRuntime& s) { return in_kernel(s.config->forwarding); });
  struct PacketMetric {
    const char* name;
    const char* help;
    const std::atomic<uint64_t> ServiceState::*service_field;
    const std::atomic<uint64_t> ServerState::*server_field;
  };
  const PacketMetric packet_metrics[] = {
      {"packets_in_total", "Packets from clients forwarded by the kernel (nat, fullnat, dsr).",
       &ServiceState::packets_in, &ServerState::packets_in},
      {"packets_out_total",
       "Packets from servers forwarded to clients by the kernel (nat, fullnat; dsr replies "
       "never pass fulcrum).",
       &ServiceState::packets_out, &ServerState::packets_out},
  };
  for (const auto& metric :
       std::span<const PacketMetric>(packet_metrics, any_kernel ? std::size(packet_metrics) : 0)) {
    const std::string service_name = std::string("fulcrum_service_") + metric.name;
    const std::string server_name = std::string("fulcrum_server_") + metric.name;
    family(service_name, "counter", metric.help);
    for (const ServiceRuntime& service : snapshot.services) {
      if (in_kernel(service.config->forwarding))
        sample(service_name, service_label(service), load((*service.state).*metric.service_field));
    }
    family(server_name, "counter", metric.help);
    for (const ServiceRuntime& service : snapshot.services) {
      if (!in_kernel(service.config->forwarding)) continue;
      for (const ServerRuntime& server : service.servers)
        sample(server_name, server_label(service, server),
               load((*server.state).*metric.server_field));
    }
  }

  const bool any_dsr =
      std::any_of(snapshot.services.begin(), snapshot.services.end(),
                  [](const ServiceRuntime& s) { return s.config->forwarding == Forwarding::dsr; });
  if (any_dsr) {
    family("fulcrum_service_packets_not_remembered_total", "counter",
           "dsr: packets forwarded while the flow memory had no room for their flow (raise "
           "dsr.flows).");
    for (const ServiceRuntime& service : snapshot.services) {
      if (service.config->forwarding == Forwarding::dsr)
        sample("fulcrum_service_packets_not_remembered_total", service_label(service),
               load(service.state->packets_not_remembered));
    }
  }

  family("fulcrum_log_lines_dropped_total", "counter",
         "Log lines dropped because stderr's reader fell behind and the log buffer was full.");
  sample("fulcrum_log_lines_dropped_total", "", std::to_string(Log::lines_dropped()));

  const ProcessFigures process = process_figures();
  family("process_open_fds", "gauge", "Number of open file descriptors.");
  sample("process_open_fds", "", std::to_string(process.open_fds));
  family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
  sample("process_max_fds", "", std::to_string(process.max_fds));
  family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  sample("process_resident_memory_bytes", "", std::to_string(process.resident_bytes));
  family("process_cpu_seconds_total", "counter",
         "Total user and system CPU time spent in seconds.");
  sample("process_cpu_seconds_total", "", number(process.cpu_seconds));
  family("process_start_time_seconds", "gauge",
         "Start time of the process since the Unix epoch in seconds.");
  sample("process_start_time_seconds", "",
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                            context.started_wall.time_since_epoch())
                            .count()));
  return out;
}

}  // namespace fulcrum
