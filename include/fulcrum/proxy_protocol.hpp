// The PROXY protocol (HAProxy's proxy-protocol.txt), versions 1 and 2: the
// header fulcrum sends a server before any client byte, so the server learns
// the client's address and port and the address the client connected to.
#pragma once

#include <string>

#include "fulcrum/address.hpp"

namespace fulcrum {

// `PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n` (TCP6 for IPv6). `client` and
// `local` must be of one family.
std::string encode_proxy_v1(const SocketAddress& client, const SocketAddress& local);

// The binary header: signature, version 2 / PROXY command, TCP over IPv4 or
// IPv6, then the addresses and ports in network byte order.
std::string encode_proxy_v2(const SocketAddress& client, const SocketAddress& local);

}  // namespace fulcrum
