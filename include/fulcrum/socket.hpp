// Small socket helpers shared by listeners and sessions. Each returns an
// errno value (0 on success) instead of throwing, so callers on the event
// loop can count, log and carry on.
#pragma once

#include <string>

#include "fulcrum/address.hpp"
#include "fulcrum/fd.hpp"

namespace fulcrum {

// A non-blocking listening socket bound to `address` with SO_REUSEADDR and
// SO_REUSEPORT (one per worker), IPV6_V6ONLY for IPv6. Returns errno.
int open_listener(const SocketAddress& address, int backlog, Fd& out);

// A non-blocking TCP socket of `family`. When `source` is given it is bound to
// that address with IP_BIND_ADDRESS_NO_PORT, so the port is chosen at connect
// time per destination and many sessions to one server never run out of
// ports. Then starts a connect to `destination`. Returns 0 when the connect is
// in progress or done, else errno.
int start_connect(const SocketAddress& destination, const SocketAddress* source, Fd& out);

// SO_ERROR of a socket whose connect finished (0 = connected).
int pending_socket_error(int fd);

// Options of every relayed socket: TCP_NODELAY (no Nagle delay on small
// writes) and SO_OOBINLINE (an urgent byte stays in the stream, where the
// relay can pass it on instead of dropping it).
void set_relay_options(int fd);

// Makes the next close() send a RST instead of a FIN (SO_LINGER {1, 0}).
void set_linger_reset(int fd);

// The peer or local address of a connected socket.
SocketAddress peer_address(int fd);

std::string errno_string(int error);

}  // namespace fulcrum
