// Socket addresses: parsing of the configuration's address forms and printing
// in the form logs and stats use (IPv4 `a.b.c.d:port`, IPv6 `[v6]:port`).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace fulcrum {

// A resolved IPv4 or IPv6 socket address (value type, trivially copyable).
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  uint16_t port() const;
  // 0.0.0.0 or ::, every local address.
  bool is_wildcard() const;
  // The same address with another port (0: the kernel picks one at connect).
  SocketAddress with_port(uint16_t port) const;
  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* sockaddr_ptr() { return reinterpret_cast<sockaddr*>(&storage); }
  // `1.2.3.4:80` or `[2001:db8::1]:80`; an empty string when unset.
  std::string to_string() const;
  // The address without the port: `1.2.3.4` or `2001:db8::1`.
  std::string host_string() const;
  // Equal family, address bytes and port.
  bool operator==(const SocketAddress& other) const;

  static SocketAddress from_sockaddr(const sockaddr* addr, socklen_t length);
};

// Result of parsing an address: either `addresses` (non-empty) or `error`.
struct AddressParse {
  std::vector<SocketAddress> addresses;
  std::string error;
};

// Parses `IPv4:port`, `[IPv6]:port` or `host:port` (host names resolved with
// getaddrinfo, all results returned in resolver order). The port must be
// 1..65535 unless `allow_zero_port`.
AddressParse parse_address(std::string_view text, bool allow_zero_port = false);

// Host names resolved ahead (host_resolver.hpp: libevent's evdns, which
// never blocks), for parse_address on one thread: while a HostNameTable
// scope is in place there, a host name is looked up in it instead of
// getaddrinfo; one it does not hold is recorded in `missing` and fails.
struct HostNameTable {
  std::map<std::string, AddressParse> answers;  // name -> its addresses (port 0) or error
  std::set<std::string> missing;
  // A first pass that only collects names: each missing one stands for a
  // distinct address of 240.0.0.0/4 (reserved, never real), so that the
  // rest of the file still loads.
  bool placeholders = false;
};
class HostNameScope {
 public:
  explicit HostNameScope(HostNameTable& table);
  ~HostNameScope();
  HostNameScope(const HostNameScope&) = delete;
  HostNameScope& operator=(const HostNameScope&) = delete;

 private:
  HostNameTable* previous_;
};

// Parses a bare IPv4 or IPv6 literal (no port, no brackets, no names) into an
// address with port 0: the form of `source:`.
AddressParse parse_ip_literal(std::string_view text);

}  // namespace fulcrum
