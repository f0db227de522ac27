// The kernel data plane's translation of a snapshot (DESIGN.md "Control
// plane and data planes"): the nftables objects that forward the services
// of `forwarding: nat` and `fullnat` with the servers' state in force now.
// Pure: the same snapshot and state give the same objects; it never keeps
// its own idea of a server's state.
//
// Per family (`ip`, `ip6`), in table `fulcrum`:
//   map services       VIP . protocol . port -> jump to the service's chain
//   chain prerouting   nat hook (routed clients), looks the packet up there
//   chain output       nat hook (clients on this host), the same
//   chain postrouting  nat hook, fullnat only: source NAT of the service's flows
//   chain sN           the service's scheduler: numgen (rr, wrr) or jhash
//                      (maglev) picks a slot of map sN_slots, which holds a
//                      server's flow mark; it is set on the flow (ct mark)
//                      and map sN_servers jumps by it to the server's chain;
//                      or drop with no server
//   chain sN_K         one per server: its counter of new flows, then dnat
//   maps traffic_in, traffic_out   flow mark -> the server's byte and
//                      packet counter per direction, counted by chain
//                      traffic from filter chains on forward, input, output
// and for `dsr`, in table `netdev fulcrum`, see add_dsr_service.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "fulcrum/nft_ruleset.hpp"
#include "fulcrum/snapshot.hpp"

namespace fulcrum {

// Short identifiers for nft objects, stable for the life of the process
// (a service keeps `s3`, its server `s3_2`, across reloads and state
// changes, so the diff touches only what changed). Names are given in order
// of first use.
class KernelNames {
 public:
  std::string service(const std::string& service);
  std::string server(const std::string& service, const std::string& server);
  // The number in the server's name (`2` of `s3_2`): its mark in dsr's
  // flow memory.
  unsigned server_number(const std::string& service, const std::string& server);
  // The conntrack mark of the server's nat and fullnat flows: kFlowMarkTag
  // and a number unique in the process.
  uint32_t flow_mark(const std::string& service, const std::string& server);
  // A dsr ingress device's chain (`ingress1`): device names are not all
  // valid nft identifiers.
  std::string device(const std::string& device);

 private:
  std::map<std::string, unsigned> services_;
  std::map<std::string, unsigned> devices_;
  std::map<std::pair<std::string, std::string>, unsigned> servers_;
  std::map<std::string, unsigned> next_server_;
  std::map<std::pair<std::string, std::string>, uint32_t> flow_marks_;
};

// fulcrum marks the conntrack entry of each nat and fullnat flow with its
// server (ct mark, the whole 32 bits): the top byte is this tag, the rest
// the server's number. Counters per direction and the count of active flows
// find a server's flows by it, and `on_server_down: close` forgets them by it.
inline constexpr uint32_t kFlowMarkTag = 0x66000000;
inline constexpr uint32_t kFlowMarkMask = 0xff000000;

// dsr's flow memory (DsrConfig: its size and timeout): a TCP flow that
// sent a FIN or RST is remembered this long after its last packet, under
// its server's number with this bit set.
inline constexpr std::chrono::seconds kDsrClosingTimeout{10};
inline constexpr uint32_t kDsrClosingMark = 0x80000000;

// How long a dsr service remembers a flow after its last packet:
// dsr.flow_timeout, else 300 s for TCP and 30 s for UDP (a UDP client
// often uses a new port for each request).
Duration dsr_flow_timeout(const ServiceConfig& service);

// The objects for every service of `snapshot` forwarded in the kernel,
// with each server's status and weight as they are now.
NftRuleset kernel_ruleset(const Snapshot& snapshot, KernelNames& names);

}  // namespace fulcrum
