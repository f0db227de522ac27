// `fulcrumctl upgrade` once the daemon accepted (202): the count its answer
// carries, how /stats tells the upgrade's outcome, and the wait for it. The
// network and the clock come in as functions, so that the unit tests drive
// every path of the wait.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "api.hpp"
#include "json.hpp"

namespace fulcrum::ctl {

// The daemon answers the request once the new binary's check is over,
// which it allows 30 s (src/daemon.cpp): the request waits that and more.
inline constexpr std::chrono::seconds kUpgradeRequestTimeout{35};
// How often /stats is asked after the 202, and for how long before giving
// up (each poll within the usual kRequestTimeout).
inline constexpr std::chrono::milliseconds kUpgradePollInterval{100};
inline constexpr std::chrono::seconds kUpgradeConfirmTimeout{30};

// The daemon's upgrade count before this upgrade, from the 202's body
// (`{"ok":true,"binary":"...","version":"...","upgrades":N}`); throws a
// ReplyError naming what is missing.
uint64_t accepted_upgrades(const Json& reply);

// An RFC 3339 time (`2026-12-05T02:30:08Z`, `2026-12-05T03:30:08.25+01:00`)
// in whole seconds, the fraction dropped; nullopt when `text` is not one.
std::optional<std::chrono::sys_seconds> parse_rfc3339(std::string_view text);

struct UpgradeProgress {
  enum class State { waiting, done, failed };
  State state = State::waiting;
  // done: `upgraded to fulcrum VERSION (upgrades M, pid up since TIME)`;
  // failed: `upgrade failed: ERROR`.
  std::string line;
};

// What one /stats says of the upgrade accepted with `upgrades_before` by a
// command started at `started`: done once `upgrades` exceeds the count;
// failed when no upgrade is under way and `upgrade.last_failure` is from
// the second `started` falls in or later (the daemon writes whole seconds,
// from its own clock); waiting otherwise. Throws a ReplyError when /stats
// lacks a field this reads.
UpgradeProgress upgrade_progress(const Json& stats, uint64_t upgrades_before,
                                 std::chrono::system_clock::time_point started);

// The network and the clock of the wait.
struct UpgradeWait {
  std::function<ApiResult()> poll;  // GET /stats, on a fresh connection
  std::function<std::chrono::steady_clock::time_point()> now;
  std::function<void(std::chrono::milliseconds)> sleep;
};

struct UpgradeEnd {
  int exit_code = 0;
  // The line for stdout when the exit code is 0, else the lines for stderr.
  std::string text;
};

// Asks /stats every kUpgradePollInterval until upgrade_progress() says done
// or failed, or kUpgradeConfirmTimeout has passed. A poll that gets no
// answer (the connection refused or reset while the daemon execs) or an
// error status is tried again; a reply that is not the /stats JSON ends
// the wait.
UpgradeEnd follow_upgrade(uint64_t upgrades_before, std::chrono::system_clock::time_point started,
                          const UpgradeWait& wait);

}  // namespace fulcrum::ctl
