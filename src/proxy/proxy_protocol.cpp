#include "fulcrum/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

namespace fulcrum {

namespace {

constexpr unsigned char kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr unsigned char kV2ProxyCommand = 0x21;  // version 2, PROXY
constexpr unsigned char kV2TcpOverIpv4 = 0x11;
constexpr unsigned char kV2TcpOverIpv6 = 0x21;

void append_bytes(std::string& out, const void* data, size_t length) {
  out.append(static_cast<const char*>(data), length);
}

// One address of a header as it is written: IPv4 (4 bytes) or IPv6 (16),
// and the port, all in network byte order.
struct Endpoint {
  int family = AF_INET;
  std::array<unsigned char, 16> address{};
  uint16_t port = 0;

  size_t address_size() const { return family == AF_INET6 ? 16 : 4; }
  // The address without a port and without an IPv6 scope (`%eth0` has no
  // place in a PROXY header).
  std::string text() const {
    char buffer[INET6_ADDRSTRLEN];
    return ::inet_ntop(family, address.data(), buffer, sizeof buffer) != nullptr ? buffer : "";
  }
};

// `address` as an Endpoint; an IPv4 address as IPv4-mapped IPv6
// (::ffff:a.b.c.d, RFC 4291) when `ipv6`.
Endpoint endpoint(const SocketAddress& address, bool ipv6) {
  Endpoint out;
  if (address.family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    out.family = AF_INET6;
    std::memcpy(out.address.data(), &in6->sin6_addr, 16);
    out.port = in6->sin6_port;
    return out;
  }
  const auto* in = reinterpret_cast<const sockaddr_in*>(&address.storage);
  out.port = in->sin_port;
  if (!ipv6) {
    std::memcpy(out.address.data(), &in->sin_addr, 4);
    return out;
  }
  out.family = AF_INET6;
  out.address[10] = 0xFF;
  out.address[11] = 0xFF;
  std::memcpy(out.address.data() + 12, &in->sin_addr, 4);
  return out;
}

// Both addresses of a header, in one family: IPv6 as soon as one is.
std::pair<Endpoint, Endpoint> endpoints(const SocketAddress& client, const SocketAddress& local) {
  const bool ipv6 = client.family() == AF_INET6 || local.family() == AF_INET6;
  return {endpoint(client, ipv6), endpoint(local, ipv6)};
}

}  // namespace

std::string encode_proxy_v1(const SocketAddress& client, const SocketAddress& local) {
  const auto [source, destination] = endpoints(client, local);
  return std::string("PROXY ") + (source.family == AF_INET6 ? "TCP6 " : "TCP4 ") + source.text() +
         " " + destination.text() + " " + std::to_string(ntohs(source.port)) + " " +
         std::to_string(ntohs(destination.port)) + "\r\n";
}

std::string encode_proxy_v2(const SocketAddress& client, const SocketAddress& local) {
  const auto [source, destination] = endpoints(client, local);
  std::string out;
  append_bytes(out, kV2Signature, sizeof kV2Signature);
  out += static_cast<char>(kV2ProxyCommand);
  out += static_cast<char>(source.family == AF_INET6 ? kV2TcpOverIpv6 : kV2TcpOverIpv4);
  const uint16_t length = htons(static_cast<uint16_t>(2 * source.address_size() + 4));
  append_bytes(out, &length, 2);
  append_bytes(out, source.address.data(), source.address_size());
  append_bytes(out, destination.address.data(), destination.address_size());
  append_bytes(out, &source.port, 2);
  append_bytes(out, &destination.port, 2);
  return out;
}

}  // namespace fulcrum

