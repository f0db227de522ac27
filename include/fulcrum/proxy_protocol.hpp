// The PROXY protocol (HAProxy's proxy-protocol.txt), versions 1 and 2: the
// header fulcrum sends a server before any client byte, so the server learns
// the client's address and port and the address the client connected to.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "fulcrum/address.hpp"

namespace fulcrum {

// `PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n` (TCP6 for IPv6). A header has
// one family for both addresses, and a client address taken from an incoming
// PROXY header may differ in family from fulcrum's own `local`: then both
// are written as IPv6, the IPv4 one mapped (::ffff:1.2.3.4), as HAProxy does.
std::string encode_proxy_v1(const SocketAddress& client, const SocketAddress& local);

// The binary header: signature, version 2 / PROXY command, TCP over IPv4 or
// IPv6 (mixed families as for v1), then the addresses and ports in network
// byte order.
std::string encode_proxy_v2(const SocketAddress& client, const SocketAddress& local);

}  // namespace fulcrum

namespace fulcrum {

// Reading a PROXY header (v1 or v2) that a client sends first.
struct ProxyHeader {
  enum class Status { incomplete, invalid, ok };
  Status status = Status::incomplete;
  size_t size = 0;                      // header bytes, when ok
  std::optional<SocketAddress> source;  // the original client; none for LOCAL / UNKNOWN
  std::string reason;                   // why invalid
};

// The largest header accepted: v2's 16 bytes plus 512 bytes of addresses
// and TLVs (v1 lines are at most 107 bytes).
constexpr size_t kMaxProxyHeader = 16 + 512;

// Parses the start of a client's stream. `incomplete` when more bytes are
// needed (and could still make a valid header).
ProxyHeader parse_proxy_header(std::string_view data);

}  // namespace fulcrum
