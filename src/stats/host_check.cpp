// Who may address the stats endpoint: the Host check against DNS rebinding
// and the loopback test behind the start-up warning.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <optional>
#include <string>

#include "fulcrum/stats.hpp"

namespace fulcrum {

namespace {

constexpr uint16_t kDefaultHttpPort = 80;

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Digits only (no sign, no space), 1..65535.
std::optional<uint16_t> parse_port(std::string_view text) {
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  unsigned value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535)
    return std::nullopt;
  return static_cast<uint16_t>(value);
}

// Whether the IP literal `name` (IPv4 dotted quad, or IPv6 from inside the
// brackets) is `local`'s address, compared as bytes so that any spelling
// of it matches.
bool is_address_of(std::string_view name, bool bracketed, const SocketAddress& local) {
  const std::string text(name);
  if (local.family() == AF_INET && !bracketed) {
    in_addr address{};
    return inet_pton(AF_INET, text.c_str(), &address) == 1 &&
           address.s_addr ==
               reinterpret_cast<const sockaddr_in*>(local.sockaddr_ptr())->sin_addr.s_addr;
  }
  if (local.family() == AF_INET6 && bracketed) {
    in6_addr address{};
    return inet_pton(AF_INET6, text.c_str(), &address) == 1 &&
           std::memcmp(&address,
                       &reinterpret_cast<const sockaddr_in6*>(local.sockaddr_ptr())->sin6_addr,
                       sizeof address) == 0;
  }
  return false;
}

}  // namespace

bool host_allowed(std::string_view host, const SocketAddress& local) {
  std::string_view name = host;
  std::string_view port_text;
  const bool bracketed = host.starts_with('[');
  if (bracketed) {
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    name = host.substr(1, close - 1);
    const std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return false;
    port_text = rest.empty() ? rest : rest.substr(1);
  } else if (const size_t colon = host.find(':'); colon != std::string_view::npos) {
    name = host.substr(0, colon);
    port_text = host.substr(colon + 1);
  }
  if (port_text.empty() && host.ends_with(':')) return false;
  const bool localhost = !bracketed && equal_ignoring_case(name, "localhost");
  if (localhost && port_text.empty()) return true;
  // Without a port the client means HTTP's default.
  const std::optional<uint16_t> port =
      port_text.empty() ? std::optional<uint16_t>(kDefaultHttpPort) : parse_port(port_text);
  if (!port || *port != local.port()) return false;
  return localhost || is_address_of(name, bracketed, local);
}

bool loopback_only(const SocketAddress& address) {
  if (address.family() == AF_INET) {
    const uint32_t ip =
        ntohl(reinterpret_cast<const sockaddr_in*>(address.sockaddr_ptr())->sin_addr.s_addr);
    return (ip >> 24) == 127;
  }
  if (address.family() == AF_INET6) {
    return IN6_IS_ADDR_LOOPBACK(
        &reinterpret_cast<const sockaddr_in6*>(address.sockaddr_ptr())->sin6_addr);
  }
  return false;
}

}  // namespace fulcrum
