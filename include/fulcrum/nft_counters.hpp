// fulcrum's named nftables counters, read from the kernel without
// libnftables' cache (src/kernel/nft_counters.cpp says why).
#pragma once

#include <map>
#include <optional>
#include <string>

#include "fulcrum/nft_ruleset.hpp"

namespace fulcrum {

// The counter objects of table `fulcrum` in `family` (`ip`, `ip6`,
// `netdev`), by name; nullopt when the kernel could not be asked (no
// CAP_NET_ADMIN, no such table).
std::optional<std::map<std::string, NftCounter>> read_nft_counters(const std::string& family);

}  // namespace fulcrum
