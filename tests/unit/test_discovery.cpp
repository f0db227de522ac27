// Servers from DNS: the discover and resolvers keys, DNS answers turned
// into servers, and how the control plane keeps them (SPEC.md "Servers
// from DNS"). The DNS exchange itself: test_dns_client.cpp and the e2e test
// discovery_dns.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include "config_text.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/discovery.hpp"

using namespace fulcrum;
using namespace fulcrum::test;
using namespace std::chrono_literals;

namespace {

SocketAddress ip(const char* text) {
  const AddressParse parsed = parse_ip_literal(text);
  REQUIRE(parsed.error.empty());
  return parsed.addresses.front();
}

DnsSrv srv(const char* target, uint16_t port, uint16_t weight, uint16_t priority = 10) {
  return DnsSrv{priority, weight, port, target};
}

std::vector<std::string> described(const std::vector<DiscoveredServer>& servers) {
  std::vector<std::string> out;
  out.reserve(servers.size());
  for (const DiscoveredServer& s : servers) {
    out.push_back(s.name + " " + s.address.to_string() + " w" + std::to_string(s.weight) +
                  (s.backup ? " backup" : ""));
  }
  return out;
}

DiscoveredServer server(const std::string& name, const char* address, uint32_t weight = 1) {
  const AddressParse parsed = parse_address(address);
  REQUIRE(parsed.error.empty());
  return DiscoveredServer{name, parsed.addresses.front(), weight, false};
}

Config discovering() {
  return valid(R"(
services:
  - name: api
    listen: 127.0.0.1:8000
    discover: {name: _app._tcp.svc.test, interval: 2s, max_servers: 10}
    servers: [{name: fixed, address: 127.0.0.1:9000}]
)");
}

}  // namespace

TEST_CASE("discover and resolvers: the forms, and each error at its place") {
  const Config config = valid(R"(
global:
  resolvers: ["127.0.0.1:5353", 127.0.0.53, "[::1]:53"]
services:
  - name: srv
    listen: 127.0.0.1:8000
    discover: {name: _App._tcp.SVC.test.}
  - name: hosts
    listen: 127.0.0.1:8001
    discover: {name: "hosts.svc.test:8080", interval: 10s, max_servers: 1000}
)");
  std::vector<std::string> resolvers;
  for (const SocketAddress& address : config.global.resolvers)
    resolvers.push_back(address.to_string());
  CHECK(resolvers == std::vector<std::string>{"127.0.0.1:5353", "127.0.0.53:53", "[::1]:53"});
  const DiscoverConfig& srv = *config.services[0].discover;
  CHECK(srv.name == "_app._tcp.svc.test");
  CHECK_FALSE(srv.port);
  CHECK(srv.interval == Duration(5000));
  CHECK(srv.max_servers == 64);
  CHECK(config.services[0].servers.empty());
  const DiscoverConfig& hosts = *config.services[1].discover;
  CHECK(hosts.name == "hosts.svc.test");
  CHECK(hosts.port == 8080);
  CHECK(hosts.interval == Duration(10000));
  CHECK(hosts.max_servers == 1000);

  CHECK(errors_of(R"(
global:
  resolvers: [dns.example, "127.0.0.1:99999"]
services:
  - name: a
    listen: 127.0.0.1:8000
    discover: {name: "app.svc.test:0", interval: 500ms, max_servers: 0}
  - name: b
    listen: 127.0.0.1:8001
    discover: {name: "bad name.test", refresh: 1s}
  - name: c
    listen: 127.0.0.1:8002
)") == "test.yaml:2:15: resolver \"dns.example\" is not an IP address with an optional port "
       "(127.0.0.1, 127.0.0.1:5353, [::1]:53)\n"
       "test.yaml:2:28: resolver \"127.0.0.1:99999\" is not an IP address with an optional port "
       "(127.0.0.1, 127.0.0.1:5353, [::1]:53)\n"
       "test.yaml:6:22: discover.name \"app.svc.test:0\": the port after ':' must be 1 to 65535 "
       "(NAME:PORT asks for A and AAAA records; a name alone, for SRV records)\n"
       "test.yaml:6:50: discover.interval must be at least 1s (a DNS server asked more often is "
       "asked for nothing new)\n"
       "test.yaml:6:70: expected an integer from 1 to 10000, got \"0\"\n"
       "test.yaml:9:22: discover.name \"bad name.test\" is not a DNS name (_app._tcp.svc.test, "
       "or app.svc.test:8080)\n"
       "test.yaml:9:39: unknown key \"refresh\" in discover\n"
       "test.yaml:10:5: service is missing required key \"servers\"");
}

TEST_CASE("SRV answers: targets and ports, priorities as backups, weights as weights") {
  DnsAnswer answer;
  answer.status = DnsAnswer::Status::ok;
  answer.srv = {srv("app2.svc.test", 9002, 0),      srv("app1.svc.test", 9001, 3),
                srv("spare.svc.test", 9003, 5, 20), srv("", 9004, 1),
                srv("app1.svc.test", 9001, 3),      srv("nowhere.svc.test", 9005, 1)};
  answer.additional = {{"app1.svc.test", ip("2001:db8::1"), 30},
                       {"app1.svc.test", ip("198.18.1.1"), 30}};
  const std::map<std::string, std::vector<SocketAddress>> asked = {
      {"app2.svc.test", {ip("198.18.1.2")}}, {"spare.svc.test", {ip("198.18.1.3")}}};
  // The "." target is skipped, a target without an address too; IPv4 is
  // preferred; weight 0 counts as 1; a repeated record counts once.
  CHECK(described(servers_from_srv(answer, asked, 64)) ==
        std::vector<std::string>{"app1.svc.test:9001 198.18.1.1:9001 w3",
                                 "app2.svc.test:9002 198.18.1.2:9002 w1",
                                 "spare.svc.test:9003 198.18.1.3:9003 w5 backup"});
  CHECK(described(servers_from_srv(answer, asked, 1)) ==
        std::vector<std::string>{"app1.svc.test:9001 198.18.1.1:9001 w3"});
  // A set above 1000 is scaled down in proportion.
  answer.srv = {srv("app1.svc.test", 9001, 60000), srv("app2.svc.test", 9002, 600),
                srv("app2.svc.test", 9012, 1)};
  CHECK(described(servers_from_srv(answer, asked, 64)) ==
        std::vector<std::string>{"app1.svc.test:9001 198.18.1.1:9001 w1000",
                                 "app2.svc.test:9002 198.18.1.2:9002 w10",
                                 "app2.svc.test:9012 198.18.1.2:9012 w1"});
}

