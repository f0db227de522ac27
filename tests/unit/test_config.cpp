#include <doctest/doctest.h>

#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "config_text.hpp"
#include "fulcrum/config.hpp"

using namespace fulcrum;
using namespace fulcrum::test;
using namespace std::chrono_literals;

// ---- Valid configurations ------------------------------------------------------

TEST_CASE("the smallest configuration gets every default") {
  const Config config = valid(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    servers:
      - address: 127.0.0.1:9001
)");
  CHECK(config.path == "test.yaml");
  CHECK(config.global.workers == 0);
  CHECK(config.global.max_connections == 100000);
  CHECK(config.global.shutdown_timeout == 30s);
  CHECK(config.global.user.empty());
  CHECK(config.global.group.empty());
  CHECK(config.global.log_level == LogLevel::info);
  CHECK(config.global.access_log);

  REQUIRE(config.services.size() == 1);
  const ServiceConfig& web = config.services[0];
  CHECK(web.name == "web");
  REQUIRE(web.listen.size() == 1);
  CHECK(web.listen[0].to_string() == "127.0.0.1:8080");
  CHECK(web.scheduler == SchedulerKind::wrr);
  CHECK(web.hash_key == HashKey::source_ip);
  CHECK(web.address_mode == AddressMode::snat);
  CHECK_FALSE(web.source.has_value());
  CHECK(web.proxy_protocol == ProxyProtocol::none);
  CHECK_FALSE(web.accept_proxy_protocol.enabled);
  CHECK(web.connect_timeout == 3s);
  CHECK(web.idle_timeout == 10min);
  CHECK(web.retries == 2);
  CHECK(web.max_connections == 0);
  CHECK(web.max_lifetime == 0s);
  CHECK_FALSE(web.health_check.enabled);

  REQUIRE(web.servers.size() == 1);
  const ServerConfig& server = web.servers[0];
  CHECK(server.name == "127.0.0.1:9001");
  CHECK(server.address_text == "127.0.0.1:9001");
  CHECK(server.address.to_string() == "127.0.0.1:9001");
  CHECK(server.weight == 1);
  CHECK(server.max_connections == 0);
  CHECK_FALSE(server.backup);
  CHECK(server.slow_start == 0s);
}

TEST_CASE("every implemented key is read") {
  const Config config = valid(R"(
global:
  workers: 4
  max_connections: 5000
  shutdown_timeout: 45s
  log_level: debug
  access_log: false

services:
  - name: db.primary_1
    listen: ["127.0.0.1:5432", "[::1]:5432"]
    scheduler: rr
    hash_key: source_ip_port
    address_mode: snat
    source: 127.0.0.1
    proxy_protocol: none
    accept_proxy_protocol: false
    timeouts:
      connect: 250ms
      idle: 1h
    retries: 0
    max_connections: 10000000
    max_lifetime: 0s
    health_check: false
    servers:
      - address: 127.0.0.1:9001
        name: app1
        weight: 1000
        max_connections: 100
        backup: false
        slow_start: 0ms
      - address: localhost:9002
        weight: 0
  - name: other
    listen: localhost:6000
    scheduler: wrr
    servers:
      - address: "[::1]:9003"
)");
  CHECK(config.global.workers == 4);
  CHECK(config.global.max_connections == 5000);
  CHECK(config.global.shutdown_timeout == 45s);
  CHECK(config.global.log_level == LogLevel::debug);
  CHECK_FALSE(config.global.access_log);

  REQUIRE(config.services.size() == 2);
  const ServiceConfig& db = config.services[0];
  CHECK(db.name == "db.primary_1");
  REQUIRE(db.listen.size() == 2);
  CHECK(db.listen[0].to_string() == "127.0.0.1:5432");
  CHECK(db.listen[1].to_string() == "[::1]:5432");
  CHECK(db.scheduler == SchedulerKind::rr);
  CHECK(db.hash_key == HashKey::source_ip_port);
  CHECK(db.address_mode == AddressMode::snat);
  REQUIRE(db.source.has_value());
  CHECK(db.source->host_string() == "127.0.0.1");
  CHECK(db.source->port() == 0);
  CHECK(db.proxy_protocol == ProxyProtocol::none);
  CHECK_FALSE(db.accept_proxy_protocol.enabled);
  CHECK(db.connect_timeout == 250ms);
  CHECK(db.idle_timeout == 1h);
  CHECK(db.retries == 0);
  CHECK(db.max_connections == 10000000);
  CHECK(db.max_lifetime == 0s);
  CHECK_FALSE(db.health_check.enabled);

  REQUIRE(db.servers.size() == 2);
  CHECK(db.servers[0].name == "app1");
  CHECK(db.servers[0].address_text == "127.0.0.1:9001");
  CHECK(db.servers[0].address.to_string() == "127.0.0.1:9001");
  CHECK(db.servers[0].weight == 1000);
  CHECK(db.servers[0].max_connections == 100);
  CHECK_FALSE(db.servers[0].backup);
  CHECK(db.servers[0].slow_start == 0s);
  CHECK(db.servers[1].name == "localhost:9002");
  CHECK(db.servers[1].address_text == "localhost:9002");
  CHECK(db.servers[1].address.to_string() == "127.0.0.1:9002");
  CHECK(db.servers[1].weight == 0);

  const ServiceConfig& other = config.services[1];
  CHECK(other.name == "other");
  REQUIRE(other.listen.size() == 1);
  CHECK(other.listen[0].to_string() == "127.0.0.1:6000");
  CHECK(other.scheduler == SchedulerKind::wrr);
  CHECK(other.servers.at(0).name == "[::1]:9003");
  CHECK(other.servers.at(0).address.family() == AF_INET6);
}

