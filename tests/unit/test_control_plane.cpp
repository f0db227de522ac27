// The ControlPlane: every fact in, one status and weight per server out, one
// ChangeSet per decision to every data plane.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "config_text.hpp"
#include "fulcrum/control_plane.hpp"

using namespace fulcrum;
using namespace fulcrum::test;
using namespace std::chrono_literals;

namespace {

// Two servers, `a` (weight 3) and `b` (weight 1, slow start 10s), with or
// without a health check.
Config web(bool health_check, uint32_t weight_a = 3) {
  return valid(
      "services:\n"
      "  - name: web\n"
      "    listen: 127.0.0.1:1\n" +
      std::string(health_check ? "    health_check: {interval: 1s, timeout: 1s}\n" : "") +
      "    servers:\n"
      "      - {name: a, address: 127.0.0.1:2, weight: " +
      std::to_string(weight_a) +
      "}\n"
      "      - {name: b, address: 127.0.0.1:3, weight: 100, slow_start: 10s}\n");
}

// A data plane that remembers what it was told.
struct RecordingPlane final : DataPlane {
  struct Seen {
    uint64_t generation;
    bool is_new;
    bool had_previous;
    std::vector<std::string> services;
  };
  std::vector<Seen> seen;

  void apply(const ChangeSet& changes) override {
    Seen entry{changes.snapshot->generation, changes.is_new, changes.previous != nullptr, {}};
    for (const ServiceRuntime* service : changes.services)
      entry.services.push_back(service->config->name);
    seen.push_back(entry);
  }
};

// A data plane that refuses configurations with a service named `refused`,
// and records the servers' weights and statuses it was asked about.
struct RefusingPlane final : DataPlane {
  std::vector<std::string> checked;  // "service/server status weight"
  void apply(const ChangeSet&) override {}
  std::string check(const ChangeSet& changes) override {
    for (const ServiceRuntime* service : changes.services) {
      if (service->config->name == "refused") return "refused by the test";
      for (const ServerRuntime& server : service->servers) {
        checked.push_back(service->config->name + "/" + server.config->name + " " +
                          std::string(to_string(server.state->status())) + " " +
                          std::to_string(server.state->weight()));
      }
    }
    return "";
  }
};

struct Fixture {
  RecordingPlane plane;
  ControlPlane control{1};
  SteadyTime t0 = std::chrono::steady_clock::now();

  Fixture() { control.add_data_plane(plane); }
  const ServiceRuntime& service() const { return control.snapshot()->services.at(0); }
  const ServerRuntime& server(size_t i) const { return service().servers.at(i); }
  const ServerState& state(size_t i) const { return *server(i).state; }
};

}  // namespace

TEST_CASE("install settles every server and publishes the whole snapshot") {
  Fixture f;
  f.control.install(web(false), f.t0);
  CHECK(f.control.snapshot()->generation == 1);
  CHECK(f.state(0).status() == ServerStatus::up);
  CHECK(f.state(0).weight() == 3);
  CHECK(f.state(1).weight() == 100);  // up since configured: no slow start
  REQUIRE(f.plane.seen.size() == 1);
  CHECK(f.plane.seen[0].is_new);
  CHECK_FALSE(f.plane.seen[0].had_previous);
  CHECK(f.plane.seen[0].services == std::vector<std::string>{"web"});

  f.control.install(web(false), f.t0);
  CHECK(f.control.snapshot()->generation == 2);
  REQUIRE(f.plane.seen.size() == 2);
  CHECK(f.plane.seen[1].had_previous);
}

TEST_CASE("a reload that turns the health check off brings a server marked down back up") {
  Fixture f;
  f.control.install(web(true), f.t0);
  f.control.report_health(f.service(), f.server(0), false, f.t0);
  CHECK(f.state(0).status() == ServerStatus::down);
  f.control.install(web(false), f.t0 + 1s);
  CHECK(f.state(0).healthy());
  CHECK(f.state(0).status() == ServerStatus::up);
}

TEST_CASE("a reload keeping the check keeps the verdict; adding a check starts from healthy") {
  Fixture f;
  f.control.install(web(true), f.t0);
  f.control.report_health(f.service(), f.server(0), false, f.t0);
  f.control.install(web(true), f.t0 + 1s);
  CHECK(f.state(0).status() == ServerStatus::down);
}