TEST_CASE("A and AAAA answers: every address with the port, named by it") {
  CHECK(described(servers_from_addresses(
            {ip("198.18.1.2"), ip("2001:db8::7"), ip("198.18.1.1"), ip("198.18.1.2")}, 8080, 64)) ==
        std::vector<std::string>{"198.18.1.1:8080 198.18.1.1:8080 w1",
                                 "198.18.1.2:8080 198.18.1.2:8080 w1",
                                 "[2001:db8::7]:8080 [2001:db8::7]:8080 w1"});
  CHECK(servers_from_addresses({ip("198.18.1.2"), ip("198.18.1.1")}, 80, 1).size() == 1);
}

TEST_CASE("merge: servers that leave depart, and come back") {
  DiscoveryStatus status;
  CHECK(merge_discovered(status, {server("b", "198.18.1.2:80"), server("a", "198.18.1.1:80")}));
  CHECK(described(status.current) ==
        std::vector<std::string>{"a 198.18.1.1:80 w1", "b 198.18.1.2:80 w1"});
  CHECK_FALSE(
      merge_discovered(status, {server("a", "198.18.1.1:80"), server("b", "198.18.1.2:80")}));
  CHECK(merge_discovered(status, {server("b", "198.18.1.2:80", 5)}));
  CHECK(described(status.current) == std::vector<std::string>{"b 198.18.1.2:80 w5"});
  CHECK(described(status.departing) == std::vector<std::string>{"a 198.18.1.1:80 w1"});
  CHECK(merge_discovered(status, {server("a", "198.18.1.1:80"), server("b", "198.18.1.2:80", 5)}));
  CHECK(status.departing.empty());
}

TEST_CASE("the control plane: discovered servers join, depart drained, leave when idle") {
  ControlPlane control{1};
  std::vector<std::shared_ptr<const Snapshot>> rebuilt;
  control.on_rebuilt(
      [&rebuilt](const std::shared_ptr<const Snapshot>& next) { rebuilt.push_back(next); });
  const auto t0 = std::chrono::steady_clock::now();
  control.install(discovering(), t0);
  const auto wall = std::chrono::system_clock::now();

  // A failed answer before any: counted, nothing built.
  control.report_discovery("api", std::nullopt, "no answer", wall, t0);
  CHECK(control.discovery("api")->errors == 1);
  CHECK(control.discovery("api")->last_error == "no answer");
  CHECK(rebuilt.empty());

  control.report_discovery(
      "api", std::vector{server("a:1", "198.18.1.1:1"), server("b:1", "198.18.1.2:1", 4)}, "", wall,
      t0);
  REQUIRE(rebuilt.size() == 1);
  const Snapshot& first = *control.snapshot();
  CHECK(first.generation == 1);  // discovery is not a reload
  std::vector<std::string> names;
  for (const ServerRuntime& s : first.services[0].servers)
    names.push_back(s.config->name + (s.config->discovered ? "*" : ""));
  CHECK(names == std::vector<std::string>{"fixed", "a:1*", "b:1*"});
  CHECK(control.discovery("api")->last_success == wall);

  // The operator's weight on a discovered server stays through discovery.
  const auto b = control.snapshot()->find("api", "b:1");
  control.operator_request(*b.service, *b.server, std::nullopt, 7, t0);
  const auto a = control.snapshot()->find("api", "a:1");
  a.server->state->active.store(2);  // two sessions on a

  // a leaves the answer: drained while its sessions run.
  control.report_discovery("api", std::vector{server("b:1", "198.18.1.2:1", 4)}, "", wall, t0);
  REQUIRE(rebuilt.size() == 2);
  CHECK(control.snapshot()->find("api", "a:1").server->state->status() == ServerStatus::drain);
  CHECK(control.snapshot()->find("api", "b:1").server->state->weight() == 7);
  CHECK(control.discovery("api")->departing.size() == 1);
  control.tick(t0 + 1s);
  CHECK(rebuilt.size() == 2);  // still busy
  control.snapshot()->find("api", "a:1").server->state->active.store(0);
  control.tick(t0 + 2s);
  REQUIRE(rebuilt.size() == 3);
  CHECK_FALSE(control.snapshot()->find("api", "a:1").server);

  // A reload keeps what discovery found while the name stays ...
  control.install(discovering(), t0 + 3s);
  CHECK(control.snapshot()->find("api", "b:1").server);
  CHECK(control.snapshot()->generation == 2);
  // ... and starts afresh when it changes.
  control.install(valid(R"(
services:
  - name: api
    listen: 127.0.0.1:8000
    discover: {name: "api.svc.test:80"}
)"),
                  t0 + 4s);
  CHECK(control.snapshot()->services[0].servers.empty());
  CHECK(control.discovery("api")->query == "api.svc.test:80");
  CHECK(control.discovery("api")->errors == 0);
}