TEST_CASE("quoted and plain scalars mean the same") {
  const Config config = valid(R"(
global:
  workers: "2"
  access_log: "true"
  shutdown_timeout: '5s'
services:
  - name: "web"
    listen: "127.0.0.1:8080"
    scheduler: 'rr'
    servers:
      - {address: "127.0.0.1:9001", weight: "7"}
)");
  CHECK(config.global.workers == 2);
  CHECK(config.global.access_log);
  CHECK(config.global.shutdown_timeout == 5s);
  CHECK(config.services.at(0).scheduler == SchedulerKind::rr);
  CHECK(config.services.at(0).servers.at(0).weight == 7);
}

TEST_CASE("workers: auto is 0") {
  const Config config = valid(R"(
global:
  workers: auto
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
)");
  CHECK(config.global.workers == 0);
}

TEST_CASE("empty sections are the same as omitted ones") {
  const Config config = valid(R"(
global:
defaults:
services:
  - name: web
    listen: 127.0.0.1:8080
    timeouts:
    servers: [{address: 127.0.0.1:9001}]
)");
  CHECK(config.global.max_connections == 100000);
  CHECK(config.services.at(0).connect_timeout == 3s);
}

TEST_CASE("services inherit defaults unless they set the key") {
  const Config config = valid(R"(
defaults:
  scheduler: rr
  retries: 5
  max_connections: 50
  source: 127.0.0.1
  timeouts:
    connect: 1s
    idle: 30s
services:
  - name: a
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
  - name: b
    listen: 127.0.0.1:8081
    scheduler: wrr
    retries: 0
    timeouts:
      idle: 5m
    servers: [{address: 127.0.0.1:9002}]
)");
  REQUIRE(config.services.size() == 2);
  const ServiceConfig& a = config.services[0];
  CHECK(a.scheduler == SchedulerKind::rr);
  CHECK(a.retries == 5);
  CHECK(a.max_connections == 50);
  REQUIRE(a.source.has_value());
  CHECK(a.source->host_string() == "127.0.0.1");
  CHECK(a.connect_timeout == 1s);
  CHECK(a.idle_timeout == 30s);

  const ServiceConfig& b = config.services[1];
  CHECK(b.scheduler == SchedulerKind::wrr);
  CHECK(b.retries == 0);
  CHECK(b.max_connections == 50);
  CHECK(b.source.has_value());
  CHECK(b.connect_timeout == 1s);  // timeouts merge per sub-key
  CHECK(b.idle_timeout == 5min);
}

TEST_CASE("a source picks the server address of its family") {
  const Config config = valid(R"(
services:
  - name: v6
    listen: "[::1]:8080"
    source: "::1"
    servers: [{address: "[::1]:9001"}]
)");
  CHECK(config.services.at(0).source->family() == AF_INET6);
  CHECK(config.services.at(0).servers.at(0).address.to_string() == "[::1]:9001");
}

TEST_CASE("a leading document marker and comments are fine") {
  valid(R"(
--- # fulcrum
services:  # the only required key
  - name: web  # a service
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
)");
}

// ---- Errors, each with its exact position ------------------------------------------

