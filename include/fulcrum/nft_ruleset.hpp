// fulcrum's nftables objects as plain data, and the one transaction that
// turns what the kernel has into what is wanted. The kernel data plane
// renders the wanted objects from the snapshot (kernel_rules.hpp), and this
// diff sends only what changed: a health change rewrites a few map elements
// (for Maglev, the slots that moved), not 65537 of them, and the counters
// of servers that stay keep counting.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace fulcrum {

struct NftChain {
  // Base chains: `type nat hook prerouting priority dstnat; policy accept;`.
  // Empty for chains reached by jump.
  std::string hook;
  std::string comment;
  std::vector<std::string> rules;
  bool operator==(const NftChain&) const = default;
};

struct NftMap {
  std::string type;                             // e.g. `typeof numgen inc mod 65537 : verdict`
  std::map<std::string, std::string> elements;  // key -> value, as nft writes them
  // A scheduler's slot map, keyed 0..n-1, instead of `elements`: slots[i]
  // is key i's value. A Maglev table's 65537 slots are built and compared
  // as one vector, not as 65537 tree nodes.
  std::vector<std::string> slots;
  bool operator==(const NftMap&) const = default;
};

// One table `fulcrum` of one family (`ip`, `ip6`, `netdev`).
struct NftTable {
  std::map<std::string, NftChain> chains;
  std::map<std::string, NftMap> maps;
  std::set<std::string> counters;  // named counters (they survive rule changes)
  bool empty() const { return chains.empty() && maps.empty() && counters.empty(); }
  bool operator==(const NftTable&) const = default;
};

// By family. A family without objects has no table.
using NftRuleset = std::map<std::string, NftTable>;

// The table name every family's table has.
inline constexpr const char* kNftTable = "fulcrum";

// One nft script, run as one transaction, that takes the kernel from
// `installed` to `wanted`. Empty when they are equal. With `replace`, the
// tables of the families in `wanted` are deleted and created again first
// (start-up: a table left by a crash, whatever it holds, is replaced
// atomically); `installed` is then ignored.
std::string nft_transaction(const NftRuleset& installed, const NftRuleset& wanted,
                            bool replace = false);

// A named counter's values.
struct NftCounter {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  bool operator==(const NftCounter&) const = default;
};

// The script that deletes fulcrum's tables of `families` (stop,
// fulcrum --flush-kernel); a missing table is no error (`add` first).
std::string nft_delete_tables(const std::set<std::string>& families);

}  // namespace fulcrum
