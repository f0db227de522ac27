// Following an upgrade through /stats: the PID stays, so only the upgrade
// count tells the new image from the old one, and only the failure's time
// tells this upgrade's failure from an earlier one.
#include "upgrade.hpp"

#include <utility>

#include "exit_codes.hpp"
#include "reply.hpp"

namespace fulcrum::ctl {

namespace {

// `count` decimal digits at `at`, or nullopt.
std::optional<int> digits(std::string_view text, size_t at, size_t count) {
  if (at > text.size() || count > text.size() - at) return std::nullopt;
  int value = 0;
  for (char c : text.substr(at, count)) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

bool is_one_of(std::string_view text, size_t at, std::string_view characters) {
  return at < text.size() && characters.find(text[at]) != std::string_view::npos;
}

}  // namespace

uint64_t accepted_upgrades(const Json& reply) { return Node(reply, "")["upgrades"].count(); }

std::optional<std::chrono::sys_seconds> parse_rfc3339(std::string_view text) {
  namespace chrono = std::chrono;
  // YYYY-MM-DDTHH:MM:SS at fixed places (RFC 3339 allows a lower-case t and z).
  const std::optional<int> year = digits(text, 0, 4);
  const std::optional<int> month = digits(text, 5, 2);
  const std::optional<int> day = digits(text, 8, 2);
  const std::optional<int> hour = digits(text, 11, 2);
  const std::optional<int> minute = digits(text, 14, 2);
  const std::optional<int> second = digits(text, 17, 2);
  if (!year || !month || !day || !hour || !minute || !second || text[4] != '-' || text[7] != '-' ||
      !is_one_of(text, 10, "Tt") || text[13] != ':' || text[16] != ':')
    return std::nullopt;
  const chrono::year_month_day date{chrono::year(*year), chrono::month(*month), chrono::day(*day)};
  // 60: a leap second.
  if (!date.ok() || *hour > 23 || *minute > 59 || *second > 60) return std::nullopt;
  size_t at = 19;
  if (is_one_of(text, at, ".")) {
    const size_t fraction = ++at;
    while (is_one_of(text, at, "0123456789")) ++at;
    if (at == fraction) return std::nullopt;
  }
  chrono::sys_seconds time = chrono::sys_days(date) + chrono::hours(*hour) +
                             chrono::minutes(*minute) + chrono::seconds(*second);
  if (is_one_of(text, at, "Zz")) return at + 1 == text.size() ? std::optional(time) : std::nullopt;
  // +HH:MM or -HH:MM: how far the local time is ahead of UTC.
  if (!is_one_of(text, at, "+-") || text.size() != at + 6 || text[at + 3] != ':')
    return std::nullopt;
  const std::optional<int> offset_hours = digits(text, at + 1, 2);
  const std::optional<int> offset_minutes = digits(text, at + 4, 2);
  if (!offset_hours || !offset_minutes || *offset_hours > 23 || *offset_minutes > 59)
    return std::nullopt;
  const chrono::minutes offset = chrono::hours(*offset_hours) + chrono::minutes(*offset_minutes);
  return text[at] == '+' ? time - offset : time + offset;
}

UpgradeProgress upgrade_progress(const Json& stats, uint64_t upgrades_before,
                                 std::chrono::system_clock::time_point started) {
  const Node root(stats, "");
  const uint64_t upgrades = root["upgrades"].count();
  if (upgrades > upgrades_before) {
    return {UpgradeProgress::State::done,
            "upgraded to fulcrum " + root["version"].string() + " (upgrades " +
                std::to_string(upgrades) + ", pid up since " + root["started_at"].string() + ")"};
  }
  const Node upgrade = root["upgrade"];
  const Node failure = upgrade["last_failure"];
  // The daemon is under way from the request to the exec or the failure: a
  // failure shown meanwhile is an earlier upgrade's.
  if (upgrade["in_progress"].boolean() || failure.is_null()) return {};
  const Node at = failure["at"];
  const std::optional<std::chrono::sys_seconds> failed_at = parse_rfc3339(at.string());
  if (!failed_at) throw ReplyError(at.path() + " is not an RFC 3339 time: " + at.string());
  if (*failed_at < std::chrono::floor<std::chrono::seconds>(started)) return {};
  return {UpgradeProgress::State::failed,
          "upgrade failed: " + body_summary(failure["error"].string(), 4096)};
}

UpgradeEnd follow_upgrade(uint64_t upgrades_before, std::chrono::system_clock::time_point started,
                          const UpgradeWait& wait) {
  const std::chrono::steady_clock::time_point deadline = wait.now() + kUpgradeConfirmTimeout;
  while (true) {
    // The exec follows the 202 at once: a poll right away would find the
    // old image still under way.
    wait.sleep(kUpgradePollInterval);
    const ApiResult result = wait.poll();
    if (result.ok) {
      std::string error;
      const std::optional<Json> stats = Json::parse(result.body, &error);
      if (!stats) return {kExitFailure, "the daemon's reply is not valid JSON (" + error + ")"};
      UpgradeProgress progress;
      try {
        progress = upgrade_progress(*stats, upgrades_before, started);
      } catch (const ReplyError& e) {
        return {kExitFailure, std::string("unexpected reply from the daemon: ") + e.what()};
      }
      if (progress.state == UpgradeProgress::State::done) return {kExitOk, progress.line};
      if (progress.state == UpgradeProgress::State::failed) return {kExitFailure, progress.line};
    }
    if (wait.now() >= deadline) {
      std::string text =
          "upgrade not confirmed within " + std::to_string(kUpgradeConfirmTimeout.count()) + "s";
      // A last poll without an answer says why: the daemon may be gone.
      if (!result.ok) text += "\nlast poll: " + result.error;
      return {kExitFailure, std::move(text)};
    }
  }
}

}  // namespace fulcrum::ctl
