// The configuration of kernel forwarding (SPEC.md "Forwarding in the
// kernel"): the keys, their defaults, and every rule with its position.
#include <doctest/doctest.h>

#include <string>

#include "config_text.hpp"
#include "fulcrum/config.hpp"

using namespace fulcrum;
using namespace fulcrum::test;

TEST_CASE("forwarding and protocol: defaults and every mode") {
  const Config config = valid(R"(
services:
  - name: relayed
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
  - name: nat
    forwarding: nat
    protocol: udp
    listen: 198.18.10.10:53
    scheduler: maglev
    hash_key: source_ip_port
    on_server_down: close
    health_check: {interval: 1s, timeout: 500ms}
    servers: [{address: 198.18.1.11:5353, weight: 3, backup: false, slow_start: 10s}]
  - name: full
    forwarding: fullnat
    listen: "[2001:db8::10]:80"
    source: 2001:db8::1
    scheduler: rr
    servers: [{address: "[2001:db8:1::11]:8080"}]
  - name: direct
    forwarding: dsr
    listen: 198.18.10.10:80
    dsr: {ingress: veth-c}
    servers: [{address: 198.18.1.11:80}, {address: 198.18.1.12:80}]
  - name: direct2
    forwarding: dsr
    listen: 198.18.10.11:80
    dsr: {ingress: veth-c, egress: br0, flows: 1000, flow_timeout: 2m}
    servers: [{address: 198.18.1.11:80}]
)");
  REQUIRE(config.services.size() == 5);
  CHECK(config.services[0].forwarding == Forwarding::proxy);
  CHECK(config.services[0].protocol == Protocol::tcp);
  CHECK_FALSE(config.services[0].dsr);
  CHECK(config.services[1].forwarding == Forwarding::nat);
  CHECK(config.services[1].protocol == Protocol::udp);
  CHECK(config.services[2].forwarding == Forwarding::fullnat);
  CHECK(config.services[2].source->host_string() == "2001:db8::1");
  CHECK(config.services[3].forwarding == Forwarding::dsr);
  CHECK(config.services[3].dsr->ingress == "veth-c");
  CHECK(config.services[3].dsr->egress == "veth-c");
  CHECK(config.services[4].dsr->egress == "br0");
  CHECK(config.services[3].dsr->flows == 262144);
  CHECK_FALSE(config.services[3].dsr->flow_timeout);
  CHECK(config.services[4].dsr->flows == 1000);
  CHECK(config.services[4].dsr->flow_timeout == std::chrono::minutes(2));
  CHECK(to_string(Forwarding::fullnat) == "fullnat");
  CHECK(to_string(Protocol::udp) == "udp");
}

TEST_CASE("proxy-only keys are errors in kernel modes, at their position") {
  CHECK(
      errors_of(R"(
services:
  - name: a
    forwarding: nat
    listen: 198.18.10.10:80
    scheduler: lc
    address_mode: transparent
    proxy_protocol: v2
    accept_proxy_protocol: true
    retries: 1
    max_connections: 10
    max_lifetime: 1h
    timeouts: {connect: 1s, idle: 5m}
    servers: [{address: 198.18.1.11:80, max_connections: 5}]
)") ==
      R"(test.yaml:5:16: scheduler lc does not work in forwarding nat: the kernel counts no connection per server; use rr, wrr or maglev
test.yaml:6:5: address_mode is for forwarding proxy: the kernel keeps the client's address (nat, dsr) or uses source (fullnat)
test.yaml:7:5: proxy_protocol is for forwarding proxy: the kernel forwards packets and adds no header
test.yaml:8:5: accept_proxy_protocol is for forwarding proxy: the kernel forwards packets and adds no header
test.yaml:9:5: retries is for forwarding proxy: the kernel does not retry a server that refuses
test.yaml:10:5: max_connections is for forwarding proxy: the kernel counts no session to limit or end
test.yaml:11:5: max_lifetime is for forwarding proxy: the kernel counts no session to limit or end
test.yaml:12:16: timeouts.connect is for forwarding proxy: the kernel's conntrack times a flow
test.yaml:12:29: timeouts.idle is for forwarding proxy: the kernel's conntrack times a flow
test.yaml:13:41: max_connections is for forwarding proxy: the kernel counts no session per server to limit)");
}

