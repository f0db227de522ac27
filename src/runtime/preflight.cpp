#include "fulcrum/preflight.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>

#include "fulcrum/admission.hpp"
#include "fulcrum/privileges.hpp"
#include "fulcrum/token_file.hpp"
#include "fulcrum/worker.hpp"

namespace fulcrum {

namespace {

void check_token_file(const Config& config, Preflight& out) {
  const StatsConfig& stats = config.stats;
  if (!stats.enabled || stats.admin_token_file.empty()) return;
  TokenFile file = read_token_file("admin_token_file", stats.admin_token_file);
  if (!file.token) {
    out.errors.push_back(config_error(config, stats.admin_token_file_at, file.error));
    return;
  }
  if (file.readable_by_others()) {
    out.warnings.push_back(config_error(config, stats.admin_token_file_at,
                                        "admin_token_file " + stats.admin_token_file +
                                            " is readable by group or others (mode " +
                                            file.mode_text() + "): chmod 600 it"));
  }
  out.admin_token = std::move(file.token);
}

void check_user(const Config& config, const Config* started, Preflight& out) {
  const GlobalConfig& global = config.global;
  if (started) {
    if (global.user != started->global.user || global.group != started->global.group) {
      out.warnings.push_back(config_error(
          config, global.user_at,
          "global.user and global.group changes need a restart; the process keeps its user"));
    }
    return;
  }
  if (global.user.empty()) return;
  if (const std::string error = cannot_become(global.user, global.group); !error.empty())
    out.errors.push_back(config_error(config, global.user_at, error));
}

// Once per place: services that inherit address_mode from `defaults` share
// its position.
void check_transparent(const Config& config, Preflight& out) {
  const std::string reason = transparent_capability_missing(config);
  if (reason.empty()) return;
  std::set<std::pair<int, int>> reported;
  for (const ServiceConfig& service : config.services) {
    if (service.address_mode != AddressMode::transparent) continue;
    const Position at = service.address_mode_at;
    if (!reported.emplace(at.line, at.column).second) continue;
    out.errors.push_back(config_error(config, at, "service " + service.name + ": " + reason));
  }
}

// Once per place, as check_transparent.
void check_kernel(const Config& config, Preflight& out) {
  const std::string reason = kernel_capability_missing(config);
  if (reason.empty()) return;
  std::set<std::pair<int, int>> reported;
  for (const ServiceConfig& service : config.services) {
    if (!in_kernel(service.forwarding)) continue;
    const Position at = service.forwarding_at;
    if (!reported.emplace(at.line, at.column).second) continue;
    std::string message = "service " + service.name + ": forwarding ";
    message += to_string(service.forwarding);
    message += ' ';
    message += reason;
    out.errors.push_back(config_error(config, at, std::move(message)));
  }
  if (config.global.announce) {
    out.errors.push_back(config_error(config, config.global.announce->interface_at,
                                      "global.announce needs CAP_NET_ADMIN to create interface " +
                                          config.global.announce->interface +
                                          " and put addresses on it"));
  }
}

// Start-up's own count of descriptors comes once every thread's event loop
// exists; without them, a lower bound: the limit fulcrum will raise itself
// to (the hard one) cannot even hold stdio and what is kept outside
// sessions, plus a few sessions. Catches a LimitNOFILE far too small.
void check_open_file_limit(const Config& config, Preflight& out) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_max == RLIM_INFINITY) return;
  constexpr int64_t kStdio = 3;
  constexpr int64_t kFewestSessionFds = 4;
  const auto hard = static_cast<int64_t>(limit.rlim_max);
  const int64_t kept = kStdio + fds_outside_sessions(config, worker_count(config.global));
  if (hard - kept >= kFewestSessionFds) return;
  out.errors.push_back(config_error(
      config, {},
      "the open-file limit (" + std::to_string(hard) + ") is too small: this configuration keeps " +
          std::to_string(kept) +
          " descriptors for itself (listeners, health checks, the stats port) and needs at least " +
          std::to_string(kFewestSessionFds) +
          " more for sessions; raise LimitNOFILE= (systemd) or ulimit -n"));
}

// `accept_proxy_protocol: true` lets any client choose the address servers
// see (and the one allow, deny and source_limits judge).
void check_proxy_trust(const Config& config, Preflight& out) {
  for (const ServiceConfig& service : config.services) {
    const ProxyTrust& trust = service.accept_proxy_protocol;
    if (!trust.enabled || !trust.senders.empty()) continue;
    out.warnings.push_back(config_error(
        config, trust.at,
        "service " + service.name +
            ": accept_proxy_protocol: true trusts every sender, so any client can choose the "
            "address servers see; list the proxies' addresses instead"));
  }
}

}  // namespace

Preflight preflight(const Config& config, const Config* started) {
  Preflight out;
  check_user(config, started, out);
  check_token_file(config, out);
  check_transparent(config, out);
  check_kernel(config, out);
  check_proxy_trust(config, out);
  if (!started) check_open_file_limit(config, out);
  if (!out.errors.empty()) out.admin_token.reset();
  // In file order, as the loader's.
  const auto by_position = [](const ConfigError& a, const ConfigError& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  };
  std::stable_sort(out.errors.begin(), out.errors.end(), by_position);
  std::stable_sort(out.warnings.begin(), out.warnings.end(), by_position);
  return out;
}

}  // namespace fulcrum
