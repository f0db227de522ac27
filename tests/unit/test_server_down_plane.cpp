// ServerDownPlane: which servers' sessions the workers are asked to close,
// from the control plane's ChangeSets.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "config_text.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/server_down_plane.hpp"

using namespace fulcrum;
using namespace fulcrum::test;

namespace {

// Service `closing` (servers a, b) with `on_server_down`, service `kept`
// (server k) with the default, both health checked.
Config two_services(const std::string& policy) {
  return valid(
      "services:\n"
      "  - name: closing\n"
      "    listen: 127.0.0.1:1\n"
      "    health_check: true\n"
      "    on_server_down: " +
      policy +
      "\n"
      "    servers:\n"
      "      - {name: a, address: 127.0.0.1:2}\n"
      "      - {name: b, address: 127.0.0.1:3, slow_start: 10s}\n"
      "  - name: kept\n"
      "    listen: 127.0.0.1:4\n"
      "    health_check: true\n"
      "    servers:\n"
      "      - {name: k, address: 127.0.0.1:5}\n");
}

struct Fixture {
  std::vector<std::vector<const ServerState*>> requests;
  ServerDownPlane plane{ServerDownPlane::Watch::proxy,
                        [this](const std::vector<ServerDownPlane::Down>& down) {
                          std::vector<const ServerState*> servers;
                          servers.reserve(down.size());
                          for (const auto& entry : down)
                            servers.push_back(entry.server->state.get());
                          requests.push_back(servers);
                        }};
  ControlPlane control{1};
  SteadyTime t0 = std::chrono::steady_clock::now();

  Fixture() { control.add_data_plane(plane); }
  const ServiceRuntime& service(size_t i) const { return control.snapshot()->services.at(i); }
  const ServerRuntime& server(size_t service_index, size_t i) const {
    return service(service_index).servers.at(i);
  }
  void health(size_t service_index, size_t i, bool healthy) {
    control.report_health(service(service_index), server(service_index, i), healthy, t0);
  }
  using Requests = std::vector<std::vector<const ServerState*>>;
};

}  // namespace

TEST_CASE("a server marked down in a close service: its sessions are closed, once") {
  Fixture f;
  f.control.install(two_services("close"), f.t0);
  CHECK(f.requests.empty());  // every server up

  f.health(0, 0, false);
  CHECK(f.requests == Fixture::Requests{{f.server(0, 0).state.get()}});

  // Still down at the next change of the service (b's health): not again.
  f.health(0, 1, false);
  CHECK(f.requests ==
        Fixture::Requests{{f.server(0, 0).state.get()}, {f.server(0, 1).state.get()}});
  f.health(0, 1, true);  // b up: nothing to close
  CHECK(f.requests.size() == 2);

  // Up, then down again: closed again.
  f.health(0, 0, true);
  f.health(0, 0, false);
  REQUIRE(f.requests.size() == 3);
  CHECK(f.requests[2] == std::vector<const ServerState*>{f.server(0, 0).state.get()});

  // A reload keeps the state: a is still down, nothing new to close.
  f.control.install(two_services("close"), f.t0);
  CHECK(f.requests.size() == 3);
}

TEST_CASE("keep, drain and maint never close sessions") {
  Fixture f;
  f.control.install(two_services("keep"), f.t0);
  f.health(0, 0, false);
  f.health(1, 0, false);  // `kept`, keep by default
  CHECK(f.requests.empty());

  Fixture g;
  g.control.install(two_services("close"), g.t0);
  g.control.operator_request(g.service(0), g.server(0, 0), AdminState::maint, std::nullopt, g.t0);
  g.control.operator_request(g.service(0), g.server(0, 1), AdminState::drain, std::nullopt, g.t0);
  g.health(0, 0, false);
  g.health(0, 1, false);
  CHECK(g.server(0, 0).state->status() == ServerStatus::maint);
  CHECK(g.server(0, 1).state->status() == ServerStatus::drain);
  CHECK(g.requests.empty());

  // Back to ready while unhealthy: now down, so closed.
  g.control.operator_request(g.service(0), g.server(0, 0), AdminState::ready, std::nullopt, g.t0);
  CHECK(g.requests == Fixture::Requests{{g.server(0, 0).state.get()}});
}

TEST_CASE("a reload that turns close on closes the sessions of a server already down") {
  Fixture f;
  f.control.install(two_services("keep"), f.t0);
  f.health(0, 0, false);
  CHECK(f.requests.empty());
  f.control.install(two_services("close"), f.t0);
  CHECK(f.requests == Fixture::Requests{{f.server(0, 0).state.get()}});
}

TEST_CASE("the proxy's plane and the nat plane each watch their own services") {
  std::vector<std::string> proxy_calls;
  std::vector<std::string> nat_calls;
  const auto recorder = [](std::vector<std::string>& calls) {
    return [&calls](const std::vector<ServerDownPlane::Down>& down) {
      for (const auto& entry : down)
        calls.push_back(entry.service->config->name + "/" + entry.server->config->name);
    };
  };
  ServerDownPlane proxy_plane{ServerDownPlane::Watch::proxy, recorder(proxy_calls)};
  ServerDownPlane nat_plane{ServerDownPlane::Watch::nat, recorder(nat_calls)};
  ControlPlane control{1};
  control.add_data_plane(proxy_plane);
  control.add_data_plane(nat_plane);
  const SteadyTime t0 = std::chrono::steady_clock::now();
  control.install(valid(R"(
defaults:
  on_server_down: close
services:
  - {name: relayed, listen: 127.0.0.1:1, servers: [{name: a, address: 127.0.0.1:2}]}
  - {name: nat, forwarding: nat, listen: 198.18.10.10:80, servers: [{name: a, address: 198.18.1.11:80}]}
  - {name: full, forwarding: fullnat, listen: 198.18.10.10:81, servers: [{name: a, address: 198.18.1.11:80}]}
  - name: direct
    forwarding: dsr
    dsr: {ingress: eth0}
    listen: 198.18.10.10:82
    servers: [{name: a, address: 198.18.1.11:82}]
)"),
                  t0);
  for (const ServiceRuntime& service : control.snapshot()->services)
    control.report_health(service, service.servers.at(0), false, t0);
  CHECK(proxy_calls == std::vector<std::string>{"relayed/a"});
  CHECK(nat_calls == std::vector<std::string>{"nat/a", "full/a"});
}
