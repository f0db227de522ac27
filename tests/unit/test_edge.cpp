// At the edge (SPEC.md): address ranges, and the keys that use them.
#include <doctest/doctest.h>

#include <string>

#include "config_text.hpp"
#include "fulcrum/cidr.hpp"

using namespace fulcrum;
using namespace fulcrum::test;

namespace {

Cidr cidr(std::string_view text) {
  std::string error;
  const std::optional<Cidr> parsed = parse_cidr(text, error);
  REQUIRE_MESSAGE(parsed, error);
  return *parsed;
}

SocketAddress ip(std::string_view text) { return parse_ip_literal(text).addresses.at(0); }

}  // namespace

TEST_CASE("cidr: ranges hold their addresses, of their family only") {
  const Cidr net = cidr("198.18.0.0/15");
  CHECK(net.to_string() == "198.18.0.0/15");
  CHECK(net.contains(ip("198.18.0.1")));
  CHECK(net.contains(ip("198.19.255.255")));
  CHECK_FALSE(net.contains(ip("198.20.0.0")));
  CHECK_FALSE(net.contains(ip("198.17.255.255")));
  CHECK_FALSE(net.contains(ip("::ffff:198.18.0.1")));
  CHECK(cidr("198.18.66.7").to_string() == "198.18.66.7/32");
  CHECK(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
  const Cidr v6 = cidr("2001:db8:1::/48");
  CHECK(v6.contains(ip("2001:db8:1:ffff::1")));
  CHECK_FALSE(v6.contains(ip("2001:db8:2::1")));
  CHECK_FALSE(v6.contains(ip("198.18.0.1")));
  CHECK(cidr("2001:db8::/127").contains(ip("2001:db8::1")));

  std::string error;
  CHECK_FALSE(parse_cidr("198.18.0.1/15", error));
  CHECK(error ==
        "\"198.18.0.1/15\" has host bits set below its prefix: the range is 198.18.0.0/15");
  CHECK_FALSE(parse_cidr("198.18.0.0/33", error));
  CHECK(error == "prefix length of \"198.18.0.0/33\" must be 0 to 32");
  CHECK_FALSE(parse_cidr("2001:db8::/x", error));
  CHECK(error == "prefix length of \"2001:db8::/x\" must be 0 to 128");
  CHECK_FALSE(parse_cidr("example.test/8", error));
  CHECK(error ==
        "expected an address or ADDRESS/PREFIX (198.18.0.0/15, 2001:db8::/32), got "
        "\"example.test/8\"");
}

TEST_CASE("edge keys: allow, deny, source_limits, accept_proxy_protocol") {
  const Config config = valid(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    allow: [198.18.0.0/15, "2001:db8::/32", 127.0.0.1]
    deny: [198.18.66.0/24]
    source_limits: {connections: 5, rate: 10/s}
    accept_proxy_protocol: [127.0.0.2, 198.18.1.0/24]
    servers: [{address: 127.0.0.1:9001}]
  - name: open
    listen: 127.0.0.1:8081
    accept_proxy_protocol: true
    servers: [{address: 127.0.0.1:9001}]
)");
  const ServiceConfig& web = config.services.at(0);
  REQUIRE(web.allow.size() == 3);
  CHECK(web.allow[2].to_string() == "127.0.0.1/32");
  CHECK(web.deny == std::vector<Cidr>{cidr("198.18.66.0/24")});
  REQUIRE(web.source_limits);
  CHECK(web.source_limits->connections == 5);
  CHECK(web.source_limits->rate == 10);
  CHECK(web.accept_proxy_protocol.enabled);
  CHECK(web.accept_proxy_protocol.trusts(ip("198.18.1.9")));
  CHECK_FALSE(web.accept_proxy_protocol.trusts(ip("127.0.0.3")));
  const ServiceConfig& open = config.services.at(1);
  CHECK(open.accept_proxy_protocol.enabled);
  CHECK(open.accept_proxy_protocol.trusts(ip("203.0.113.9")));
  CHECK(open.allow.empty());
  CHECK_FALSE(open.source_limits);

  CHECK(errors_of(R"(
services:
  - name: web
    listen: 127.0.0.1:8080
    allow: 198.18.0.0/15
    deny: [198.18.66.1/24, nowhere]
    source_limits: {rate: 10/m, burst: 3}
    accept_proxy_protocol: []
    servers: [{address: 127.0.0.1:9001}]
  - name: kernel
    forwarding: nat
    listen: 198.18.10.10:80
    allow: [198.18.0.0/15]
    source_limits: {}
    servers: [{address: 198.18.1.1:80}]
)") == "test.yaml:4:12: allow must be a list of addresses or ranges like 198.18.0.0/15\n"
       "test.yaml:5:12: \"198.18.66.1/24\" has host bits set below its prefix: the range is "
       "198.18.66.0/24\n"
       "test.yaml:5:28: expected an address or ADDRESS/PREFIX (198.18.0.0/15, 2001:db8::/32), got "
       "\"nowhere\"\n"
       "test.yaml:6:27: expected a rate like 50/s (1/s to 1000000/s), got \"10/m\"\n"
       "test.yaml:6:33: unknown key \"burst\" in source_limits\n"
       "test.yaml:7:28: accept_proxy_protocol must be a list of addresses or ranges like "
       "198.18.0.0/15\n"
       "test.yaml:12:5: allow is for forwarding proxy: fulcrum checks clients as it accepts them, "
       "and the kernel accepts none (filter with nftables rules of your own)\n"
       "test.yaml:13:5: source_limits sets neither connections nor rate\n"
       "test.yaml:13:5: source_limits is for forwarding proxy: fulcrum checks clients as it "
       "accepts them, and the kernel accepts none (filter with nftables rules of your own)");
}

TEST_CASE("edge keys: sni_routes put their servers beside the service's, tagged") {
  const Config config = valid(R"(
services:
  - name: tls
    listen: 127.0.0.1:8443
    sni_routes:
      - names: [API.test, "*.apps.test"]
        servers: [{name: api, address: 127.0.0.1:9001}]
      - names: [shop.test]
        servers: [{name: shop, address: 127.0.0.1:9002}, {name: shop2, address: 127.0.0.1:9003}]
    sni_required: true
    servers: [{name: plain, address: 127.0.0.1:9004}]
)");
  const ServiceConfig& tls = config.services.at(0);
  REQUIRE(tls.sni_routes.size() == 2);
  CHECK(tls.sni_routes[0].names == std::vector<std::string>{"api.test", "*.apps.test"});
  CHECK(tls.sni_required);
  std::vector<std::string> servers;
  for (const ServerConfig& server : tls.servers)
    servers.push_back(server.name + ":" + (server.route ? std::to_string(*server.route) : "-"));
  CHECK(servers == std::vector<std::string>{"plain:-", "api:0", "shop:1", "shop2:1"});

  CHECK(errors_of(R"(
services:
  - name: tls
    listen: 127.0.0.1:8443
    sni_routes:
      - names: ["*.*.test", api.test, API.TEST]
        servers: [{name: plain, address: 127.0.0.1:9001}]
    servers: [{name: plain, address: 127.0.0.1:9004}]
  - name: kernel
    forwarding: nat
    listen: 198.18.10.10:443
    sni_required: true
    servers: [{address: 198.18.1.1:443}]
  - name: strict
    listen: 127.0.0.1:8444
    sni_required: true
    servers: [{address: 127.0.0.1:9005}]
)") == "test.yaml:5:17: server name \"*.*.test\" is not a host name or *.host.name (one label per "
       "*)\n"
       "test.yaml:5:39: duplicate server name api.test (first at line 5)\n"
       "test.yaml:6:26: duplicate server name \"plain\" (first at line 7)\n"
       "test.yaml:11:5: sni_required is for forwarding proxy: the kernel forwards packets without "
       "reading them\n"
       "test.yaml:15:5: sni_required: true needs sni_routes (without them every client is closed)");
}
