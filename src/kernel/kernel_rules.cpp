#include "fulcrum/kernel_rules.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <numeric>
#include <optional>
#include <vector>

#include "fulcrum/scheduler.hpp"

namespace fulcrum {

namespace {

// A wrr cycle longer than this is scaled down to it: the slots map stays
// the size of a Maglev table at most, and shares move by at most one slot
// in 65536.
constexpr uint64_t kMaxWrrSlots = 65536;

std::string family_of(const ServiceConfig& service) {
  return service.listen.front().family() == AF_INET6 ? "ip6" : "ip";
}

std::string protocol_word(const ServiceConfig& service) {
  return std::string(to_string(service.protocol));
}

// `198.18.1.11:8080` or `[2001:db8::11]:8080`: dnat's form of an address.
std::string dnat_target(const SocketAddress& address) { return address.to_string(); }

std::string hex(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

// The words of an nft statement or rule, joined by spaces.
std::string words(std::initializer_list<std::string> parts) {
  std::string out;
  for (const std::string& part : parts) {
    if (!out.empty()) out += ' ';
    out += part;
  }
  return out;
}

// A server of the group that takes new flows, with the weight it has now
// (0: it takes none).
struct Member {
  std::string chain;
  std::string name;
  uint32_t weight;
};

// The proxy's rule (scheduler.cpp): primaries while any of them is up with
// a weight, else the backups. Weights of servers that are not up are 0.
std::vector<Member> serving_group(const ServiceRuntime& service, KernelNames& names) {
  const auto weight_now = [](const ServerRuntime& server) -> uint32_t {
    return server.state->status() == ServerStatus::up ? server.state->weight() : 0;
  };
  const bool primaries_up =
      std::any_of(service.servers.begin(), service.servers.end(),
                  [&](const ServerRuntime& s) { return !s.config->backup && weight_now(s) > 0; });
  std::vector<Member> group;
  for (const ServerRuntime& server : service.servers) {
    if (server.config->backup == primaries_up) continue;
    group.push_back({names.server(service.config->name, server.config->name), server.config->name,
                     weight_now(server)});
  }
  return group;
}

// Slot -> index into `group`, by the service's scheduler; empty when no
// member takes new flows.
std::vector<uint32_t> slots_of(const ServiceConfig& config, const std::vector<Member>& group) {
  std::vector<uint32_t> weights;
  weights.reserve(group.size());
  for (const Member& member : group) weights.push_back(member.weight);
  const uint64_t total = std::accumulate(weights.begin(), weights.end(), uint64_t{0});
  if (total == 0) return {};
  switch (config.scheduler) {
    case SchedulerKind::maglev: {
      std::vector<std::string> names;
      names.reserve(group.size());
      for (const Member& member : group) names.push_back(member.name);
      return build_maglev_table(names, weights, kMaglevTableSize);
    }
    case SchedulerKind::wrr: {
      if (total > kMaxWrrSlots) {
        for (uint32_t& weight : weights) {
          if (weight > 0)
            weight = static_cast<uint32_t>(std::max<uint64_t>(1, weight * kMaxWrrSlots / total));
        }
      }
      return smooth_wrr_sequence(weights);
    }
    default: {
      // rr: every member that takes flows once, in configuration order.
      std::vector<uint32_t> slots;
      for (uint32_t i = 0; i < group.size(); ++i) {
        if (group[i].weight > 0) slots.push_back(i);
      }
      return slots;
    }
  }
}

// The expression whose value picks the slot.
std::string slot_expression(const ServiceConfig& config, const std::string& family, size_t slots) {
  if (config.scheduler != SchedulerKind::maglev) return "numgen inc mod " + std::to_string(slots);
  std::string key = family == "ip6" ? "ip6 saddr" : "ip saddr";
  if (config.hash_key == HashKey::source_ip_port) key += " . th sport";
  return "jhash " + key + " mod " + std::to_string(kMaglevTableSize) + " seed " +
         hex(kMaglevClientSeed);
}

NftTable& table_for(NftRuleset& ruleset, const std::string& family) {
  const auto [it, created] = ruleset.try_emplace(family);
  NftTable& table = it->second;
  if (created) {
    const std::string address_type = family == "ip6" ? "ipv6_addr" : "ipv4_addr";
    table.maps["services"].type = "type " + address_type + " . inet_proto . inet_service : verdict";
    const std::string lookup = std::string(family == "ip6" ? "ip6" : "ip") +
                               " daddr . meta l4proto . th dport vmap @services";
    table.chains["prerouting"] = {"type nat hook prerouting priority dstnat; policy accept;",
                                  "clients routed through this host",
                                  {lookup}};
    table.chains["output"] = {
        "type nat hook output priority -100; policy accept;", "clients on this host", {lookup}};
    // Bytes and packets of fulcrum's flows, per server and direction: the
    // nat hooks see a flow's first packet only, these filter hooks all of
    // them (routed: forward; clients on this host: output and input).
    table.maps["traffic_in"].type = "type mark : counter";
    table.maps["traffic_out"].type = "type mark : counter";
    table.chains["traffic"] = {"",
                               "bytes of fulcrum's flows",
                               {"ct direction original counter name ct mark map @traffic_in",
                                "ct direction reply counter name ct mark map @traffic_out"}};
    const std::string to_traffic =
        "ct mark and " + hex(kFlowMarkMask) + " == " + hex(kFlowMarkTag) + " jump traffic";
    for (const char* hook : {"forward", "input", "output"}) {
      table.chains[std::string("traffic_") + hook] = {
          std::string("type filter hook ") + hook + " priority filter; policy accept;",
          "",
          {to_traffic}};
    }
  }
  return table;
}

// The service's chain: its scheduler picks a slot, the slot holds the mark
// of a server (`mark_of`), written into `mark` (`ct mark`: the flow's
// conntrack entry; `meta mark`: the packet), and map `to_server` jumps by
// that mark to the server's chain. The slots are data, not verdicts: the
// kernel validates every jump of a verdict map at each transaction, and a
// Maglev table of 65537 jumps made each health change cost it 20 ms.
// No server taking new flows: they are dropped (a nat chain cannot reject),
// and the client's connect times out as with a dead server.
void add_dispatch(NftTable& table, const ServiceRuntime& service, const std::string& chain,
                  const std::string& family, KernelNames& names, const std::string& mark,
                  const std::function<std::string(const Member&)>& mark_of,
                  const std::string& to_server) {
  const ServiceConfig& config = *service.config;
  const std::vector<Member> group = serving_group(service, names);
  const std::vector<uint32_t> slots = slots_of(config, group);
  NftChain& dispatch = table.chains[chain];
  dispatch.comment = "service " + config.name;
  if (slots.empty()) {
    dispatch.rules.emplace_back("drop");
    return;
  }
  const std::string map = chain + "_slots";
  NftMap& slot_map = table.maps[map];
  slot_map.type = "typeof numgen inc mod " + std::to_string(kMaglevTableSize) + " : " + mark;
  std::vector<std::string> marks;
  marks.reserve(group.size());
  for (const Member& member : group) marks.push_back(mark_of(member));
  slot_map.slots.reserve(slots.size());
  for (const uint32_t member : slots) slot_map.slots.push_back(marks[member]);
  std::string rule = mark + " set " + slot_expression(config, family, slots.size());
  rule += " map @" + map;
  rule += " " + mark + " vmap @" + to_server;
  dispatch.rules.push_back(std::move(rule));
}

void add_service(NftRuleset& ruleset, const ServiceRuntime& service, KernelNames& names) {
  const ServiceConfig& config = *service.config;
  const std::string family = family_of(config);
  const std::string protocol = protocol_word(config);
  NftTable& table = table_for(ruleset, family);
  const std::string chain = names.service(config.name);

  for (const SocketAddress& vip : config.listen) {
    table.maps["services"]
        .elements[vip.host_string() + " . " + protocol + " . " + std::to_string(vip.port())] =
        "jump " + chain;
  }
  const std::string to_server = chain + "_servers";
  table.maps[to_server].type = "type mark : verdict";
  // Every server has its chain and counter while it is configured, in a
  // state that takes flows or not: its counter keeps counting across
  // changes, and nothing is created when it comes back.
  for (const ServerRuntime& server : service.servers) {
    const std::string server_chain = names.server(config.name, server.config->name);
    const std::string counter = "c" + server_chain;
    const std::string mark = hex(names.flow_mark(config.name, server.config->name));
    table.counters.insert(counter);
    table.counters.insert("i" + server_chain);
    table.counters.insert("o" + server_chain);
    table.maps["traffic_in"].elements[mark] = "\"i" + server_chain + '"';
    table.maps["traffic_out"].elements[mark] = "\"o" + server_chain + '"';
    table.maps[to_server].elements[mark] = "jump " + server_chain;
    std::string rule = "meta l4proto " + protocol;
    rule += " counter name \"" + counter + "\" dnat to ";
    rule += dnat_target(server.config->address);
    table.chains[server_chain] = {"", "server " + config.name + "/" + server.config->name, {rule}};
  }

  add_dispatch(
      table, service, chain, family, names, "ct mark",
      [&](const Member& member) { return hex(names.flow_mark(config.name, member.name)); },
      to_server);
  if (config.forwarding == Forwarding::fullnat) {
    NftChain& post = table.chains["postrouting"];
    post.hook = "type nat hook postrouting priority srcnat; policy accept;";
    post.comment = "fullnat: servers see this host's address";
    const std::string ct_daddr =
        family == "ip6" ? "ct original ip6 daddr " : "ct original ip daddr ";
    const std::string action =
        config.source ? "snat to " + config.source->host_string() : std::string("masquerade");
    for (const SocketAddress& vip : config.listen) {
      std::string rule = "meta l4proto " + protocol + " ";
      rule += ct_daddr + vip.host_string();
      rule += " ct original proto-dst " + std::to_string(vip.port());
      rule += " " + action;
      post.rules.push_back(std::move(rule));
    }
  }
}

// dsr, in table `netdev fulcrum`: an ingress chain on each dsr.ingress
// device looks the packet up by VIP; the service's chain first follows the
// flow memory (client address and port -> the server it went to, while that
// server is not down), else schedules, like Katran's connection table in
// front of its Maglev ring. A server's chain records the flow (refreshing
// its timeout) and forwards the unchanged packet at layer 2 to the server
// on dsr.egress; its chain of new flows counts them first.
//
// A TCP flow's FIN or RST rewrites its entry to the server's closing mark
// with a short timeout, and its later packets keep that one (the last ACKs
// after a FIN would otherwise renew the long timeout): closed flows leave
// the memory in seconds instead of minutes. When the memory is full, the
// `update` fails and ends its rule; the next rule forwards the packet all
// the same, counting it in the service's counter `fS`.
void add_dsr_service(NftRuleset& ruleset, const ServiceRuntime& service, KernelNames& names) {
  const ServiceConfig& config = *service.config;
  const DsrConfig& dsr = *config.dsr;
  const bool v6 = config.listen.front().family() == AF_INET6;
  const bool tcp = config.protocol == Protocol::tcp;
  const std::string ip = v6 ? "ip6" : "ip";
  const std::string protocol = protocol_word(config);
  NftTable& table = ruleset["netdev"];
  const std::string ingress = names.device(dsr.ingress);
  if (!table.chains.contains(ingress)) {
    table.chains[ingress] = {
        "type filter hook ingress device \"" + dsr.ingress + "\" priority 0; policy accept;",
        "dsr: clients' packets arriving on " + dsr.ingress,
        {"ip daddr . meta l4proto . th dport vmap @services4",
         "ip6 daddr . meta l4proto . th dport vmap @services6"}};
    table.maps["services4"].type = "type ipv4_addr . inet_proto . inet_service : verdict";
    table.maps["services6"].type = "type ipv6_addr . inet_proto . inet_service : verdict";
  }
  const std::string chain = names.service(config.name);
  for (const SocketAddress& vip : config.listen) {
    table.maps[v6 ? "services6" : "services4"]
        .elements[vip.host_string() + " . " + protocol + " . " + std::to_string(vip.port())] =
        "jump " + chain;
  }
  const std::string flows = chain + "_flows";
  const std::string by_mark = chain + "_servers";
  // A flow is its client's address and port. IPv6: a 32-bit jhash of
  // them, as nft 1.0.6 aborts (netlink_linearize.c, a register assertion)
  // on an update keyed by a 16-byte address and a port; two flows that
  // collide share a server (docs/forwarding.md).
  const std::string flow_key =
      v6 ? "jhash ip6 saddr . th sport mod 4294967295 seed " + hex(kMaglevClientSeed)
         : std::string("ip saddr . th sport");
  const Duration timeout = dsr_flow_timeout(config);
  const Duration closing_timeout = std::min(timeout, Duration(kDsrClosingTimeout));
  table.maps[flows].type = std::string(v6 ? "typeof numgen inc mod 65537 : meta mark"
                                          : "type ipv4_addr . inet_service : mark") +
                           "; flags dynamic,timeout; timeout " + format_duration(timeout) +
                           "; size " + std::to_string(dsr.flows);
  table.maps[by_mark].type = "type mark : verdict";
  const std::string new_flows = chain + "_new";
  table.maps[new_flows].type = "type mark : verdict";
  const std::string full = "f" + chain;
  table.counters.insert(full);
  // `update @flows { KEY [timeout T] : MARK }`, `delete @flows { KEY : MARK }`.
  const auto remember = [&](const std::string& verb, const std::string& mark,
                            std::optional<Duration> short_timeout) {
    std::string text = verb + " @" + flows + " { " + flow_key;
    if (short_timeout) text += " timeout " + format_duration(*short_timeout);
    return text + " : " + mark + " }";
  };
  for (const ServerRuntime& server : service.servers) {
    const std::string server_chain = names.server(config.name, server.config->name);
    const unsigned number = names.server_number(config.name, server.config->name);
    const std::string mark = std::to_string(number);
    const std::string closing = std::to_string(number | kDsrClosingMark);
    const std::string bytes = "b" + server_chain;
    table.counters.insert("c" + server_chain);
    table.counters.insert(bytes);
    std::string forward = "counter name \"" + bytes;
    forward += "\" fwd " + ip;
    forward += " to " + server.config->address.host_string();
    forward += " device \"" + dsr.egress;
    forward += '"';
    const std::string label = config.name + "/" + server.config->name;
    const std::string when_full = words({"counter name \"" + full + '"', forward});
    NftChain& open = table.chains[server_chain];
    open = {"", "server " + label, {}};
    if (tcp) {
      open.rules.push_back(words({"tcp flags & (fin | rst) != 0", remember("delete", mark, {}),
                                  remember("update", closing, closing_timeout), forward}));
    }
    open.rules.push_back(words({remember("update", mark, {}), forward}));
    open.rules.push_back(when_full);
    // A new flow replaces whatever the memory holds for its key: the entry
    // of a server now down, which `update` alone would keep.
    table.chains[server_chain + "n"] = {
        "",
        "new flows of " + label,
        {words({"counter name \"c" + server_chain + '"', remember("delete", mark, {}),
                "goto " + server_chain})}};
    table.maps[new_flows].elements[mark] = "jump " + server_chain + "n";
    if (tcp) {
      // A closing flow's packets keep the short timeout; a SYN on its key
      // is a new connection to the same server and is remembered as open.
      table.chains[server_chain + "c"] = {
          "",
          "closing flows of " + label,
          {words({"tcp flags & (syn | fin | rst) == syn", remember("delete", closing, {}),
                  remember("update", mark, {}), forward}),
           words({remember("update", closing, closing_timeout), forward}), when_full}};
    }
    // A flow stays with its server while that server is not down: drained
    // and in maintenance, it keeps its flows.
    if (server.state->status() != ServerStatus::down) {
      table.maps[by_mark].elements[mark] = "jump " + server_chain;
      if (tcp) table.maps[by_mark].elements[closing] = "jump " + server_chain + "c";
    }
  }
  table.chains[chain].rules.push_back("meta mark set " + flow_key + " map @" + flows +
                                      " meta mark vmap @" + by_mark);
  add_dispatch(
      table, service, chain, ip, names, "meta mark",
      [&](const Member& member) {
        return std::to_string(names.server_number(config.name, member.name));
      },
      new_flows);
}

}  // namespace

Duration dsr_flow_timeout(const ServiceConfig& service) {
  if (service.dsr && service.dsr->flow_timeout) return *service.dsr->flow_timeout;
  return service.protocol == Protocol::udp ? Duration(std::chrono::seconds(30))
                                           : Duration(std::chrono::seconds(300));
}

std::string KernelNames::device(const std::string& device) {
  const auto [it, added] = devices_.try_emplace(device, devices_.size() + 1);
  return "ingress" + std::to_string(it->second);
}

unsigned KernelNames::server_number(const std::string& service, const std::string& server) {
  this->server(service, server);
  return servers_.at({service, server});
}

uint32_t KernelNames::flow_mark(const std::string& service, const std::string& server) {
  const auto [it, added] =
      flow_marks_.try_emplace({service, server}, kFlowMarkTag | (flow_marks_.size() + 1));
  return it->second;
}

std::string KernelNames::service(const std::string& service) {
  const auto [it, added] = services_.try_emplace(service, services_.size() + 1);
  return "s" + std::to_string(it->second);
}

std::string KernelNames::server(const std::string& service, const std::string& server) {
  const std::string owner = this->service(service);
  const auto [it, added] = servers_.try_emplace({service, server}, 0);
  if (added) it->second = ++next_server_[service];
  return owner + "_" + std::to_string(it->second);
}

NftRuleset kernel_ruleset(const Snapshot& snapshot, KernelNames& names) {
  NftRuleset ruleset;
  for (const ServiceRuntime& service : snapshot.services) {
    const Forwarding forwarding = service.config->forwarding;
    if (forwarding == Forwarding::nat || forwarding == Forwarding::fullnat)
      add_service(ruleset, service, names);
    else if (forwarding == Forwarding::dsr)
      add_dsr_service(ruleset, service, names);
  }
  return ruleset;
}

}  // namespace fulcrum