TEST_CASE("unknown keys are errors at the key") {
  CHECK(errors_of(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    lisen: 127.0.0.1:8081
    servers:
      - address: 127.0.0.1:9001
        wieght: 2
)") == R"(test.yaml:4:5: unknown key "lisen" in service
test.yaml:7:9: unknown key "wieght" in server)");

  CHECK(errors_of(R"(
global:
  threads: 4
service:
  - name: web
)") == R"(test.yaml:1:1: configuration is missing required key "services"
test.yaml:2:3: unknown key "threads" in global
test.yaml:3:1: unknown key "service" at top level)");

  CHECK(errors_of(R"(
defaults:
  listen: 127.0.0.1:80
  timeouts: {connect: 1s, read: 2s}
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
)") == R"(test.yaml:2:3: key "listen" is not allowed in defaults
test.yaml:3:27: unknown key "read" in timeouts)");
}

TEST_CASE("duplicate keys are errors at the second occurrence") {
  CHECK(errors_of(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    name: web2
    servers:
      - address: 127.0.0.1:9001
        weight: 1
        weight: 2
)") == R"(test.yaml:4:5: duplicate key "name" in service (first at line 2)
test.yaml:8:9: duplicate key "weight" in server (first at line 7))");
}

TEST_CASE("missing required keys are errors at the mapping that lacks them") {
  CHECK(errors_of(R"(
services:
  - listen: 127.0.0.1:8080
    servers:
      - weight: 2
  - name: web
)") == R"(test.yaml:2:5: service is missing required key "name"
test.yaml:4:9: server is missing required key "address"
test.yaml:5:5: service is missing required key "listen"
test.yaml:5:5: service is missing required key "servers")");

  CHECK(errors_of("") == R"(test.yaml:1:1: configuration is missing required key "services")");
  CHECK(errors_of("# nothing yet\n") ==
        R"(test.yaml:1:1: configuration is missing required key "services")");
}

TEST_CASE("bad durations") {
  CHECK(errors_of(R"(
global:
  shutdown_timeout: 1.5s
services:
  - name: web
    listen: 127.0.0.1:8080
    timeouts:
      connect: 0s
      idle: 10
    servers: [{address: 127.0.0.1:9001, slow_start: 5 s}]
)") == R"(test.yaml:2:21: invalid duration "1.5s": fractions are not allowed, use a smaller unit
test.yaml:7:16: expected a duration greater than 0, got "0s"
test.yaml:8:13: invalid duration "10": missing unit (ms, s, m or h)
test.yaml:9:53: invalid duration "5 s": spaces are not allowed)");
}

TEST_CASE("bad integers and integers out of range") {
  CHECK(errors_of(R"(
global:
  workers: 0
  max_connections: 0
services:
  - name: web
    listen: 127.0.0.1:8080
    retries: -1
    max_connections: 10000001
    servers:
      - address: 127.0.0.1:9001
        weight: 2.5
      - address: 127.0.0.1:9002
        weight: 1001
      - address: 127.0.0.1:9003
        weight: two
      - address: 127.0.0.1:9004
        weight: +3
        max_connections: 0x10
)") == R"(test.yaml:2:12: expected auto or an integer from 1 to 256, got "0"
test.yaml:3:20: expected an integer from 1 to 10000000, got "0"
test.yaml:7:14: expected an integer from 0 to 10, got "-1"
test.yaml:8:22: expected an integer from 0 to 10000000, got "10000001"
test.yaml:11:17: expected an integer from 0 to 1000, got "2.5"
test.yaml:13:17: expected an integer from 0 to 1000, got "1001"
test.yaml:15:17: expected an integer from 0 to 1000, got "two"
test.yaml:17:17: expected an integer from 0 to 1000, got "+3"
test.yaml:18:26: expected an integer from 0 to 10000000, got "0x10")");
}

TEST_CASE("bad enumerations and booleans") {
  CHECK(errors_of(R"(
global:
  log_level: verbose
  access_log: yes
services:
  - name: web
    listen: 127.0.0.1:8080
    scheduler: fastest
    hash_key: client
    address_mode: nat
    proxy_protocol: v3
    accept_proxy_protocol: 1
    servers: [{address: 127.0.0.1:9001, backup: False}]
)") == R"(test.yaml:2:14: expected one of error, warn, info, debug, got "verbose"
test.yaml:3:15: expected true or false, got "yes"
test.yaml:7:16: expected one of rr, wrr, lc, wlc, maglev, p2c, got "fastest"
test.yaml:8:15: expected one of source_ip, source_ip_port, got "client"
test.yaml:9:19: expected one of snat, transparent, got "nat"
test.yaml:10:21: expected one of none, v1, v2, got "v3"
test.yaml:11:28: expected true or false, got "1"
test.yaml:12:49: expected true or false, got "False")");
}

TEST_CASE("bad and unresolvable addresses") {
  CHECK(errors_of(R"(
services:
  - name: web
    listen: 127.0.0.1:99999
    source: localhost
    servers:
      - address: label-longer-than-the-63-bytes-that-dns-allows-so-no-query-is-ever-sent.invalid:80
      - address: ::1:80
      - address: 127.0.0.1
  - name: api
    listen: [127.0.0.1:8081, "127.1:8082"]
    servers: [{address: 127.0.0.1:9001}]
)") == R"(test.yaml:3:13: invalid port "99999", expected 1 to 65535
test.yaml:4:13: invalid IP address "localhost"
test.yaml:6:18: cannot resolve host "label-longer-than-the-63-bytes-that-dns-allows-so-no-query-is-ever-sent.invalid": Name or service not known
test.yaml:7:18: IPv6 address must be in brackets: [::1]:80
test.yaml:8:18: missing port in "127.0.0.1", expected HOST:PORT
test.yaml:10:30: invalid IPv4 address "127.1")");
}

TEST_CASE("the source's family must match every server's") {
  CHECK(errors_of(R"(
defaults:
  source: 127.0.0.1
services:
  - name: web
    listen: 127.0.0.1:8080
    servers:
      - address: 127.0.0.1:9001
      - address: "[::1]:9002"
  - name: v6
    listen: "[::1]:8080"
    source: "::1"
    servers: [{address: localhost:9003}]
)") == R"(test.yaml:8:18: server address "[::1]:9002" has no IPv4 address to match source 127.0.0.1
test.yaml:12:25: server address "localhost:9003" has no IPv6 address to match source ::1)");
}

TEST_CASE("invalid names") {
  CHECK(errors_of(R"(
services:
  - name: "my web"
    listen: 127.0.0.1:8080
    servers:
      - address: 127.0.0.1:9001
        name: "app/1"
  - name: ""
    listen: 127.0.0.1:8081
    servers: [{address: 127.0.0.1:9001}]
)") == R"(test.yaml:2:11: invalid service name "my web", expected letters, digits and _ . -
test.yaml:6:15: invalid server name "app/1", expected letters, digits and _ . : [ ] -
test.yaml:7:11: invalid service name "", expected letters, digits and _ . -)");
}

TEST_CASE("duplicate service names are errors at the second") {
  CHECK(errors_of(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
  - name: web
    listen: 127.0.0.1:8081
    servers: [{address: 127.0.0.1:9001}]
)") == R"(test.yaml:5:11: duplicate service name "web" (first at line 2))");
}

TEST_CASE("duplicate server names, given or defaulted, are errors at the second") {
  CHECK(errors_of(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    servers:
      - address: 127.0.0.1:9001
        name: app
      - address: 127.0.0.1:9002
        name: app
      - address: 127.0.0.1:9003
      - address: 127.0.0.1:9003
  - name: api
    listen: 127.0.0.1:8081
    servers:
      - {address: 127.0.0.1:9001, name: app}
)") == R"(test.yaml:8:15: duplicate server name "app" (first at line 6)
test.yaml:10:18: duplicate server name "127.0.0.1:9003" (first at line 9))");
}

TEST_CASE("a listen address used twice is an error at the second") {
  CHECK(errors_of(R"(
services:
  - name: web
    listen: [127.0.0.1:8080, "[::1]:8080"]
    servers: [{address: 127.0.0.1:9001}]
  - name: api
    listen:
      - 127.0.0.1:8081
      - localhost:8080
      - "[0::1]:8080"
      - 127.0.0.1:8081
    servers: [{address: 127.0.0.1:9001}]
)") == R"(test.yaml:8:9: duplicate listen address 127.0.0.1:8080 (first at line 3)
test.yaml:9:9: duplicate listen address [::1]:8080 (first at line 3)
test.yaml:10:9: duplicate listen address 127.0.0.1:8081 (first at line 7))");
}

TEST_CASE("values of the wrong kind are errors at the value") {
  CHECK(errors_of(R"(
global: [workers]
services:
  - name: [web]
    listen: {address: 127.0.0.1:8080}
    timeouts: 5s
    health_check: yes
    servers:
      address: 127.0.0.1:9001
  - just-a-name
  - name: api
    listen: []
    servers: []
  - name: empty
    listen:
    retries:
    servers: [127.0.0.1:9001]
)") == R"(test.yaml:1:9: expected a mapping, got a list
test.yaml:3:11: expected a scalar, got a list
test.yaml:4:13: expected an address or a list of addresses, got a mapping
test.yaml:5:15: expected a mapping, got "5s"
test.yaml:6:19: expected true, false or a mapping, got "yes"
test.yaml:8:7: expected a list of servers, got a mapping
test.yaml:9:5: expected a mapping, got "just-a-name"
test.yaml:11:13: expected at least one listen address
test.yaml:12:14: expected at least one server
test.yaml:14:5: missing value for "listen"
test.yaml:15:5: missing value for "retries"
test.yaml:16:15: expected a mapping, got "127.0.0.1:9001")");

  CHECK(errors_of(R"(
services: web
)") == R"(test.yaml:1:11: expected a list of services, got "web")");

  CHECK(errors_of(R"(
services: []
)") == R"(test.yaml:1:11: expected at least one service)");

  CHECK(errors_of(R"(
- services
)") == R"(test.yaml:1:1: expected a mapping, got a list)");

  CHECK(errors_of(R"(
[services]: 1
)") == R"(test.yaml:1:1: expected a key name, got a list
test.yaml:1:1: configuration is missing required key "services")");
}

TEST_CASE("YAML syntax errors are one error at their position") {
  CHECK(errors_of(R"(
services:
  - name: web
    listen: [127.0.0.1:8080
    servers: []
)") == R"(test.yaml:4:12: invalid YAML: end of sequence flow not found)");

  CHECK(errors_of("services:\n\t- name: web\n") ==
        R"(test.yaml:2:2: invalid YAML: illegal block entry)");

  CHECK(errors_of(R"(
services:
  - name: web
   listen: 127.0.0.1:8080
)") == R"(test.yaml:3:4: invalid YAML: end of sequence not found)");

  CHECK(errors_of(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
---
services: []
)") == R"(test.yaml:6:1: expected a single YAML document)");

  // yaml-cpp 0.7's LoadAll loops forever, allocating, on this (yaml-cpp#1040).
  CHECK(errors_of(R"(
,services:
  - name: web
)") == R"(test.yaml:1:1: invalid YAML: unexpected ",")");

  const std::string deep = "services: " + std::string(1000, '[') + std::string(1000, ']');
  CHECK(errors_of(deep).find("invalid YAML: nested more than") != std::string::npos);
}

TEST_CASE("every feature of the schema loads together") {
  const Config config = valid(R"(
global:
  user: root
  group: root
stats:
  listen: 127.0.0.1:9100
defaults:
  scheduler: maglev
services:
  - name: web
    listen: 127.0.0.1:8080
    scheduler: lc
    address_mode: transparent
    proxy_protocol: v2
    accept_proxy_protocol: true
    max_lifetime: 1h
    health_check:
      interval: 2s
    servers:
      - address: 127.0.0.1:9001
        backup: true
        slow_start: 30s
  - name: api
    listen: 127.0.0.1:8081
    scheduler: wlc
    proxy_protocol: v1
    servers: [{address: 127.0.0.1:9001}]
  - name: hash
    listen: 127.0.0.1:8082
    scheduler: p2c
    servers: [{address: 127.0.0.1:9001}]
)");
  CHECK(config.services[0].address_mode == AddressMode::transparent);
}

TEST_CASE("health_check values are checked") {
  CHECK(errors_of(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    health_check:
      interval: 1s
      timeout: 2s
      rise: 0
      fall: 101
      path: /
    servers: [{address: 127.0.0.1:9001}]
)") == R"(test.yaml:7:13: expected an integer from 1 to 100, got "0"
test.yaml:8:13: expected an integer from 1 to 100, got "101"
test.yaml:9:7: unknown key "path" in health_check)");

  CHECK(errors_of(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    health_check: {interval: 1s, timeout: 2s}
    servers: [{address: 127.0.0.1:9001}]
)") == R"(test.yaml:4:43: health_check timeout (2s) must not be longer than its interval (1s))");
}

TEST_CASE("health checks beyond connect: port, send/expect, http, agent, on_server_down") {
  const Config config = valid(R"(
services:
  - name: redis
    listen: 127.0.0.1:8080
    on_server_down: close
    health_check:
      port: 6380
      send: "INFO replication\r\n"
      expect: "role:master"
    servers: [{address: 127.0.0.1:9001}]
  - name: web
    listen: 127.0.0.1:8081
    health_check:
      interval: 3s
      http: {path: /primary, host: db.test, status: [200, "204-206"], tls: true, verify: true}
      agent: {port: 9999, send: "web\n"}
    servers: [{address: 127.0.0.1:9001}]
  - name: plain
    listen: 127.0.0.1:8082
    health_check: {http: }
    servers: [{address: 127.0.0.1:9001}]
)");
  const HealthCheckConfig& redis = config.services[0].health_check;
  CHECK(config.services[0].on_server_down == OnServerDown::close);
  CHECK(config.services[1].on_server_down == OnServerDown::keep);
  CHECK(redis.port == 6380);
  CHECK(redis.send == "INFO replication\r\n");
  CHECK(redis.expect == "role:master");
  CHECK_FALSE(redis.http);
  const HealthCheckConfig& web = config.services[1].health_check;
  REQUIRE(web.http);
  CHECK(web.http->path == "/primary");
  CHECK(web.http->host == "db.test");
  REQUIRE(web.http->statuses.size() == 2);
  CHECK((web.http->statuses[1].first == 204 && web.http->statuses[1].last == 206));
  CHECK((web.http->tls && web.http->verify));
  REQUIRE(web.agent);
  CHECK(web.agent->port == 9999);
  CHECK(web.agent->interval == Duration(3000));  // the check's own
  CHECK(web.agent->send == "web\n");
  const HealthCheckConfig& plain = config.services[2].health_check;
  REQUIRE(plain.http);
  CHECK(plain.http->path == "/");
  REQUIRE(plain.http->statuses.size() == 1);
  CHECK((plain.http->statuses[0].first == 200 && plain.http->statuses[0].last == 399));
}

TEST_CASE("health checks beyond connect: bad input at its position") {
  CHECK(errors_of(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    on_server_down: drop
    health_check:
      port: 0
      send: "PING\r\n"
      expect: ""
      http: {path: /}
      agent: {port: 0, interval: 0s}
    servers: [{address: 127.0.0.1:9001}]
  - name: api
    listen: 127.0.0.1:8081
    health_check:
      http: {path: health, host: "a b", status: [200, 600, "399-200"], verify: true}
      agent: {interval: 1s}
    servers: [{address: 127.0.0.1:9001}]
)") == R"(test.yaml:4:21: expected one of keep, close, got "drop"
test.yaml:6:13: expected an integer from 1 to 65535, got "0"
test.yaml:8:15: health_check expect is empty: every reply would contain it
test.yaml:9:7: health_check http cannot be combined with send: an HTTP check sends its own request
test.yaml:10:21: expected an integer from 1 to 65535, got "0"
test.yaml:10:34: expected a duration greater than 0, got "0s"
test.yaml:15:20: health_check.http path must start with /, got "health"
test.yaml:15:34: health_check.http host must be printable ASCII without spaces, got "a b"
test.yaml:15:55: expected an HTTP status from 100 to 599 or a range like 200-399, got "600"
test.yaml:15:60: expected an HTTP status from 100 to 599 or a range like 200-399, got "399-200"
test.yaml:15:72: health_check.http verify needs tls: true
test.yaml:16:14: health_check.agent is missing required key "port")");
}

TEST_CASE("transparent mode: no snat source, one address family") {
  CHECK(
      errors_of(R"(
defaults:
  address_mode: transparent
services:
  - name: a
    listen: 127.0.0.1:8080
    source: 127.0.0.2
    servers: [{address: 127.0.0.1:9001}]
  - name: b
    listen: ["127.0.0.1:8081", "[::1]:8081"]
    servers: [{address: 127.0.0.1:9001}]
  - name: c
    listen: "[::1]:8082"
    servers: [{address: 127.0.0.1:9001}]
)") ==
      R"(test.yaml:6:13: source is for address_mode snat: transparent connects from the client's address
test.yaml:9:13: a transparent service listens on one address family: its clients' addresses are the sources of its server connections
test.yaml:13:25: server address "127.0.0.1:9001" has no IPv6 address to match the client addresses of transparent listen [::1]:8082)");

  // PROXY headers may carry either family: sessions pick a matching server.
  const Config config = valid(R"(
services:
  - name: a
    listen: "[::1]:8080"
    address_mode: transparent
    accept_proxy_protocol: true
    servers: [{address: 127.0.0.1:9001}, {address: "[::1]:9001"}]
)");
  CHECK(config.services[0].servers.size() == 2);
}

TEST_CASE("keys at their neutral values are accepted") {
  const Config config = valid(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    address_mode: snat
    proxy_protocol: none
    accept_proxy_protocol: false
    max_lifetime: 0s
    health_check: false
    servers:
      - address: 127.0.0.1:9001
        backup: false
        slow_start: 0s
)");
  CHECK_FALSE(config.services.at(0).health_check.enabled);
}

TEST_CASE("every error is reported, in file order") {
  const ConfigLoad load = load_config_text(yaml_text(R"(
global:
  workers: many
  log_level: loud
services:
  - name: web
    listen: 127.0.0.1:8080
    retries: 11
    servers:
      - address: 127.0.0.1:9001
        weight: -1
      - address: 127.0.0.1:9001
  - name: web
    listen: 127.0.0.1:8080
    colour: blue
)"),
                                           "multi.yaml");
  CHECK_FALSE(load.config.has_value());
  REQUIRE(load.errors.size() == 9);
  CHECK(load.errors[0].to_string() ==
        R"(multi.yaml:2:12: expected auto or an integer from 1 to 256, got "many")");
  CHECK(load.errors[1].to_string() ==
        R"(multi.yaml:3:14: expected one of error, warn, info, debug, got "loud")");
  CHECK(load.errors[2].to_string() ==
        R"(multi.yaml:7:14: expected an integer from 0 to 10, got "11")");
  CHECK(load.errors[3].to_string() ==
        R"(multi.yaml:10:17: expected an integer from 0 to 1000, got "-1")");
  CHECK(load.errors[4].to_string() ==
        R"(multi.yaml:11:18: duplicate server name "127.0.0.1:9001" (first at line 9))");
  CHECK(load.errors[5].to_string() ==
        R"(multi.yaml:12:5: service is missing required key "servers")");
  CHECK(load.errors[6].to_string() ==
        R"(multi.yaml:12:11: duplicate service name "web" (first at line 5))");
  CHECK(load.errors[7].to_string() ==
        R"(multi.yaml:13:13: duplicate listen address 127.0.0.1:8080 (first at line 6))");
  CHECK(load.errors[8].to_string() == R"(multi.yaml:14:5: unknown key "colour" in service)");
  CHECK(load.errors[8].file == "multi.yaml");
  CHECK(load.errors[8].line == 14);
  CHECK(load.errors[8].column == 5);
  CHECK(load.errors[8].message == R"(unknown key "colour" in service)");
}

TEST_CASE("error messages stay on one line") {
  CHECK(errors_of("services:\n  - name: \"a\\nb\"\n    listen: 127.0.0.1:8080\n"
                  "    servers: [{address: 127.0.0.1:9001}]\n") ==
        R"(test.yaml:2:11: invalid service name "a\nb", expected letters, digits and _ . -)");
}

// ---- Files -----------------------------------------------------------------------------

TEST_CASE("load_config_file reads a file and names it in errors") {
  char path[] = "/tmp/fulcrum-test-config-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string yaml =
      "services:\n  - name: web\n    listen: 127.0.0.1:8080\n"
      "    servers: [{address: 127.0.0.1:9001}]\n";
  REQUIRE(write(fd, yaml.data(), yaml.size()) == static_cast<ssize_t>(yaml.size()));
  close(fd);

  const ConfigLoad ok = load_config_file(path);
  CHECK(ok.errors.empty());
  REQUIRE(ok.config.has_value());
  CHECK(ok.config->path == path);
  CHECK(ok.config->services.at(0).name == "web");

  std::FILE* file = std::fopen(path, "a");
  REQUIRE(file);
  std::fputs("bogus: 1\n", file);
  std::fclose(file);
  const ConfigLoad bad = load_config_file(path);
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].to_string() ==
        std::string(path) + R"(:5:1: unknown key "bogus" at top level)");
  std::remove(path);
}

TEST_CASE("a missing or unreadable file is one error at 1:1") {
  const ConfigLoad missing = load_config_file("/nonexistent/fulcrum.yaml");
  CHECK_FALSE(missing.config.has_value());
  REQUIRE(missing.errors.size() == 1);
  CHECK(missing.errors[0].to_string() ==
        "/nonexistent/fulcrum.yaml:1:1: cannot read configuration: No such file or directory");

  const ConfigLoad directory = load_config_file("/");
  REQUIRE(directory.errors.size() == 1);
  CHECK(directory.errors[0].to_string() == "/:1:1: cannot read configuration: Is a directory");
}

TEST_CASE("enumerations print as written in the file") {
  CHECK(to_string(LogLevel::warn) == "warn");
  CHECK(to_string(LogLevel::debug) == "debug");
  CHECK(to_string(SchedulerKind::wrr) == "wrr");
  CHECK(to_string(SchedulerKind::maglev) == "maglev");
  CHECK(to_string(SchedulerKind::p2c) == "p2c");
}

TEST_CASE("scheduler settings: every algorithm, hash_key, backup and slow_start") {
  const Config config = valid(R"(
defaults:
  scheduler: maglev
  hash_key: source_ip_port
services:
  - name: web
    listen: 127.0.0.1:8080
    servers:
      - address: 127.0.0.1:9001
        slow_start: 30s
      - address: 127.0.0.1:9002
        backup: true
  - name: a
    listen: 127.0.0.1:8081
    scheduler: lc
    servers: [{address: 127.0.0.1:9001}]
  - name: b
    listen: 127.0.0.1:8082
    scheduler: wlc
    servers: [{address: 127.0.0.1:9001}]
  - name: c
    listen: 127.0.0.1:8083
    scheduler: p2c
    servers: [{address: 127.0.0.1:9001}]
)");
  REQUIRE(config.services.size() == 4);
  const ServiceConfig& web = config.services[0];
  CHECK(web.scheduler == SchedulerKind::maglev);
  CHECK(web.hash_key == HashKey::source_ip_port);
  CHECK(web.servers[0].slow_start == 30s);
  CHECK_FALSE(web.servers[0].backup);
  CHECK(web.servers[1].backup);
  CHECK(config.services[1].scheduler == SchedulerKind::lc);
  CHECK(config.services[2].scheduler == SchedulerKind::wlc);
  CHECK(config.services[3].scheduler == SchedulerKind::p2c);
  CHECK(config.services[3].hash_key == HashKey::source_ip_port);  // inherited, unused by p2c
}

TEST_CASE("health_check and max_lifetime are read") {
  const Config config = valid(R"(
defaults:
  health_check: {interval: 200ms, timeout: 100ms, rise: 3, fall: 4}
services:
  - name: web
    listen: 127.0.0.1:8080
    max_lifetime: 10m
    servers: [{address: 127.0.0.1:9001}]
  - name: off
    listen: 127.0.0.1:8081
    health_check: false
    servers: [{address: 127.0.0.1:9001}]
)");
  const HealthCheckConfig& check = config.services.at(0).health_check;
  CHECK(check.enabled);
  CHECK(check.interval == 200ms);
  CHECK(check.timeout == 100ms);
  CHECK(check.rise == 3);
  CHECK(check.fall == 4);
  CHECK(config.services.at(0).max_lifetime == 10min);
  CHECK_FALSE(config.services.at(1).health_check.enabled);
  CHECK(config.services.at(1).max_lifetime == 0s);
}

TEST_CASE("health_check: true turns checks on with the inherited settings") {
  const Config config = valid(R"(
services:
  - name: plain
    listen: 127.0.0.1:8080
    health_check: true
    servers: [{address: 127.0.0.1:9001}]
)");
  const HealthCheckConfig& check = config.services.at(0).health_check;
  CHECK(check.enabled);
  CHECK(check.interval == 2s);
  CHECK(check.timeout == 1s);
  CHECK(check.rise == 2);
  CHECK(check.fall == 3);

  const Config inherited = valid(R"(
defaults:
  health_check: {interval: 5s, rise: 4}
  scheduler: rr
services:
  - name: web
    listen: 127.0.0.1:8080
    health_check: true
    servers: [{address: 127.0.0.1:9001}]
)");
  const HealthCheckConfig& from_defaults = inherited.services.at(0).health_check;
  CHECK(from_defaults.enabled);
  CHECK(from_defaults.interval == 5s);
  CHECK(from_defaults.rise == 4);
  CHECK(from_defaults.fall == 3);
}

TEST_CASE("stats section") {
  const Config config = valid(R"(
stats:
  listen: 127.0.0.1:9100
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
)");
  CHECK(config.stats.enabled);
  CHECK(config.stats.listen.to_string() == "127.0.0.1:9100");
  CHECK_FALSE(valid(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
)")
                  .stats.enabled);
  CHECK(errors_of(R"(
stats:
  listen: 127.0.0.1:8080
  admin_token_file: /etc/fulcrum/admin.token
  port: 1
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
)") == R"(test.yaml:4:3: unknown key "port" in stats
test.yaml:7:13: duplicate listen address 127.0.0.1:8080 (first at line 2))");
  CHECK(errors_of(R"(
stats: {}
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
)") == "test.yaml:1:8: stats is missing required key \"listen\"");
}

TEST_CASE("global.user and group must exist") {
  CHECK(errors_of(R"(
global:
  user: no-such-user-here
  group: no-such-group-here
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
)") == R"(test.yaml:2:9: unknown user "no-such-user-here"
test.yaml:3:10: unknown group "no-such-group-here")");
  CHECK(errors_of(R"(
global:
  group: root
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
)") == "test.yaml:2:10: group needs user: fulcrum drops to a user and, optionally, another group");
  const Config config = valid(R"(
global: {user: nobody, group: nogroup}
services:
  - name: web
    listen: 127.0.0.1:8080
    servers: [{address: 127.0.0.1:9001}]
)");
  CHECK(config.global.user == "nobody");
  CHECK(config.global.group == "nogroup");
}

TEST_CASE("an [IPv6]:PORT written without quotes gets a hint to quote it") {
  CHECK(
      errors_of(R"(
services:
  - name: web
    listen: [::]:80
    servers: [{address: "[::1]:9001"}]
)") ==
      R"(test.yaml:3:17: invalid YAML: end of map not found (an [IPv6]:PORT address must be quoted: "[::]:80"))");
  CHECK(
      errors_of(R"(
services:
  - name: web
    listen: ["[::1]:8080", [::1]:8081]
    servers:
      - address: [::1]:9001
)") ==
      R"(test.yaml:5:23: invalid YAML: end of map not found (an [IPv6]:PORT address must be quoted: "[::1]:9001"))");
  CHECK(
      errors_of(R"(
services:
  - name: web
    listen: ["[::1]:8080", [::1]:8081]
    servers: [{address: "[::1]:9001"}]
)") ==
      R"(test.yaml:3:28: expected a scalar, got a mapping (an [IPv6]:PORT address must be quoted: "[::1]:8081"))");
  // Quoted, the same addresses are fine.
  CHECK(errors_of(R"(
services:
  - name: web
    listen: ["[::]:8080", "[::1]:8081"]
    servers: [{address: "[::1]:9001"}]
)") == "");
}
