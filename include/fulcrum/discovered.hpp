// What DNS discovery found for a service (SPEC.md "Servers from DNS"), as
// the control plane keeps it: the servers of the last good answer, those
// that left it and still have sessions, and how resolution went. Pure data
// and the merge rule; discovery.hpp asks DNS.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fulcrum/address.hpp"

namespace fulcrum {

struct DiscoveredServer {
  std::string name;       // `target:port` (SRV) or `address:port` (A/AAAA)
  SocketAddress address;  // with the port
  uint32_t weight = 1;    // 1..1000
  bool backup = false;    // SRV: a target of a priority after the best one
  bool operator==(const DiscoveredServer&) const = default;
};

struct DiscoveryStatus {
  // discover.name with its port: a reload that changes it starts afresh.
  std::string query;
  std::vector<DiscoveredServer> current;
  // Left the answer; drained until their last session ends, then dropped.
  std::vector<DiscoveredServer> departing;
  uint64_t errors = 0;  // failed or empty answers
  std::optional<std::chrono::system_clock::time_point> last_success;
  std::string last_error;  // the last failure's reason (empty: none yet)
};

// Takes a good answer's servers into `status`: the new set becomes current,
// servers no longer in it depart (kept while they have sessions), departing
// ones back in the answer return. True when the servers changed.
bool merge_discovered(DiscoveryStatus& status, std::vector<DiscoveredServer> servers);

}  // namespace fulcrum
