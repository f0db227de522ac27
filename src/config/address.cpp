// Socket addresses: the configuration's `IPv4:port`, `[IPv6]:port` and
// `host:port` forms, and their printed form.
#include "fulcrum/address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>

#include "fulcrum/quote.hpp"

namespace fulcrum {
namespace {

const sockaddr_in& ipv4(const SocketAddress& a) {
  return *reinterpret_cast<const sockaddr_in*>(&a.storage);
}

const sockaddr_in6& ipv6(const SocketAddress& a) {
  return *reinterpret_cast<const sockaddr_in6*>(&a.storage);
}

void set_port(SocketAddress& a, uint16_t port) {
  if (a.family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(port);
  } else if (a.family() == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(port);
  }
}

AddressParse failure(std::string message) { return AddressParse{{}, std::move(message)}; }

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Only digits and dots: meant as an IPv4 literal, never as a host name
// (getaddrinfo would take `127.1` or `127.0.0.010` in inet_aton's loose forms).
bool looks_like_ipv4(std::string_view host) {
  return std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; });
}

bool is_host_name(std::string_view host) {
  return std::all_of(host.begin(), host.end(), [](char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '-' || c == '_';
  });
}

// inet_pton and getaddrinfo read C strings: a NUL inside `host` would cut it
// short, and `127.0.0.1\0junk` (a YAML "\0" escape) would pass as 127.0.0.1.
bool has_nul(std::string_view host) { return host.find('\0') != std::string_view::npos; }

bool is_ipv4_literal(std::string_view host) {
  in_addr unused{};
  return !has_nul(host) && inet_pton(AF_INET, std::string(host).c_str(), &unused) == 1;
}

// `text` as a port number, or nullopt.
std::optional<uint16_t> parse_port(std::string_view text, bool allow_zero) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), is_digit)) return std::nullopt;
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (ec != std::errc{} || end != text.data() + text.size() || port > 65535) return std::nullopt;
  if (port == 0 && !allow_zero) return std::nullopt;
  return static_cast<uint16_t>(port);
}

struct AddrinfoDeleter {
  void operator()(addrinfo* list) const { freeaddrinfo(list); }
};

// Every TCP address getaddrinfo gives for `host`, in resolver order, without
// repeats; port 0. `numeric` accepts literals only (no resolver query).
AddressParse resolve(const std::string& host, int family, bool numeric) {
  if (has_nul(host)) return failure("cannot resolve host " + quote(host) + ": NUL in the name");
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags =
      numeric ? AI_NUMERICHOST : 0;  // no AI_ADDRCONFIG: loopback-only hosts resolve too
  addrinfo* raw = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &raw);
  const std::unique_ptr<addrinfo, AddrinfoDeleter> list(raw);
  if (rc != 0) {
    const char* reason = rc == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(rc);
    return failure("cannot resolve host " + quote(host) + ": " + reason);
  }
  AddressParse result;
  for (const addrinfo* ai = list.get(); ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    const SocketAddress address = SocketAddress::from_sockaddr(ai->ai_addr, ai->ai_addrlen);
    if (std::find(result.addresses.begin(), result.addresses.end(), address) ==
        result.addresses.end()) {
      result.addresses.push_back(address);
    }
  }
  if (result.addresses.empty()) {
    return failure("cannot resolve host " + quote(host) + ": no IPv4 or IPv6 address");
  }
  return result;
}

thread_local HostNameTable* t_host_names = nullptr;

// A host name: from the thread's table when it has one, else getaddrinfo.
AddressParse resolve_name(const std::string& host) {
  if (t_host_names == nullptr) return resolve(host, AF_UNSPEC, false);
  const auto found = t_host_names->answers.find(host);
  if (found != t_host_names->answers.end()) return found->second;
  t_host_names->missing.insert(host);
  if (t_host_names->placeholders) {
    uint32_t hash = 2166136261U;  // FNV-1a: the same name, the same placeholder
    for (const char c : host) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619U;
    sockaddr_in placeholder{};
    placeholder.sin_family = AF_INET;
    placeholder.sin_addr.s_addr = htonl(0xf0000000U | (hash & 0x0fffffffU));
    AddressParse result;
    result.addresses.push_back(SocketAddress::from_sockaddr(
        reinterpret_cast<const sockaddr*>(&placeholder), sizeof placeholder));
    return result;
  }
  return failure("cannot resolve host " + quote(host) + ": not resolved");
}

// An IPv6 literal as written inside brackets (a `%zone` suffix allowed).
AddressParse parse_ipv6_literal(std::string_view host) {
  AddressParse result = resolve(std::string(host), AF_INET6, true);
  if (!result.error.empty()) return failure("invalid IPv6 address " + quote(host));
  return result;
}

