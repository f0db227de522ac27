#include "fulcrum/proxy_protocol.hpp"

#include <netinet/in.h>

#include <cstring>

namespace fulcrum {

namespace {

constexpr unsigned char kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr unsigned char kV2ProxyCommand = 0x21;  // version 2, PROXY
constexpr unsigned char kV2TcpOverIpv4 = 0x11;
constexpr unsigned char kV2TcpOverIpv6 = 0x21;

void append_bytes(std::string& out, const void* data, size_t length) {
  out.append(static_cast<const char*>(data), length);
}

}  // namespace

std::string encode_proxy_v1(const SocketAddress& client, const SocketAddress& local) {
  const bool v6 = client.family() == AF_INET6;
  return std::string("PROXY ") + (v6 ? "TCP6 " : "TCP4 ") + client.host_string() + " " + local.host_string() + " " +
         std::to_string(client.port()) + " " + std::to_string(local.port()) + "\r\n";
}

std::string encode_proxy_v2(const SocketAddress& client, const SocketAddress& local) {
  std::string out;
  append_bytes(out, kV2Signature, sizeof kV2Signature);
  out += static_cast<char>(kV2ProxyCommand);
  if (client.family() == AF_INET6) {
    const auto* src = reinterpret_cast<const sockaddr_in6*>(&client.storage);
    const auto* dst = reinterpret_cast<const sockaddr_in6*>(&local.storage);
    out += static_cast<char>(kV2TcpOverIpv6);
    const uint16_t length = htons(36);
    append_bytes(out, &length, 2);
    append_bytes(out, &src->sin6_addr, 16);
    append_bytes(out, &dst->sin6_addr, 16);
    append_bytes(out, &src->sin6_port, 2);
    append_bytes(out, &dst->sin6_port, 2);
  } else {
    const auto* src = reinterpret_cast<const sockaddr_in*>(&client.storage);
    const auto* dst = reinterpret_cast<const sockaddr_in*>(&local.storage);
    out += static_cast<char>(kV2TcpOverIpv4);
    const uint16_t length = htons(12);
    append_bytes(out, &length, 2);
    append_bytes(out, &src->sin_addr, 4);
    append_bytes(out, &dst->sin_addr, 4);
    append_bytes(out, &src->sin_port, 2);
    append_bytes(out, &dst->sin_port, 2);
  }
  return out;
}

}  // namespace fulcrum
