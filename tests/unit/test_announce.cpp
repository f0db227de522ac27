// global.announce: its configuration, and which addresses the announcer
// puts on its interface (announce_plan). tests/netns/cases/scale_out.py
// runs the announcer against the kernel and BIRD.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "config_text.hpp"
#include "fulcrum/announcer.hpp"
#include "fulcrum/control_plane.hpp"

using namespace fulcrum;
using namespace fulcrum::test;
using namespace std::chrono_literals;

namespace {

// One line per VIP: `address usable services...`.
std::vector<std::string> plan_lines(const Snapshot& snapshot) {
  std::vector<std::string> lines;
  for (const Announcer::Vip& vip : announce_plan(snapshot)) {
    std::string line = vip.address.host_string() + (vip.usable ? " usable" : " unusable");
    for (const std::string& service : vip.services) line += " " + service;
    lines.push_back(line);
  }
  return lines;
}

}  // namespace

TEST_CASE("announce: the interface is required, grace defaults to 2s") {
  const Config config = valid(R"(
global:
  announce: {interface: fulcrum0}
services:
  - name: web
    listen: 198.18.10.20:80
    servers: [{address: 127.0.0.1:9001}]
)");
  REQUIRE(config.global.announce);
  CHECK(config.global.announce->interface == "fulcrum0");
  CHECK(config.global.announce->grace == 2s);
  CHECK_FALSE(valid("services: [{name: a, listen: 127.0.0.1:8080, servers: [{address: "
                    "127.0.0.1:9001}]}]\n")
                  .global.announce);
  CHECK(errors_of(R"(
global:
  announce: {grace: 5s, interval: 1s}
services:
  - name: web
    listen: 198.18.10.20:80
    servers: [{address: 127.0.0.1:9001}]
)") == "test.yaml:2:13: global.announce is missing required key \"interface\"\n"
       "test.yaml:2:25: unknown key \"interval\" in global.announce");
  CHECK(errors_of(R"(
global:
  announce: {interface: "bad name!", grace: soon}
services:
  - name: web
    listen: 198.18.10.20:80
    servers: [{address: 127.0.0.1:9001}]
)") == "test.yaml:2:25: interface name \"bad name!\" is not valid: 1 to 15 letters, digits, "
       "'-', '_' or '.'\n"
       "test.yaml:2:45: invalid duration \"soon\": expected a number and a unit (ms, s, m or h)");
}

TEST_CASE("announce: a VIP is usable while a service on it has an up server with a weight") {
  ControlPlane control{1};
  const auto t0 = std::chrono::steady_clock::now();
  control.install(valid(R"(
services:
  - name: web
    listen: ["198.18.10.20:80", "[2001:db8:10::20]:80"]
    servers: [{name: a, address: 127.0.0.1:9001}, {name: b, address: 127.0.0.1:9002}]
  - name: tls
    listen: 198.18.10.20:443
    servers: [{name: a, address: 127.0.0.1:9003}]
  - name: local
    listen: ["127.0.0.1:8080", "0.0.0.0:8081", "[::1]:8082"]
    servers: [{name: a, address: 127.0.0.1:9004}]
)"),
                  t0);
  CHECK(plan_lines(*control.snapshot()) ==
        std::vector<std::string>{"198.18.10.20 usable web tls", "2001:db8:10::20 usable web"});

  // web: a drained, b down; tls still serves 198.18.10.20.
  const auto web_a = control.snapshot()->find("web", "a");
  control.operator_request(*web_a.service, *web_a.server, AdminState::drain, std::nullopt, t0);
  const auto web_b = control.snapshot()->find("web", "b");
  control.report_health(*web_b.service, *web_b.server, false, t0);
  CHECK(plan_lines(*control.snapshot()) ==
        std::vector<std::string>{"198.18.10.20 usable web tls", "2001:db8:10::20 unusable web"});

  const auto tls_a = control.snapshot()->find("tls", "a");
  control.operator_request(*tls_a.service, *tls_a.server, AdminState::maint, std::nullopt, t0);
  CHECK(plan_lines(*control.snapshot()) ==
        std::vector<std::string>{"198.18.10.20 unusable web tls", "2001:db8:10::20 unusable web"});
}
