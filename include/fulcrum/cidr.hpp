// Address ranges of the configuration (`198.18.0.0/15`, `2001:db8::/32`,
// or one address): allow and deny lists, trusted PROXY senders.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fulcrum/address.hpp"

namespace fulcrum {

struct Cidr {
  int family = 0;                   // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};  // the network, host bits zero
  unsigned prefix = 0;              // 0..32 or 0..128

  // Whether `address` (its port ignored) is in the range; never across
  // families.
  bool contains(const SocketAddress& address) const;
  std::string to_string() const;
  bool operator==(const Cidr&) const = default;
};

// `ADDRESS/PREFIX` or `ADDRESS` (all of its bits). Host bits set below the
// prefix are an error (`198.18.0.1/15`: did the writer mean the address or
// the range?); `error` says what is wrong.
std::optional<Cidr> parse_cidr(std::string_view text, std::string& error);

// Whether any range of `list` holds `address`.
bool contains_any(const std::vector<Cidr>& list, const SocketAddress& address);

}  // namespace fulcrum