TEST_CASE("an operator's drain and maint survive reloads; an operator's weight ends there") {
  Fixture f;
  f.control.install(web(false), f.t0);
  f.control.operator_request(f.service(), f.server(0), AdminState::drain, 7, f.t0);
  CHECK(f.state(0).status() == ServerStatus::drain);
  CHECK(f.state(0).assigned_weight() == 7);
  CHECK(f.state(0).weight() == 0);  // in force for new sessions: none
  f.control.install(web(false, 5), f.t0 + 1s);
  CHECK(f.state(0).status() == ServerStatus::drain);
  CHECK(f.state(0).assigned_weight() == 5);
  f.control.operator_request(f.service(), f.server(0), AdminState::maint, std::nullopt, f.t0);
  CHECK(f.state(0).status() == ServerStatus::maint);
  CHECK(f.state(0).weight() == 0);
  f.control.operator_request(f.service(), f.server(0), AdminState::ready, std::nullopt, f.t0);
  CHECK(f.state(0).status() == ServerStatus::up);
  CHECK(f.state(0).weight() == 5);
}

TEST_CASE("weight 0 is a drain: status drain, its own last change; ready restores the weight") {
  Fixture f;
  f.control.install(web(false), f.t0);
  CHECK(f.state(0).last_change_ns() == (f.t0.time_since_epoch()).count());
  f.control.operator_request(f.service(), f.server(0), std::nullopt, 0, f.t0 + 1s);
  CHECK(f.state(0).status() == ServerStatus::drain);
  CHECK(f.state(0).weight() == 0);
  CHECK(f.state(0).last_change_ns() == (f.t0 + 1s).time_since_epoch().count());
  f.control.operator_request(f.service(), f.server(0), AdminState::ready, std::nullopt, f.t0 + 2s);
  CHECK(f.state(0).status() == ServerStatus::up);
  CHECK(f.state(0).assigned_weight() == 3);
  CHECK(f.state(0).weight() == 3);
  CHECK(f.state(0).last_change_ns() == (f.t0 + 2s).time_since_epoch().count());
  // An explicit weight 0 beside ready is what the operator asked for.
  f.control.operator_request(f.service(), f.server(0), AdminState::ready, 0, f.t0 + 3s);
  CHECK(f.state(0).status() == ServerStatus::drain);
}

TEST_CASE("ready cannot undo a weight of 0 in the configuration file") {
  Fixture f;
  f.control.install(web(false, 0), f.t0);
  CHECK(f.state(0).status() == ServerStatus::drain);
  f.control.operator_request(f.service(), f.server(0), AdminState::ready, std::nullopt, f.t0);
  CHECK(f.state(0).status() == ServerStatus::drain);
  CHECK(f.state(0).weight() == 0);
  f.control.install(web(false, 2), f.t0 + 1s);
  CHECK(f.state(0).status() == ServerStatus::up);
  CHECK(f.state(0).weight() == 2);
}

// `web` without server `a`.
Config web_without_a() {
  return valid(
      "services:\n"
      "  - name: web\n"
      "    listen: 127.0.0.1:1\n"
      "    servers:\n"
      "      - {name: b, address: 127.0.0.1:3, weight: 100, slow_start: 10s}\n");
}

TEST_CASE("a server removed by reload and added back starts afresh: up, zero counters") {
  Fixture f;
  f.control.install(web(false), f.t0);
  f.control.operator_request(f.service(), f.server(0), AdminState::drain, std::nullopt, f.t0);
  // Held here only so that its address cannot be reused by the new state.
  const std::shared_ptr<ServerState> old_state = f.server(0).state;
  old_state->total.fetch_add(16);
  f.control.install(web_without_a(), f.t0 + 1s);
  f.control.install(web(false), f.t0 + 2s);
  CHECK(f.server(0).state != old_state);
  CHECK(f.state(0).status() == ServerStatus::up);
  CHECK(f.state(0).admin() == AdminState::ready);
  CHECK(f.state(0).weight() == 3);
  CHECK(f.state(0).total.load() == 0);
  CHECK(f.state(0).last_change_ns() == (f.t0 + 2s).time_since_epoch().count());
  // The server that stayed kept its state and clock.
  CHECK(f.state(1).last_change_ns() == f.t0.time_since_epoch().count());
}

