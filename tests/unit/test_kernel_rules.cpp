// The kernel data plane's translation (kernel_rules.hpp) and the diff that
// sends it (nft_ruleset.hpp): exact nft text, since that is what the kernel
// is given. tests/netns/ runs the same text against the kernel.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "config_text.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/kernel_plane.hpp"
#include "fulcrum/kernel_rules.hpp"
#include "fulcrum/nft_ruleset.hpp"

using namespace fulcrum;
using namespace fulcrum::test;
using namespace std::chrono_literals;

namespace {

Config nat(const std::string& scheduler, const std::string& extra = "") {
  return valid(
      "services:\n"
      "  - name: web\n"
      "    forwarding: nat\n"
      "    listen: 198.18.10.10:80\n"
      "    scheduler: " +
      scheduler + "\n" + extra +
      "    servers:\n"
      "      - {name: a, address: 198.18.1.11:8080, weight: 3}\n"
      "      - {name: b, address: 198.18.1.12:8080}\n"
      "      - {name: spare, address: 198.18.1.13:8080, backup: true}\n"
      "  - name: relayed\n"
      "    listen: 127.0.0.1:8080\n"
      "    servers: [{address: 127.0.0.1:9001}]\n");
}

struct Fixture {
  ControlPlane control{1};
  KernelNames names;
  SteadyTime t0 = std::chrono::steady_clock::now();

  NftRuleset install(Config config) {
    control.install(std::move(config), t0);
    return kernel_ruleset(*control.snapshot(), names);
  }
  void set_state(const std::string& server, AdminState state) {
    const auto found = control.snapshot()->find("web", server);
    control.operator_request(*found.service, *found.server, state, std::nullopt, t0);
  }
  NftRuleset now() { return kernel_ruleset(*control.snapshot(), names); }
};

const NftTable& ip_table(const NftRuleset& ruleset) { return ruleset.at("ip"); }

}  // namespace

TEST_CASE("kernel rules: rr over the primaries, one chain and counter per server") {
  Fixture f;
  const NftRuleset ruleset = f.install(nat("rr"));
  CHECK(ruleset.size() == 1);  // the proxy service has no rule
  const NftTable& table = ip_table(ruleset);
  CHECK(table.maps.at("services").elements ==
        std::map<std::string, std::string>{{"198.18.10.10 . tcp . 80", "jump s1"}});
  CHECK(table.chains.at("prerouting").rules ==
        std::vector<std::string>{"ip daddr . meta l4proto . th dport vmap @services"});
  CHECK(table.chains.at("prerouting").hook ==
        "type nat hook prerouting priority dstnat; policy accept;");
  CHECK(table.chains.at("output").hook == "type nat hook output priority -100; policy accept;");
  CHECK_FALSE(table.chains.contains("postrouting"));
  CHECK(table.chains.at("s1").rules ==
        std::vector<std::string>{
            "ct mark set numgen inc mod 2 map @s1_slots ct mark vmap @s1_servers"});
  CHECK(table.maps.at("s1_slots").type == "typeof numgen inc mod 65537 : ct mark");
  CHECK(table.maps.at("s1_slots").slots == std::vector<std::string>{"0x66000001", "0x66000002"});
  // Every configured server is reachable by its mark, whatever its state.
  CHECK(table.maps.at("s1_servers").elements ==
        std::map<std::string, std::string>{
            {"0x66000001", "jump s1_1"}, {"0x66000002", "jump s1_2"}, {"0x66000003", "jump s1_3"}});
  CHECK(
      table.chains.at("s1_1").rules ==
      std::vector<std::string>{"meta l4proto tcp counter name \"cs1_1\" dnat to 198.18.1.11:8080"});
  CHECK(table.chains.at("s1_3").comment == "server web/spare");
  CHECK(table.counters == std::set<std::string>{"cs1_1", "cs1_2", "cs1_3", "is1_1", "is1_2",
                                                "is1_3", "os1_1", "os1_2", "os1_3"});
}

