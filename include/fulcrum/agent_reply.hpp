// The agent check's reply (`health_check.agent`): one line from a program on
// the server, in the words of HAProxy's agent-check, so that agents written
// for HAProxy work unchanged. Pure: parsed here, applied by the control plane.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fulcrum/server_state.hpp"

namespace fulcrum {

// What one reply says. Each part is absent when the reply does not mention
// it: the agent's earlier word on that part stays.
struct AgentReply {
  // `up` (true); `down`, `fail` or `stopped` (false).
  std::optional<bool> up;
  // `ready`, `drain` or `maint`.
  std::optional<AdminState> admin;
  // `N%`: the weight in force is N % of the configured weight.
  std::optional<uint32_t> weight_percent;
  // `maxconn:N`: the server's max_connections (0 = unlimited).
  std::optional<uint32_t> max_connections;
  // The text after `#` of a down word, for the operator ("agent says down:
  // TEXT").
  std::string description;
};

// Parses one reply line (without its line end). Words are separated by
// spaces, tabs or commas and compared without case; words it does not know
// are passed over, as HAProxy does, so that newer agents still work. Returns
// nothing when no word is understood (an empty reply too), with `error`
// saying why.
std::optional<AgentReply> parse_agent_reply(std::string_view line, std::string& error);

}  // namespace fulcrum