TEST_CASE("a removed server with sessions is forgotten once the last one ends") {
  Fixture f;
  f.control.install(web(false), f.t0);
  f.control.operator_request(f.service(), f.server(0), AdminState::maint, std::nullopt, f.t0);
  const std::shared_ptr<ServerState> old_state = f.server(0).state;
  REQUIRE(old_state->try_acquire());  // a session still runs on it
  f.control.install(web_without_a(), f.t0 + 1s);
  f.control.tick(f.t0 + 2s);
  // Back while its session runs: still the same server, still in maint.
  f.control.install(web(false), f.t0 + 3s);
  CHECK(f.server(0).state == old_state);
  CHECK(f.state(0).status() == ServerStatus::maint);
  // Removed again; its session ends; the next tick forgets it.
  f.control.install(web_without_a(), f.t0 + 4s);
  old_state->release();
  f.control.tick(f.t0 + 5s);
  f.control.install(web(false), f.t0 + 6s);
  CHECK(f.server(0).state != old_state);
  CHECK(f.state(0).status() == ServerStatus::up);
}

TEST_CASE("maint and drain win over health; ready returns to what health says") {
  Fixture f;
  f.control.install(web(true), f.t0);
  f.control.operator_request(f.service(), f.server(0), AdminState::maint, std::nullopt, f.t0);
  f.control.report_health(f.service(), f.server(0), false, f.t0);
  CHECK(f.state(0).status() == ServerStatus::maint);
  f.control.operator_request(f.service(), f.server(0), AdminState::ready, std::nullopt, f.t0);
  CHECK(f.state(0).status() == ServerStatus::down);
  f.control.report_health(f.service(), f.server(0), true, f.t0);
  CHECK(f.state(0).status() == ServerStatus::up);
}

TEST_CASE("only decisions that change something are published, one service at a time") {
  Fixture f;
  f.control.install(web(true), f.t0);
  f.control.report_health(f.service(), f.server(0), true, f.t0);  // already healthy
  f.control.operator_request(f.service(), f.server(0), AdminState::ready, std::nullopt, f.t0);
  CHECK(f.plane.seen.size() == 1);
  f.control.report_health(f.service(), f.server(0), false, f.t0);
  REQUIRE(f.plane.seen.size() == 2);
  CHECK_FALSE(f.plane.seen[1].is_new);
  CHECK(f.plane.seen[1].services == std::vector<std::string>{"web"});
  f.control.operator_request(f.service(), f.server(1), std::nullopt, 50, f.t0);
  CHECK(f.plane.seen.size() == 3);
}

TEST_CASE("a failed check's reason is kept for the operator, decides nothing, survives reloads") {
  Fixture f;
  f.control.install(web(true), f.t0);
  CHECK(f.state(0).last_error().empty());
  f.control.report_check_failure(f.server(0), "connect refused", f.t0 + 1s);
  CHECK(f.state(0).last_error() == "connect refused");
  CHECK(
      f.state(0).last_error_ns() ==
      std::chrono::duration_cast<std::chrono::nanoseconds>((f.t0 + 1s).time_since_epoch()).count());
  CHECK(f.state(0).status() == ServerStatus::up);  // rise/fall decides, not one failure
  CHECK(f.plane.seen.size() == 1);                 // nothing published
  f.control.report_check_failure(f.server(0), "connect timeout", f.t0 + 2s);
  CHECK(f.state(0).last_error() == "connect timeout");
  f.control.report_health(f.service(), f.server(0), true, f.t0 + 3s);  // recovered: still known
  f.control.install(web(true), f.t0 + 4s);
  CHECK(f.state(0).last_error() == "connect timeout");
  CHECK(f.state(1).last_error().empty());
}

TEST_CASE("slow start: the weight ramps from 1 after the server comes back, tick by tick") {
  Fixture f;
  f.control.install(web(true), f.t0);
  f.control.report_health(f.service(), f.server(1), false, f.t0);
  f.control.report_health(f.service(), f.server(1), true, f.t0);
  CHECK(f.state(1).weight() == 1);
  const size_t published = f.plane.seen.size();
  f.control.tick(f.t0 + 1s);
  CHECK(f.state(1).weight() == 10);
  f.control.tick(f.t0 + 5s);
  CHECK(f.state(1).weight() == 50);
  f.control.tick(f.t0 + 5s);  // nothing moved: nothing published
  CHECK(f.plane.seen.size() == published + 2);
  f.control.tick(f.t0 + 10s);
  CHECK(f.state(1).weight() == 100);
  f.control.tick(f.t0 + 20s);
  CHECK(f.plane.seen.size() == published + 3);
}