TEST_CASE("kernel rules: every packet of a server's flows is counted by its flow mark") {
  Fixture f;
  const NftTable table = ip_table(f.install(nat("rr")));
  CHECK(table.maps.at("traffic_in").type == "type mark : counter");
  CHECK(table.maps.at("traffic_in").elements ==
        std::map<std::string, std::string>{
            {"0x66000001", "\"is1_1\""}, {"0x66000002", "\"is1_2\""}, {"0x66000003", "\"is1_3\""}});
  CHECK(table.maps.at("traffic_out").elements.at("0x66000002") == "\"os1_2\"");
  CHECK(table.chains.at("traffic").rules ==
        std::vector<std::string>{"ct direction original counter name ct mark map @traffic_in",
                                 "ct direction reply counter name ct mark map @traffic_out"});
  for (const char* hook : {"forward", "input", "output"}) {
    const NftChain& chain = table.chains.at(std::string("traffic_") + hook);
    CHECK(chain.hook ==
          std::string("type filter hook ") + hook + " priority filter; policy accept;");
    CHECK(chain.rules ==
          std::vector<std::string>{"ct mark and 0xff000000 == 0x66000000 jump traffic"});
  }
  // Marks are the process's: a server keeps its own across reloads, and a
  // new one never takes a mark given before.
  CHECK(f.names.flow_mark("web", "b") == 0x66000002);
  CHECK(f.names.flow_mark("other", "b") == 0x66000004);
  CHECK(f.names.flow_mark("web", "b") == 0x66000002);
}

TEST_CASE("kernel rules: drain and down leave the slots, backups take over, none drops") {
  Fixture f;
  f.install(nat("rr"));
  f.set_state("a", AdminState::drain);
  CHECK(ip_table(f.now()).maps.at("s1_slots").slots == std::vector<std::string>{"0x66000002"});
  CHECK(ip_table(f.now()).chains.at("s1").rules ==
        std::vector<std::string>{
            "ct mark set numgen inc mod 1 map @s1_slots ct mark vmap @s1_servers"});
  f.set_state("b", AdminState::maint);
  CHECK(ip_table(f.now()).maps.at("s1_slots").slots == std::vector<std::string>{"0x66000003"});
  f.set_state("spare", AdminState::drain);
  const NftTable table = ip_table(f.now());
  CHECK(table.chains.at("s1").rules == std::vector<std::string>{"drop"});
  CHECK_FALSE(table.maps.contains("s1_slots"));
  // A drained server keeps its chain: established flows are conntrack's.
  CHECK(table.chains.contains("s1_1"));
}

TEST_CASE("kernel rules: wrr slots follow the weights exactly") {
  Fixture f;
  const NftTable table = ip_table(f.install(nat("wrr")));
  CHECK(table.chains.at("s1").rules ==
        std::vector<std::string>{
            "ct mark set numgen inc mod 4 map @s1_slots ct mark vmap @s1_servers"});
  std::map<std::string, int> count;
  for (const std::string& target : table.maps.at("s1_slots").slots) count[target]++;
  CHECK(count == std::map<std::string, int>{{"0x66000001", 3}, {"0x66000002", 1}});
}

TEST_CASE("kernel rules: maglev installs the proxy's own table under the kernel's jhash") {
  Fixture f;
  const NftTable table = ip_table(f.install(nat("maglev", "    hash_key: source_ip_port\n")));
  CHECK(table.chains.at("s1").rules ==
        std::vector<std::string>{
            "ct mark set jhash ip saddr . th sport mod 65537 seed 0x6d676c76 map @s1_slots ct mark "
            "vmap @s1_servers"});
  const auto& slots = table.maps.at("s1_slots").slots;
  REQUIRE(slots.size() == kMaglevTableSize);
  const std::vector<uint32_t> expected = build_maglev_table({"a", "b"}, {3, 1}, kMaglevTableSize);
  for (const uint32_t slot : {0u, 1u, 777u, 65536u}) {
    CHECK(slots.at(slot) == (expected[slot] == 0 ? "0x66000001" : "0x66000002"));
  }
}

