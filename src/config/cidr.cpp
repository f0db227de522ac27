#include "fulcrum/cidr.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace fulcrum {

namespace {

// The address bytes of `address` (4 or 16) and its family.
size_t address_bytes(const SocketAddress& address, std::array<uint8_t, 16>& out) {
  if (address.family() == AF_INET) {
    std::memcpy(out.data(), &reinterpret_cast<const sockaddr_in&>(address.storage).sin_addr, 4);
    return 4;
  }
  if (address.family() == AF_INET6) {
    std::memcpy(out.data(), &reinterpret_cast<const sockaddr_in6&>(address.storage).sin6_addr, 16);
    return 16;
  }
  return 0;
}

}  // namespace

bool Cidr::contains(const SocketAddress& address) const {
  if (address.family() != family) return false;
  std::array<uint8_t, 16> bytes_of{};
  address_bytes(address, bytes_of);
  const unsigned whole = prefix / 8;
  if (std::memcmp(bytes_of.data(), bytes.data(), whole) != 0) return false;
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (bytes_of[whole] & mask) == bytes[whole];
}

std::string Cidr::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), text, sizeof text);
  return std::string(text) + "/" + std::to_string(prefix);
}

std::optional<Cidr> parse_cidr(std::string_view text, std::string& error) {
  const size_t slash = text.find('/');
  const std::string_view host = text.substr(0, slash);
  const AddressParse parsed = parse_ip_literal(host);
  if (!parsed.error.empty() || parsed.addresses.empty()) {
    error = "expected an address or ADDRESS/PREFIX (198.18.0.0/15, 2001:db8::/32), got \"" +
            std::string(text) + "\"";
    return std::nullopt;
  }
  Cidr cidr;
  cidr.family = parsed.addresses.front().family();
  const unsigned bits =
      static_cast<unsigned>(address_bytes(parsed.addresses.front(), cidr.bytes)) * 8;
  cidr.prefix = bits;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    unsigned value = 0;
    const bool numeric =
        !digits.empty() && digits.size() <= 3 &&
        std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (numeric) {
      for (char c : digits) value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (!numeric || value > bits) {
      error = "prefix length of \"" + std::string(text) + "\" must be 0 to " + std::to_string(bits);
      return std::nullopt;
    }
    cidr.prefix = value;
  }
  Cidr network = cidr;
  for (unsigned bit = cidr.prefix; bit < bits; ++bit)
    network.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  if (network.bytes != cidr.bytes) {
    error = "\"" + std::string(text) + "\" has host bits set below its prefix: the range is " +
            network.to_string();
    return std::nullopt;
  }
  return cidr;
}

bool contains_any(const std::vector<Cidr>& list, const SocketAddress& address) {
  return std::any_of(list.begin(), list.end(),
                     [&address](const Cidr& cidr) { return cidr.contains(address); });
}

}  // namespace fulcrum
