// The write API of the stats endpoint: its request body, its token, and
// the budget of log lines for failed authentications.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fulcrum/server_state.hpp"

namespace fulcrum {

// A change asked for by POST /api/v1/services/S/servers/V: `{"state":
// "ready"|"drain"|"maint"}` and/or `{"weight": 0..1000}`.
struct AdminChange {
  std::optional<AdminState> state;
  std::optional<uint32_t> weight;
};

// Parses the body strictly: one flat JSON object with only those keys, at
// least one of them, no duplicates. On error returns nullopt and sets
// `error` to a one-line reason.
std::optional<AdminChange> parse_admin_change(std::string_view body, std::string& error);

// Reads stats.admin_token_file with the reader fulcrumctl shares
// (read_token_file: at most 4 KiB, no control characters), and warns when
// group or others may read it. Empty optional and `error` set when refused.
std::optional<std::string> read_admin_token(const std::string& path, std::string& error);

// Checks an `Authorization` header value against the token in time that does
// not depend on where they differ.
bool bearer_matches(std::string_view authorization, std::string_view token);

// How many lines a kind of event may log: at most `per_window` in each
// window, which opens with the first event after the previous one ended.
// The rest are only counted, for one summary line (failed admin
// authentications: someone guessing tokens must not flood the log).
class LogBudget {
 public:
  using Clock = std::chrono::steady_clock;
  LogBudget(unsigned per_window, Clock::duration window)
      : per_window_(per_window), window_(window) {}

  // Whether the event at `now` gets its line; if not, it is counted.
  bool spend(Clock::time_point now);
  // The end of the current window: when to log the summary.
  Clock::time_point window_end() const { return window_start_ + window_; }
  // The events counted since the previous call.
  uint64_t take_suppressed();

 private:
  unsigned per_window_;
  Clock::duration window_;
  Clock::time_point window_start_{};
  unsigned spent_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace fulcrum