// `text` without brackets and with more than one colon: an IPv6 address
// written without the brackets the port needs.
AddressParse unbracketed_ipv6(std::string_view text) {
  const std::size_t colon = text.rfind(':');
  const std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (parse_port(port, true) && parse_ipv6_literal(host).error.empty()) {
    return failure("IPv6 address must be in brackets: [" + std::string(host) +
                   "]:" + std::string(port));
  }
  if (parse_ipv6_literal(text).error.empty()) {
    return failure("IPv6 address must be in brackets and have a port: [" + std::string(text) +
                   "]:PORT");
  }
  return failure("invalid address " + quote(text) + ", expected HOST:PORT or [IPv6]:PORT");
}

}  // namespace

uint16_t SocketAddress::port() const {
  switch (family()) {
    case AF_INET: return ntohs(ipv4(*this).sin_port);
    case AF_INET6: return ntohs(ipv6(*this).sin6_port);
    default: return 0;
  }
}

bool SocketAddress::is_wildcard() const {
  switch (family()) {
    case AF_INET: return ipv4(*this).sin_addr.s_addr == htonl(INADDR_ANY);
    case AF_INET6: return IN6_IS_ADDR_UNSPECIFIED(&ipv6(*this).sin6_addr);
    default: return false;
  }
}

SocketAddress SocketAddress::with_port(uint16_t port) const {
  SocketAddress copy = *this;
  set_port(copy, port);
  return copy;
}

std::string SocketAddress::host_string() const {
  if (family() != AF_INET && family() != AF_INET6) return {};
  char host[NI_MAXHOST];
  if (getnameinfo(sockaddr_ptr(), length, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) {
    return {};
  }
  return host;
}

std::string SocketAddress::to_string() const {
  const std::string host = host_string();
  if (host.empty()) return {};
  const std::string port_text = std::to_string(port());
  return family() == AF_INET6 ? "[" + host + "]:" + port_text : host + ":" + port_text;
}

bool SocketAddress::operator==(const SocketAddress& other) const {
  if (family() != other.family()) return false;
  switch (family()) {
    case AF_INET:
      return ipv4(*this).sin_addr.s_addr == ipv4(other).sin_addr.s_addr &&
             ipv4(*this).sin_port == ipv4(other).sin_port;
    case AF_INET6:
      return std::memcmp(&ipv6(*this).sin6_addr, &ipv6(other).sin6_addr, sizeof(in6_addr)) == 0 &&
             ipv6(*this).sin6_port == ipv6(other).sin6_port &&
             ipv6(*this).sin6_scope_id == ipv6(other).sin6_scope_id;
    default: return length == other.length && std::memcmp(&storage, &other.storage, length) == 0;
  }
}

SocketAddress SocketAddress::from_sockaddr(const sockaddr* addr, socklen_t length) {
  SocketAddress result;
  if (!addr) return result;
  result.length = std::min<socklen_t>(length, sizeof result.storage);
  std::memcpy(&result.storage, addr, result.length);
  return result;
}

AddressParse parse_address(std::string_view text, bool allow_zero_port) {
  if (text.empty()) return failure("empty address, expected HOST:PORT");

  std::string_view host;
  std::string_view port;
  const bool bracketed = text.front() == '[';
  if (bracketed) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return failure("missing \"]\" in " + quote(text));
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty())
      return failure("missing port in " + quote(text) + ", expected [ADDRESS]:PORT");
    if (rest.front() != ':')
      return failure("expected \":\" and a port after \"]\" in " + quote(text));
    port = rest.substr(1);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return failure("missing port in " + quote(text) + ", expected HOST:PORT");
    }
    if (text.find(':') != colon) return unbracketed_ipv6(text);
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }

  if (host.empty()) return failure("missing host in " + quote(text));
  if (port.empty()) return failure("missing port in " + quote(text));
  const std::optional<uint16_t> port_number = parse_port(port, allow_zero_port);
  if (!port_number) {
    return failure("invalid port " + quote(port) + ", expected " + (allow_zero_port ? "0" : "1") +
                   " to 65535");
  }

  AddressParse result;
  if (bracketed) {
    result = parse_ipv6_literal(host);
  } else if (looks_like_ipv4(host)) {
    if (!is_ipv4_literal(host)) return failure("invalid IPv4 address " + quote(host));
    result = resolve(std::string(host), AF_INET, true);
  } else if (is_host_name(host)) {
    result = resolve_name(std::string(host));
  } else {
    return failure("invalid host name " + quote(host));
  }
  for (SocketAddress& address : result.addresses) set_port(address, *port_number);
  return result;
}

HostNameScope::HostNameScope(HostNameTable& table) : previous_(t_host_names) {
  t_host_names = &table;
}

HostNameScope::~HostNameScope() { t_host_names = previous_; }

AddressParse parse_ip_literal(std::string_view text) {
  if (text.empty()) return failure("empty IP address");
  if (text.front() == '[')
    return failure("invalid IP address " + quote(text) + ", write it without brackets");
  if (text.find(':') != std::string_view::npos) {
    AddressParse result = parse_ipv6_literal(text);
    if (!result.error.empty()) return failure("invalid IP address " + quote(text));
    return result;
  }
  if (!is_ipv4_literal(text)) return failure("invalid IP address " + quote(text));
  return resolve(std::string(text), AF_INET, true);
}

}  // namespace fulcrum
