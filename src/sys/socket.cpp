#include "fulcrum/socket.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <cerrno>
#include <cstring>

namespace fulcrum {

namespace {

int set_int_option(int fd, int level, int name, int value) {
  return ::setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : errno;
}

// Lets the socket bind to an address that is not this host's (the client's).
int set_transparent(int fd, int family) {
  return family == AF_INET6 ? set_int_option(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
                            : set_int_option(fd, IPPROTO_IP, IP_TRANSPARENT, 1);
}

// A TCP socket bound to `address` with SO_REUSEADDR (and SO_REUSEPORT when
// `reuse_port`), IPV6_V6ONLY for IPv6 (an IPv6 address never takes the
// IPv4 port of the same number), IP_FREEBIND as `binding` says. Returns
// errno.
int bound_socket(const SocketAddress& address, bool reuse_port, Binding binding, Fd& out) {
  Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd) return errno;
  if (int e = set_int_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1)) return e;
  if (reuse_port) {
    if (int e = set_int_option(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1)) return e;
  }
  if (address.family() == AF_INET6) {
    if (int e = set_int_option(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1)) return e;
  }
  if (binding == Binding::freebind) {
    const int e = address.family() == AF_INET6
                      ? set_int_option(fd.get(), IPPROTO_IPV6, IPV6_FREEBIND, 1)
                      : set_int_option(fd.get(), IPPROTO_IP, IP_FREEBIND, 1);
    if (e != 0) return e;
  }
  if (::bind(fd.get(), address.sockaddr_ptr(), address.length) != 0) return errno;
  out = std::move(fd);
  return 0;
}

}  // namespace

int open_listener(const SocketAddress& address, int backlog, PortSharing sharing, Fd& out,
                  Binding binding) {
  Fd fd;
  if (int e = bound_socket(address, sharing == PortSharing::workers, binding, fd)) return e;
  // Inherited by every accepted socket (Linux copies both on accept).
  set_relay_options(fd.get());
  if (::listen(fd.get(), backlog) != 0) return errno;
  out = std::move(fd);
  return 0;
}

int check_address_free(const SocketAddress& address, Binding binding) {
  // SO_REUSEADDR without SO_REUSEPORT: connections of an earlier listener
  // in TIME_WAIT do not count, any listening socket does.
  Fd probe;
  return bound_socket(address, false, binding, probe);
}

int open_connect_socket(int family, ConnectSource source, Fd& out) {
  Fd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd) return errno;
  set_relay_options(fd.get());
  if (source.transparent) {
    if (int e = set_transparent(fd.get(), family)) return e;
  }
  if (source.address != nullptr) {
    if (int e = set_int_option(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)) return e;
    if (::bind(fd.get(), source.address->sockaddr_ptr(), source.address->length) != 0) return errno;
  }
  out = std::move(fd);
  return 0;
}

int start_connect(const SocketAddress& destination, ConnectSource source, Fd& out) {
  Fd fd;
  if (int e = open_connect_socket(destination.family(), source, fd)) return e;
  if (::connect(fd.get(), destination.sockaddr_ptr(), destination.length) != 0 &&
      errno != EINPROGRESS) {
    return errno;
  }
  out = std::move(fd);
  return 0;
}

int set_delayed_ack(int fd) { return set_int_option(fd, IPPROTO_TCP, TCP_QUICKACK, 0); }

int check_transparent_allowed(int family) {
  Fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd) return errno;
  return set_transparent(fd.get(), family);
}

int pending_socket_error(int fd) {
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
  return error;
}

bool is_local_error(int error) {
  switch (error) {
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOBUFS:
    case EADDRNOTAVAIL:
    case EADDRINUSE:
    case ENOSPC:
    case EAGAIN: return true;
    default: return false;
  }
}

void set_relay_options(int fd) {
  set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  set_int_option(fd, SOL_SOCKET, SO_OOBINLINE, 1);
}

void set_linger_reset(int fd) {
  linger option{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, sizeof option);
}

SocketAddress peer_address(int fd) {
  SocketAddress address;
  address.length = sizeof address.storage;
  if (::getpeername(fd, address.sockaddr_ptr(), &address.length) != 0) address = SocketAddress{};
  return address;
}

std::string errno_string(int error) {
  char buffer[128];
  // GNU strerror_r returns the message pointer (maybe not `buffer`).
  return ::strerror_r(error, buffer, sizeof buffer);
}

}  // namespace fulcrum
