// Small socket helpers shared by listeners and sessions. Each returns an
// errno value (0 on success) instead of throwing, so callers on the event
// loop can count, log and carry on.
#pragma once

#include <string>

#include "fulcrum/address.hpp"
#include "fulcrum/fd.hpp"

namespace fulcrum {

// Whether a listening socket shares its port: `workers` sets SO_REUSEPORT,
// so each worker of this process binds one; `exclusive` does not (the stats
// port: one socket, never shared with anyone).
enum class PortSharing { workers, exclusive };

// Whether a listener may bind an address this host does not have (yet):
// `freebind` sets IP_FREEBIND, for VIPs that fulcrum puts on its announce
// interface only while they have a usable server.
enum class Binding { local, freebind };

// A non-blocking listening socket bound to `address` with SO_REUSEADDR,
// SO_REUSEPORT as `sharing` says, IPV6_V6ONLY for IPv6, and the relay
// options, which accepted sockets inherit. Returns errno.
int open_listener(const SocketAddress& address, int backlog, PortSharing sharing, Fd& out,
                  Binding binding = Binding::local);

// 0 when nobody listens on `address`, else EADDRINUSE (or another errno).
// Checked before the workers' SO_REUSEPORT sockets are bound: those would
// join another process's group on the same port (a second fulcrum, under
// the same user) and silently share its clients instead of failing.
int check_address_free(const SocketAddress& address, Binding binding = Binding::local);

// Where a server connection comes from: fulcrum's own address (`address`
// null: the kernel's choice), a fixed snat `source`, or in transparent mode
// the client's own address, which needs IP_TRANSPARENT (CAP_NET_RAW or
// CAP_NET_ADMIN) and routing that brings the server's replies back here
// (docs/transparent.md).
struct ConnectSource {
  const SocketAddress* address = nullptr;
  bool transparent = false;
};

// A non-blocking TCP socket of the destination's family, bound to
// `source.address` (if any) with IP_BIND_ADDRESS_NO_PORT, so the port is
// chosen at connect time per destination and many sessions to one server
// never run out of ports; then starts a connect to `destination`. Returns 0
// when the connect is in progress or done, else errno.
int start_connect(const SocketAddress& destination, ConnectSource source, Fd& out);

// The socket start_connect connects: of `family`, with the relay options,
// bound to `source` as above. Returns errno.
int open_connect_socket(int family, ConnectSource source, Fd& out);

// TCP_QUICKACK off: the ACK that completes a handshake the socket starts
// waits (to go with data) instead of leaving at once. Returns errno.
int set_delayed_ack(int fd);

// Whether this process may use transparent sockets of `family` (AF_INET or
// AF_INET6): tries IP_TRANSPARENT / IPV6_TRANSPARENT on a fresh socket.
// Returns 0 or errno (EPERM without CAP_NET_RAW or CAP_NET_ADMIN).
int check_transparent_allowed(int family);

// SO_ERROR of a socket whose connect finished (0 = connected).
int pending_socket_error(int fd);

// Whether a failed connect (socket, bind, connect, watching the socket, or
// the first send on the new connection) failed for want of fulcrum's own
// resources rather than because of the server: descriptors (EMFILE,
// ENFILE), kernel memory and buffers (ENOMEM, ENOBUFS), source ports
// (EADDRNOTAVAIL, EADDRINUSE, and EAGAIN, which older kernels gave for an
// exhausted port range), room in the worker's epoll set for the new socket
// (ENOSPC: fs.epoll.max_user_watches).
bool is_local_error(int error);

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