TEST_CASE("slow_start_weight: linear from 1, full at the end, 0 stays 0") {
  CHECK(slow_start_weight(100, 10s, std::nullopt) == 100);
  CHECK(slow_start_weight(100, 10s, 0ns) == 1);
  CHECK(slow_start_weight(100, 10s, 1s) == 10);
  CHECK(slow_start_weight(100, 10s, 10s) == 100);
  CHECK(slow_start_weight(3, 10s, 1s) == 1);
  CHECK(slow_start_weight(0, 10s, 1s) == 0);
  CHECK(slow_start_weight(100, 0s, 0ns) == 100);
}

TEST_CASE("ServerStateWriter::set_status reports changes and marks the moment a server comes up") {
  ServerState state;
  ServerStateWriter writer(state);
  const auto now = std::chrono::steady_clock::now();
  CHECK_FALSE(writer.set_status(ServerStatus::up, now));
  CHECK(state.up_since_ns() == 0);
  CHECK(writer.set_status(ServerStatus::drain, now));
  CHECK(state.last_change_ns() != 0);
  CHECK(writer.set_status(ServerStatus::up, now));
  CHECK(state.up_since_ns() != 0);
}

TEST_CASE("ServerState keeps what schedulers read off the counters' cache line") {
  const ServerState state;
  const auto* base = reinterpret_cast<const char*>(&state);
  const auto* counters = reinterpret_cast<const char*>(&state.active);
  CHECK(counters - base == 64);
  CHECK(alignof(ServerState) == 64);
}

TEST_CASE("a service removed by reload and added back starts with zero counters") {
  const auto two = [] {
    return valid(
        "services:\n"
        "  - {name: web, listen: 127.0.0.1:1, servers: [{address: 127.0.0.1:2}]}\n"
        "  - {name: api, listen: 127.0.0.1:3, servers: [{address: 127.0.0.1:4}]}\n");
  };
  Fixture f;
  f.control.install(two(), f.t0);
  f.control.snapshot()->services.at(1).state->total.fetch_add(5);
  f.control.install(web(false), f.t0 + 1s);
  f.control.install(two(), f.t0 + 2s);
  CHECK(f.control.snapshot()->services.at(1).state->total.load() == 0);
}

namespace {

// `web` with an agent asked on port 9 (servers a weight 10, b weight 100),
// or with the health check but no agent, or with no check at all.
Config web_agent(const char* check = "{interval: 1s, timeout: 1s, agent: {port: 9}}") {
  return valid(std::string("services:\n"
                           "  - name: web\n"
                           "    listen: 127.0.0.1:1\n"
                           "    health_check: ") +
               check +
               "\n"
               "    servers:\n"
               "      - {name: a, address: 127.0.0.1:2, weight: 10, max_connections: 40}\n"
               "      - {name: b, address: 127.0.0.1:3, weight: 100}\n");
}

AgentReply agent_says(std::string_view line) {
  std::string error;
  const std::optional<AgentReply> reply = parse_agent_reply(line, error);
  REQUIRE_MESSAGE(reply.has_value(), error);
  return *reply;
}

void report(Fixture& f, std::string_view line, SteadyTime at) {
  f.control.report_agent(f.service(), f.server(0), agent_says(line), std::string(line), at);
}

}  // namespace

TEST_CASE("agent: down takes the server down at once with its reason; up lets health decide") {
  Fixture f;
  f.control.install(web_agent(), f.t0);
  const size_t published = f.plane.seen.size();
  report(f, "down # disk full", f.t0 + 1s);
  CHECK(f.state(0).status() == ServerStatus::down);
  CHECK(f.state(0).weight() == 0);
  CHECK(f.state(0).last_error() == "agent says down: disk full");
  CHECK(f.state(0).agent().reply == "down # disk full");
  CHECK(f.plane.seen.size() == published + 1);
  // Health failing meanwhile: the agent's up is not enough.
  f.control.report_health(f.service(), f.server(0), false, f.t0 + 2s);
  report(f, "up", f.t0 + 3s);
  CHECK(f.state(0).status() == ServerStatus::down);
  f.control.report_health(f.service(), f.server(0), true, f.t0 + 4s);
  CHECK(f.state(0).status() == ServerStatus::up);
  CHECK(f.state(0).weight() == 10);
  // A reply that repeats the state publishes nothing.
  const size_t before = f.plane.seen.size();
  report(f, "up", f.t0 + 5s);
  CHECK(f.plane.seen.size() == before);
}

