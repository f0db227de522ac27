// The kernel's connection tracking of nat and fullnat flows. Each flow's
// conntrack entry carries its server's flow mark (kernel_rules.hpp), so the
// kernel itself hands fulcrum only its own flows, and by server:
// - counting them gives each server's active flows (SPEC.md: sessions.active
//   of kernel modes);
// - `on_server_down: close` forgets them: conntrack holds each flow's
//   address rewrite, so "closing" a flow means deleting its entry. Its next
//   packet is then a new flow to the nat chain, which sends it to a server
//   that is up, and that server, which knows no such connection, resets it
//   (TCP); a UDP flow simply moves.
// TCP connections already closed (TIME_WAIT, CLOSE) are remembered for a
// while by conntrack but are neither active nor anything to close: both
// leave them out.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

namespace fulcrum {

struct FlowCounts {
  std::map<uint32_t, uint64_t> by_mark;  // flow mark -> flows
  std::string error;                     // why conntrack could not be asked; empty: it was
};

// fulcrum's active flows (both address families), by flow mark.
FlowCounts count_flows();

// Deletes the active flows whose mark is one of `marks`; how many per mark.
FlowCounts forget_flows(const std::set<uint32_t>& marks);

// How full this network namespace's conntrack table is: every entry counts,
// fulcrum's or not, TIME_WAIT included. When it is full the kernel drops
// new flows it cannot make room for. Nothing when the kernel does not say
// (no nf_conntrack loaded).
struct ConntrackFill {
  uint64_t entries = 0;
  uint64_t max = 0;  // net.netfilter.nf_conntrack_max
};
std::optional<ConntrackFill> conntrack_fill();

}  // namespace fulcrum