TEST_CASE("defaults written for proxy services do not bind a kernel service, its scheduler does") {
  const Config config = valid(R"(
defaults:
  retries: 3
  timeouts: {idle: 5m}
  proxy_protocol: v1
services:
  - name: relayed
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
  - name: nat
    forwarding: nat
    listen: 198.18.10.10:80
    servers: [{address: 198.18.1.11:80}]
)");
  CHECK(config.services[1].forwarding == Forwarding::nat);
  CHECK(errors_of(R"(
defaults:
  scheduler: p2c
services:
  - name: nat
    forwarding: dsr
    dsr: {ingress: eth0}
    listen: 198.18.10.10:80
    servers: [{address: 198.18.1.11:80}]
)") == "test.yaml:5:17: scheduler p2c does not work in forwarding dsr: the kernel counts no "
       "connection per server; use rr, wrr or maglev");
  CHECK(
      errors_of(R"(
defaults:
  forwarding: nat
  max_lifetime: 1h
services:
  - name: nat
    listen: 198.18.10.10:80
    retries: 1
    servers: [{address: 198.18.1.11:80}]
)") ==
      R"(test.yaml:3:3: max_lifetime is for forwarding proxy: the kernel counts no session to limit or end
test.yaml:7:5: retries is for forwarding proxy: the kernel does not retry a server that refuses)");
}

TEST_CASE("the rules of protocol, source, dsr and virtual addresses") {
  CHECK(errors_of(R"(
services:
  - name: a
    protocol: udp
    listen: 127.0.0.1:8080
    dsr: {ingress: eth0}
    servers: [{address: 127.0.0.1:9001}]
  - name: b
    forwarding: nat
    source: 198.18.2.1
    listen: 0.0.0.0:80
    servers: [{address: 198.18.1.11:80}]
  - name: c
    forwarding: dsr
    listen: 198.18.10.10:80
    servers: [{address: 198.18.1.11:8080}]
  - name: d
    forwarding: dsr
    dsr: {ingress: "bad name!", egress: a-very-long-interface, flows: 0, flow_timeout: 0s}
    listen: 198.18.10.11:80
    servers: [{address: 198.18.1.11:80}]
  - name: e
    forwarding: fullnat
    listen: ["198.18.10.12:80", "[2001:db8::10]:80"]
    servers: [{address: "[2001:db8::11]:80"}]
)") == R"(test.yaml:3:15: protocol udp needs forwarding nat, fullnat or dsr: the proxy relays TCP
test.yaml:5:5: dsr is for forwarding dsr
test.yaml:9:5: source is for forwarding fullnat (or proxy): nat keeps the client's address
test.yaml:10:13: forwarding nat needs a virtual address, not 0.0.0.0:80: the kernel matches packets by their destination
test.yaml:13:17: forwarding dsr needs dsr.ingress: the interface where clients' packets for the virtual address arrive
test.yaml:15:25: in forwarding dsr a server gets the client's packet unchanged: its port must be the listen port 80
test.yaml:18:20: interface name "bad name!" is not valid: 1 to 15 letters, digits, '-', '_' or '.'
test.yaml:18:41: interface name "a-very-long-interface" is not valid: 1 to 15 letters, digits, '-', '_' or '.'
test.yaml:18:71: expected an integer from 1 to 16777216, got "0"
test.yaml:18:88: expected a duration greater than 0, got "0s"
test.yaml:23:13: a service forwarded in the kernel listens on one address family: the kernel rewrites an address only for one of its own family
test.yaml:24:25: server address "[2001:db8::11]:80" has no IPv4 address to match the virtual address 198.18.10.12:80)");
}
