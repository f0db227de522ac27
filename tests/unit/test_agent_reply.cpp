// The agent check's reply line, in HAProxy's agent-check words.
#include <doctest/doctest.h>

#include <string>

#include "fulcrum/agent_reply.hpp"

using namespace fulcrum;

namespace {

AgentReply parsed(std::string_view line) {
  std::string error;
  const std::optional<AgentReply> reply = parse_agent_reply(line, error);
  REQUIRE_MESSAGE(reply.has_value(), error);
  return *reply;
}

std::string refused(std::string_view line) {
  std::string error;
  const std::optional<AgentReply> reply = parse_agent_reply(line, error);
  REQUIRE_FALSE(reply.has_value());
  return error;
}

}  // namespace

TEST_CASE("agent reply: each word alone") {
  CHECK(parsed("up").up == true);
  for (const char* down : {"down", "fail", "stopped"}) {
    CAPTURE(down);
    CHECK(parsed(down).up == false);
  }
  CHECK(parsed("ready").admin == AdminState::ready);
  CHECK(parsed("drain").admin == AdminState::drain);
  CHECK(parsed("maint").admin == AdminState::maint);
  CHECK(parsed("75%").weight_percent == 75u);
  CHECK(parsed("0%").weight_percent == 0u);
  CHECK(parsed("250%").weight_percent == 250u);
  CHECK(parsed("maxconn:30").max_connections == 30u);
  CHECK(parsed("maxconn:0").max_connections == 0u);
  // What a word does not mention stays absent (the agent's earlier word holds).
  const AgentReply up = parsed("up");
  CHECK_FALSE(up.admin.has_value());
  CHECK_FALSE(up.weight_percent.has_value());
  CHECK_FALSE(up.max_connections.has_value());
}

TEST_CASE("agent reply: words combined, separated by spaces, tabs or commas, in any case") {
  const AgentReply reply = parsed("  UP,Drain\t50%  MaxConn:12 ");
  CHECK(reply.up == true);
  CHECK(reply.admin == AdminState::drain);
  CHECK(reply.weight_percent == 50u);
  CHECK(reply.max_connections == 12u);
  // The last word on a part wins.
  CHECK(parsed("drain ready").admin == AdminState::ready);
  CHECK(parsed("10% 20%").weight_percent == 20u);
}

TEST_CASE("agent reply: the text after # describes a down word") {
  const AgentReply reply = parsed("down # disk full ");
  CHECK(reply.up == false);
  CHECK(reply.description == "disk full");
  // Words inside the description are not parsed.
  CHECK_FALSE(parsed("up #maint tonight").admin.has_value());
}

TEST_CASE("agent reply: unknown words are passed over; nothing understood is an error") {
  const AgentReply reply = parsed("up someday-new-word 80%");
  CHECK(reply.up == true);
  CHECK(reply.weight_percent == 80u);
  CHECK(refused("") == "agent reply empty");
  CHECK(refused(" ,\t ") == "agent reply empty");
  CHECK(refused("OK") == "agent reply not understood");
  // Malformed numbers are not words of the protocol.
  CHECK(refused("%") == "agent reply not understood");
  CHECK(refused("x%") == "agent reply not understood");
  CHECK(refused("-5%") == "agent reply not understood");
  CHECK(refused("99999999999%") == "agent reply not understood");
  CHECK(refused("maxconn:") == "agent reply not understood");
  CHECK(refused("maxconn:ten") == "agent reply not understood");
  CHECK(refused("# only a description") == "agent reply empty");
}