TEST_CASE("agent: drain and maint apply while the operator's state is ready; ready ends them") {
  Fixture f;
  f.control.install(web_agent(), f.t0);
  report(f, "drain", f.t0);
  CHECK(f.state(0).status() == ServerStatus::drain);
  report(f, "maint", f.t0);
  CHECK(f.state(0).status() == ServerStatus::maint);
  report(f, "ready", f.t0);
  CHECK(f.state(0).status() == ServerStatus::up);
  // The operator's drain wins over the agent's ready and maint...
  f.control.operator_request(f.service(), f.server(0), AdminState::drain, std::nullopt, f.t0);
  report(f, "ready up", f.t0);
  CHECK(f.state(0).status() == ServerStatus::drain);
  report(f, "maint", f.t0);
  CHECK(f.state(0).status() == ServerStatus::drain);
  // ... and the agent's maint applies again once the operator says ready.
  f.control.operator_request(f.service(), f.server(0), AdminState::ready, std::nullopt, f.t0);
  CHECK(f.state(0).status() == ServerStatus::maint);
  // The operator's state is its own: the agent never changes it.
  CHECK(f.state(0).admin() == AdminState::ready);
}

TEST_CASE("agent: N% scales the file's weight; the operator's weight wins until the reload") {
  Fixture f;
  f.control.install(web_agent(), f.t0);
  report(f, "50%", f.t0);
  CHECK(f.state(0).weight() == 5);
  CHECK(f.state(0).assigned_weight() == 10);  // the file's, as /stats shows beside it
  report(f, "5%", f.t0);
  CHECK(f.state(0).weight() == 1);  // a non-zero percentage never rounds down to a drain
  report(f, "0%", f.t0);
  CHECK(f.state(0).status() == ServerStatus::drain);
  CHECK(f.state(0).weight() == 0);
  report(f, "250%", f.t0);
  CHECK(f.state(0).status() == ServerStatus::up);
  CHECK(f.state(0).weight() == 25);
  f.control.report_agent(f.service(), f.server(1), agent_says("5000%"), "5000%", f.t0);
  CHECK(f.state(1).weight() == kMaxWeight);  // 100 x 50, capped
  f.control.operator_request(f.service(), f.server(0), std::nullopt, 7, f.t0);
  CHECK(f.state(0).weight() == 7);
  report(f, "20%", f.t0);
  CHECK(f.state(0).weight() == 7);
  // A reload ends the operator's weight: the agent's last N% is back.
  f.control.install(web_agent(), f.t0 + 1s);
  CHECK(f.state(0).weight() == 2);
}

TEST_CASE("agent: maxconn:N replaces max_connections for the schedulers and sessions") {
  Fixture f;
  f.control.install(web_agent(), f.t0);
  CHECK(f.state(0).max_connections() == 40);
  report(f, "maxconn:3", f.t0);
  CHECK(f.state(0).max_connections() == 3);
  ServerState& state = *f.server(0).state;
  CHECK(state.try_acquire());
  CHECK(state.try_acquire());
  CHECK(state.try_acquire());
  CHECK_FALSE(state.try_acquire());
  report(f, "maxconn:0", f.t0);  // 0: unlimited, as in HAProxy
  CHECK(f.state(0).max_connections() == 0);
  CHECK(state.try_acquire());
  for (int i = 0; i < 4; ++i) state.release();
}

