// `on_server_down: close` for nat and fullnat: the kernel's connection
// tracking holds each flow's address rewrite, so "closing" a flow means
// forgetting its conntrack entry. Its next packet is then a new flow to the
// nat chain, which sends it to a server that is up, and that server, which
// knows no such connection, resets it (TCP); a UDP flow simply moves.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/config.hpp"

namespace fulcrum {

// Deletes the conntrack entries of `protocol` flows that clients opened to
// one of `vips` and that were rewritten to `server` (its reply source), but
// TCP connections already closed (TIME_WAIT, CLOSE).
// Returns how many were deleted, or nullopt when conntrack could not be
// asked (no CAP_NET_ADMIN, no nf_conntrack).
std::optional<uint64_t> forget_flows(const std::vector<SocketAddress>& vips,
                                     const SocketAddress& server, Protocol protocol);

}  // namespace fulcrum