namespace fulcrum {

namespace {

constexpr size_t kMaxV1 = 107;

ProxyHeader invalid(std::string reason) {
  ProxyHeader header;
  header.status = ProxyHeader::Status::invalid;
  header.reason = std::move(reason);
  return header;
}

bool parse_port(std::string_view text, uint16_t& port) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

ProxyHeader parse_v1(std::string_view data) {
  const size_t end = data.substr(0, kMaxV1).find("\r\n");
  if (end == std::string_view::npos) {
    if (data.size() >= kMaxV1) return invalid("v1 header longer than 107 bytes");
    if (data.find('\n') != std::string_view::npos) return invalid("v1 header without CRLF");
    return {};
  }
  std::vector<std::string_view> words;
  std::string_view line = data.substr(0, end);
  while (!line.empty()) {
    const size_t space = line.find(' ');
    words.push_back(line.substr(0, space));
    if (space == std::string_view::npos) break;
    line.remove_prefix(space + 1);
  }
  ProxyHeader header;
  header.status = ProxyHeader::Status::ok;
  header.size = end + 2;
  if (words.size() >= 2 && words[0] == "PROXY" && words[1] == "UNKNOWN") return header;
  if (words.size() != 6 || words[0] != "PROXY" || (words[1] != "TCP4" && words[1] != "TCP6")) {
    return invalid("malformed v1 header");
  }
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
  if (!parse_port(words[4], source_port) || !parse_port(words[5], destination_port)) {
    return invalid("bad port in v1 header");
  }
  // Plain literals only: no IPv6 scope (`%eth0`), no names.
  const auto literal = [](std::string_view text) {
    return !text.empty() &&
           text.find_first_not_of("0123456789abcdefABCDEF.:") == std::string_view::npos;
  };
  if (!literal(words[2]) || !literal(words[3])) return invalid("bad address in v1 header");
  const AddressParse source = parse_ip_literal(words[2]);
  const AddressParse destination = parse_ip_literal(words[3]);
  const int family = words[1] == "TCP4" ? AF_INET : AF_INET6;
  if (!source.error.empty() || !destination.error.empty() ||
      source.addresses[0].family() != family || destination.addresses[0].family() != family) {
    return invalid("bad address in v1 header");
  }
  SocketAddress address = source.addresses[0];
  if (family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&address.storage)->sin_port = htons(source_port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&address.storage)->sin6_port = htons(source_port);
  }
  header.source = address;
  return header;
}

ProxyHeader parse_v2(std::string_view data) {
  const size_t known = std::min(data.size(), sizeof kV2Signature);
  if (std::memcmp(data.data(), kV2Signature, known) != 0)
    return invalid("not a PROXY protocol header");
  if (data.size() < 16) return {};
  const auto version_command = static_cast<unsigned char>(data[12]);
  const auto family = static_cast<unsigned char>(data[13]);
  const size_t length =
      (static_cast<unsigned char>(data[14]) << 8) | static_cast<unsigned char>(data[15]);
  if ((version_command & 0xF0) != 0x20) return invalid("unsupported v2 version");
  const unsigned command = version_command & 0x0F;
  if (command > 1) return invalid("unsupported v2 command");
  if (16 + length > kMaxProxyHeader) return invalid("v2 header longer than 528 bytes");
  if (data.size() < 16 + length) return {};
  ProxyHeader header;
  header.status = ProxyHeader::Status::ok;
  header.size = 16 + length;
  if (command == 0) return header;  // LOCAL: the connection's own address stands
  const auto* body = reinterpret_cast<const unsigned char*>(data.data() + 16);
  SocketAddress address;
  if (family == kV2TcpOverIpv4) {
    if (length < 12) return invalid("v2 TCP4 header too short");
    auto* in = reinterpret_cast<sockaddr_in*>(&address.storage);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, body, 4);
    std::memcpy(&in->sin_port, body + 8, 2);
    address.length = sizeof(sockaddr_in);
  } else if (family == kV2TcpOverIpv6) {
    if (length < 36) return invalid("v2 TCP6 header too short");
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, body, 16);
    std::memcpy(&in6->sin6_port, body + 32, 2);
    address.length = sizeof(sockaddr_in6);
  } else if (family == 0x00) {
    return header;  // UNSPEC: keep the connection's address
  } else {
    return invalid("unsupported v2 address family");
  }
  header.source = address;
  return header;
}

}  // namespace

ProxyHeader parse_proxy_header(std::string_view data) {
  if (data.empty()) return {};
  if (data[0] == 'P') {
    const std::string_view prefix = "PROXY ";
    if (data.substr(0, prefix.size()) != prefix.substr(0, std::min(data.size(), prefix.size()))) {
      return invalid("not a PROXY protocol header");
    }
    return parse_v1(data);
  }
  if (data[0] == '\r') return parse_v2(data);
  return invalid("not a PROXY protocol header");
}

}  // namespace fulcrum