TEST_CASE("agent: failures change nothing; a reload without the agent forgets what it said") {
  Fixture f;
  f.control.install(web_agent(), f.t0);
  report(f, "down 50% maxconn:2", f.t0);
  f.control.report_agent_failure(f.server(0), "agent: connect refused");
  CHECK(f.state(0).agent().error == "agent: connect refused");
  CHECK(f.state(0).status() == ServerStatus::down);
  // The agent stays: so does its word.
  f.control.install(web_agent(), f.t0 + 1s);
  CHECK(f.state(0).status() == ServerStatus::down);
  CHECK(f.state(0).max_connections() == 2);
  // The agent goes (the check stays): the server is up, at the file's weight and limit.
  f.control.install(web_agent("{interval: 1s, timeout: 1s}"), f.t0 + 2s);
  CHECK(f.state(0).status() == ServerStatus::up);
  CHECK(f.state(0).weight() == 10);
  CHECK(f.state(0).max_connections() == 40);
  CHECK(f.state(0).agent().reply.empty());
  // The same when the whole check goes.
  f.control.install(web_agent(), f.t0 + 3s);
  report(f, "maint", f.t0 + 3s);
  CHECK(f.state(0).status() == ServerStatus::maint);
  f.control.install(web_agent("false"), f.t0 + 4s);
  CHECK(f.state(0).status() == ServerStatus::up);
}

TEST_CASE("check: every server up at its weight, the live state untouched; a refusal is returned") {
  RefusingPlane refusing;
  Fixture f;
  f.control.add_data_plane(refusing);
  f.control.install(web(true), f.t0);
  f.control.report_health(f.service(), f.server(0), false, f.t0);
  f.control.operator_request(f.service(), f.server(1), AdminState::drain, std::nullopt, f.t0);
  const size_t published = f.plane.seen.size();

  CHECK(f.control.check(web(true, 5), f.t0) == "");
  CHECK(refusing.checked == std::vector<std::string>{"web/a up 5", "web/b up 100"});
  // The live states and the snapshot in force are as they were.
  CHECK(f.state(0).status() == ServerStatus::down);
  CHECK(f.state(0).assigned_weight() == 3);
  CHECK(f.state(1).status() == ServerStatus::drain);
  CHECK(f.control.snapshot()->generation == 1);
  CHECK(f.plane.seen.size() == published);

  CHECK(f.control.check(valid("services:\n"
                              "  - name: refused\n"
                              "    listen: 127.0.0.1:1\n"
                              "    servers: [{address: 127.0.0.1:2}]\n"),
                        f.t0) == "refused by the test");
  CHECK(f.control.snapshot()->generation == 1);
}

TEST_CASE("upgrade: carry() then adopt() gives the new image the same state, generation + 1") {
  Fixture f;
  f.control.install(web(true), f.t0);
  f.control.install(web(true), f.t0 + 1s);  // generation 2
  f.control.report_health(f.service(), f.server(1), false, f.t0 + 2s);
  f.control.report_check_failure(f.server(1), "connect refused", f.t0 + 2s);
  f.control.operator_request(f.service(), f.server(0), AdminState::drain, 7, f.t0 + 3s);
  f.server(0).state->total = 41;
  f.server(0).state->bytes_in = 1000;
  f.service().state->total = 99;
  UpgradeState state;
  f.control.carry(state);
  CHECK(state.generation == 2);
  REQUIRE(state.services.size() == 1);
  REQUIRE(state.servers.size() == 2);

  ControlPlane next(1);
  next.adopt(state);
  const auto snapshot = next.install(web(true), f.t0 + 4s);
  CHECK(snapshot->generation == 3);
  const ServiceRuntime& service = snapshot->services[0];
  const ServerState& a = *service.servers[0].state;
  const ServerState& b = *service.servers[1].state;
  CHECK(service.state->total == 99);
  // The operator's drain and weight stay: an upgrade is not a reload.
  CHECK(a.status() == ServerStatus::drain);
  CHECK(a.admin() == AdminState::drain);
  CHECK(a.assigned_weight() == 7);
  CHECK(a.weight_by_operator());
  CHECK(a.total == 41);
  CHECK(a.bytes_in == 1000);
  CHECK(a.last_change_ns() == f.state(0).last_change_ns());
  CHECK(b.status() == ServerStatus::down);
  CHECK_FALSE(b.healthy());
  CHECK(b.last_error() == "connect refused");
  CHECK(b.last_error_ns() == f.state(1).last_error_ns());
  CHECK(b.last_change_ns() == f.state(1).last_change_ns());
  CHECK(b.up_since_ns() == f.state(1).up_since_ns());
  // A reload after the upgrade ends the operator's weight as usual.
  next.install(web(true), f.t0 + 5s);
  CHECK(next.snapshot()->services[0].servers[0].state->assigned_weight() == 3);
}
