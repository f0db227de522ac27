// The write API of the stats endpoint: its request body, its token, and
// the budget of log lines for failed authentications.
#pragma once

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

// Checks an `Authorization` header value against the token in time that does
// not depend on where they differ.
bool bearer_matches(std::string_view authorization, std::string_view token);

}  // namespace fulcrum
