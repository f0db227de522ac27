#include "fulcrum/preflight.hpp"

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>

#include "fulcrum/privileges.hpp"
#include "fulcrum/token_file.hpp"

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

}  // namespace

Preflight preflight(const Config& config, const Config* started) {
  Preflight out;
  check_user(config, started, out);
  check_token_file(config, out);
  check_transparent(config, out);
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
