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
//                      (maglev) into map sN_slots, or drop with no server
//   chain sN_K         one per server: its counter of new flows, then dnat
#pragma once

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

 private:
  std::map<std::string, unsigned> services_;
  std::map<std::pair<std::string, std::string>, unsigned> servers_;
  std::map<std::string, unsigned> next_server_;
};

// The objects for every service of `snapshot` forwarded in the kernel by
// nat or fullnat, with each server's status and weight as they are now.
NftRuleset kernel_ruleset(const Snapshot& snapshot, KernelNames& names);

}  // namespace fulcrum