TEST_CASE("kernel rules: fullnat adds source NAT by the flow's original destination") {
  Fixture f;
  const NftRuleset ruleset = f.install(valid(R"(
services:
  - name: v6
    forwarding: fullnat
    protocol: udp
    listen: "[2001:db8::10]:53"
    source: 2001:db8::1
    servers: [{name: a, address: "[2001:db8:1::11]:5353"}]
  - name: v4
    forwarding: fullnat
    listen: 198.18.10.10:80
    servers: [{name: a, address: 198.18.1.11:80}]
)"));
  const NftTable& v6 = ruleset.at("ip6");
  CHECK(v6.maps.at("services").elements ==
        std::map<std::string, std::string>{{"2001:db8::10 . udp . 53", "jump s1"}});
  CHECK(v6.chains.at("s1_1").rules ==
        std::vector<std::string>{
            "meta l4proto udp counter name \"cs1_1\" dnat to [2001:db8:1::11]:5353"});
  CHECK(v6.chains.at("postrouting").rules ==
        std::vector<std::string>{"meta l4proto udp ct original ip6 daddr 2001:db8::10 ct original "
                                 "proto-dst 53 snat to 2001:db8::1"});
  CHECK(ruleset.at("ip").chains.at("postrouting").rules ==
        std::vector<std::string>{
            "meta l4proto tcp ct original ip daddr 198.18.10.10 ct original proto-dst 80 "
            "masquerade"});
}

TEST_CASE("nft transaction: only the difference, in an order the kernel accepts") {
  NftRuleset before;
  NftTable& table = before["ip"];
  table.counters = {"c1", "c2"};
  table.chains["x"] = {"", "", {"drop"}};
  table.chains["s1"] = {"", "service web", {"numgen inc mod 2 vmap @m"}};
  table.chains["s1_1"] = {"", "", {"accept"}};
  table.chains["s1_2"] = {"", "", {"accept"}};
  table.maps["m"] = {
      "typeof numgen inc mod 65537 : verdict", {{"0", "jump s1_1"}, {"1", "jump s1_2"}}, {}};
  table.maps["gone"] = {"typeof numgen inc mod 65537 : verdict", {{"0", "jump x"}}, {}};

  CHECK(nft_transaction(before, before).empty());

  NftRuleset after = before;
  NftTable& next = after["ip"];
  next.counters = {"c1", "c3"};
  next.chains.erase("x");
  next.maps.erase("gone");
  next.chains["s1_3"] = {"", "server web/c", {"accept"}};
  next.chains["s1"].rules = {"numgen inc mod 1 vmap @m"};
  next.maps["m"].elements = {{"0", "jump s1_3"}};
  CHECK(nft_transaction(before, after) ==
        "add table ip fulcrum\n"
        "add counter ip fulcrum c3\n"
        "add chain ip fulcrum s1_3 { comment \"server web/c\"; }\n"
        "delete element ip fulcrum m { 0, 1 }\n"
        "add element ip fulcrum m { 0 : jump s1_3 }\n"
        "flush chain ip fulcrum s1\n"
        "add rule ip fulcrum s1 numgen inc mod 1 vmap @m\n"
        "add rule ip fulcrum s1_3 accept\n"
        "flush chain ip fulcrum x\n"
        "delete map ip fulcrum gone\n"
        "delete chain ip fulcrum x\n"
        "delete counter ip fulcrum c2\n");

  // Start-up replaces whatever a previous run left, atomically.
  NftRuleset small;
  small["ip6"].chains["s1"] = {
      "type nat hook output priority -100; policy accept;", "", {"accept"}};
  CHECK(nft_transaction(before, small, true) ==
        "add table ip fulcrum\ndelete table ip fulcrum\n"
        "add table ip6 fulcrum\ndelete table ip6 fulcrum\n"
        "add table netdev fulcrum\ndelete table netdev fulcrum\n"
        "add table ip6 fulcrum\n"
        "add chain ip6 fulcrum s1 { type nat hook output priority -100; policy accept; }\n"
        "add rule ip6 fulcrum s1 accept\n");
  // Nothing left: the table goes.
  CHECK(nft_transaction(before, {}) == "delete table ip fulcrum\n");
}

TEST_CASE("nft transaction: a slot map sends only the slots that moved, added or went") {
  NftRuleset before;
  before["ip"].maps["s1_slots"].type = "typeof numgen inc mod 65537 : verdict";
  before["ip"].maps["s1_slots"].slots = {"jump s1_1", "jump s1_2", "jump s1_1"};
  NftRuleset after = before;
  after["ip"].maps["s1_slots"].slots = {"jump s1_1", "jump s1_1"};
  CHECK(nft_transaction(before, after) ==
        "add table ip fulcrum\n"
        "delete element ip fulcrum s1_slots { 1, 2 }\n"
        "add element ip fulcrum s1_slots { 1 : jump s1_1 }\n");
  after["ip"].maps["s1_slots"].slots.emplace_back("jump s1_3");
  after["ip"].maps["s1_slots"].slots.emplace_back("jump s1_3");
  CHECK(nft_transaction(before, after) ==
        "add table ip fulcrum\n"
        "delete element ip fulcrum s1_slots { 1, 2 }\n"
        "add element ip fulcrum s1_slots { 1 : jump s1_1, 2 : jump s1_3, 3 : jump s1_3 }\n");
}

TEST_CASE("kernel rules: dsr remembers flows, forwards at layer 2, counts new flows apart") {
  Fixture f;
  const NftRuleset ruleset = f.install(valid(R"(
services:
  - name: web
    forwarding: dsr
    listen: 198.18.10.20:80
    scheduler: rr
    dsr: {ingress: veth-c.1, egress: br0}
    servers:
      - {name: a, address: 198.18.1.11:80}
      - {name: b, address: 198.18.1.12:80}
  - name: web6
    forwarding: dsr
    protocol: udp
    listen: "[2001:db8:10::20]:53"
    dsr: {ingress: veth-c.1}
    servers: [{name: a, address: "[2001:db8:1::11]:53"}]
)"));
  REQUIRE(ruleset.size() == 1);
  const NftTable& table = ruleset.at("netdev");
  CHECK(table.chains.at("ingress1").hook ==
        "type filter hook ingress device \"veth-c.1\" priority 0; policy accept;");
  CHECK(table.chains.at("ingress1").rules ==
        std::vector<std::string>{"ip daddr . meta l4proto . th dport vmap @services4",
                                 "ip6 daddr . meta l4proto . th dport vmap @services6"});
  CHECK(table.maps.at("services4").elements ==
        std::map<std::string, std::string>{{"198.18.10.20 . tcp . 80", "jump s1"}});
  CHECK(table.maps.at("services6").elements ==
        std::map<std::string, std::string>{{"2001:db8:10::20 . udp . 53", "jump s2"}});
  CHECK(table.maps.at("s1_flows").type ==
        "type ipv4_addr . inet_service : mark; flags dynamic,timeout; timeout 5m; size 262144");
  CHECK(table.maps.at("s2_flows").type ==
        "typeof numgen inc mod 65537 : meta mark; flags dynamic,timeout; timeout 30s; size 262144");
  CHECK(table.chains.at("s1").rules ==
        std::vector<std::string>{
            "meta mark set ip saddr . th sport map @s1_flows meta mark vmap @s1_servers",
            "meta mark set numgen inc mod 2 map @s1_slots meta mark vmap @s1_new"});
  CHECK(table.maps.at("s1_slots").type == "typeof numgen inc mod 65537 : meta mark");
  CHECK(table.maps.at("s1_slots").slots == std::vector<std::string>{"1", "2"});
  CHECK(table.maps.at("s1_new").elements ==
        std::map<std::string, std::string>{{"1", "jump s1_1n"}, {"2", "jump s1_2n"}});
  CHECK(table.maps.at("s1_servers").elements ==
        std::map<std::string, std::string>{{"1", "jump s1_1"},
                                           {"2", "jump s1_2"},
                                           {"2147483649", "jump s1_1c"},
                                           {"2147483650", "jump s1_2c"}});
  const std::string forward_a = "counter name \"bs1_1\" fwd ip to 198.18.1.11 device \"br0\"";
  CHECK(table.chains.at("s1_1").rules ==
        std::vector<std::string>{
            "tcp flags & (fin | rst) != 0 delete @s1_flows { ip saddr . th sport : 1 } "
            "update @s1_flows { ip saddr . th sport timeout 10s : 2147483649 } " +
                forward_a,
            "update @s1_flows { ip saddr . th sport : 1 } " + forward_a,
            "counter name \"fs1\" " + forward_a});
  CHECK(table.chains.at("s1_1c").rules ==
        std::vector<std::string>{
            "tcp flags & (syn | fin | rst) == syn delete @s1_flows { ip saddr . th sport : "
            "2147483649 } update @s1_flows { ip saddr . th sport : 1 } " +
                forward_a,
            "update @s1_flows { ip saddr . th sport timeout 10s : 2147483649 } " + forward_a,
            "counter name \"fs1\" " + forward_a});
  CHECK(table.chains.at("s1_1n").rules ==
        std::vector<std::string>{
            "counter name \"cs1_1\" delete @s1_flows { ip saddr . th sport : 1 } goto s1_1"});
  // UDP: no closing state.
  const std::string key6 = "jhash ip6 saddr . th sport mod 4294967295 seed 0x6d676c76";
  const std::string forward6 =
      "counter name \"bs2_1\" fwd ip6 to 2001:db8:1::11 device \"veth-c.1\"";
  CHECK(table.chains.at("s2_1").rules ==
        std::vector<std::string>{"update @s2_flows { " + key6 + " : 1 } " + forward6,
                                 "counter name \"fs2\" " + forward6});
  CHECK_FALSE(table.chains.contains("s2_1c"));
  CHECK(table.maps.at("s2_servers").elements ==
        std::map<std::string, std::string>{{"1", "jump s2_1"}});

  // Drained: no new flow, its flows stay; down: its flows are scheduled again.
  f.set_state("a", AdminState::drain);
  NftTable now = f.now().at("netdev");
  CHECK(now.maps.at("s1_slots").slots == std::vector<std::string>{"2"});
  CHECK(now.maps.at("s1_servers").elements.contains("1"));
  const auto found = f.control.snapshot()->find("web", "b");
  f.control.report_health(*found.service, *found.server, false, f.t0);
  now = f.now().at("netdev");
  CHECK_FALSE(now.maps.at("s1_servers").elements.contains("2"));
  CHECK_FALSE(now.maps.at("s1_servers").elements.contains("2147483650"));
  CHECK(now.chains.at("s1").rules.back() == "drop");
}

TEST_CASE("kernel rules: dsr's flow memory takes its size and timeout from dsr") {
  Fixture f;
  const auto flows_map = [&](const std::string& dsr) {
    const NftRuleset ruleset =
        f.install(valid("services:\n"
                        "  - name: web\n"
                        "    forwarding: dsr\n"
                        "    listen: 198.18.10.20:80\n"
                        "    dsr: {ingress: eth0, " +
                        dsr +
                        "}\n"
                        "    servers: [{address: 198.18.1.11:80}]\n"));
    const NftTable& table = ruleset.at("netdev");
    return table.maps.at("s1_flows").type + " | " + table.chains.at("s1_1").rules.front();
  };
  CHECK(flows_map("flows: 1000, flow_timeout: 1h") ==
        "type ipv4_addr . inet_service : mark; flags dynamic,timeout; timeout 1h; size 1000 | "
        "tcp flags & (fin | rst) != 0 delete @s1_flows { ip saddr . th sport : 1 } "
        "update @s1_flows { ip saddr . th sport timeout 10s : 2147483649 } "
        "counter name \"bs1_1\" fwd ip to 198.18.1.11 device \"eth0\"");
  // A flow timeout below the closing one shortens that too.
  CHECK(flows_map("flow_timeout: 4s") ==
        "type ipv4_addr . inet_service : mark; flags dynamic,timeout; timeout 4s; size 262144 | "
        "tcp flags & (fin | rst) != 0 delete @s1_flows { ip saddr . th sport : 1 } "
        "update @s1_flows { ip saddr . th sport timeout 4s : 2147483649 } "
        "counter name \"bs1_1\" fwd ip to 198.18.1.11 device \"eth0\"");
}

TEST_CASE("nft transaction: a map declared anew takes its rules out and back in one go") {
  NftRuleset before;
  NftTable& old_table = before["netdev"];
  old_table.maps["s1_flows"].type = "type mark : mark; size 10";
  old_table.maps["s1_flows2"].type = "type mark : mark";
  old_table.chains["s1"] = {"", "", {"meta mark set meta mark map @s1_flows"}};
  old_table.chains["s2"] = {"", "", {"meta mark set meta mark map @s1_flows2"}};
  NftRuleset after = before;
  after["netdev"].maps["s1_flows"].type = "type mark : mark; size 20";
  CHECK(nft_transaction(before, after) ==
        "add table netdev fulcrum\n"
        "flush chain netdev fulcrum s1\n"
        "delete map netdev fulcrum s1_flows\n"
        "add map netdev fulcrum s1_flows { type mark : mark; size 20; }\n"
        "add rule netdev fulcrum s1 meta mark set meta mark map @s1_flows\n");
}

TEST_CASE("kernel plane: servers a reload takes out of nat count no active flow any more") {
  // No kernel service after the reload, none installed: the plane never
  // reaches nftables here.
  ControlPlane control{1};
  SteadyTime t0 = std::chrono::steady_clock::now();
  const auto before = control.install(nat("rr"), t0);
  const ServiceRuntime& web = before->services.at(0);
  web.state->active.store(7);
  for (const ServerRuntime& server : web.servers) server.state->active.store(3);
  const ServiceRuntime& relayed = before->services.at(1);
  relayed.servers.at(0).state->active.store(2);  // a proxy session: not the kernel's

  const auto after = control.install(valid("services:\n"
                                           "  - name: web\n"
                                           "    listen: 127.0.0.1:8081\n"
                                           "    servers:\n"
                                           "      - {name: a, address: 198.18.1.11:8080}\n"
                                           "  - name: relayed\n"
                                           "    listen: 127.0.0.1:8080\n"
                                           "    servers: [{address: 127.0.0.1:9001}]\n"),
                                     t0);
  KernelPlane plane;
  ChangeSet changes{after, before, true, {}};
  for (const ServiceRuntime& service : after->services) changes.services.push_back(&service);
  plane.apply(changes);
  CHECK(plane.error().empty());
  CHECK(web.state->active.load() == 0);
  for (const ServerRuntime& server : web.servers) CHECK(server.state->active.load() == 0);
  CHECK(relayed.servers.at(0).state->active.load() == 2);
}
