#include "fulcrum/discovered.hpp"

#include <algorithm>

namespace fulcrum {

bool merge_discovered(DiscoveryStatus& status, std::vector<DiscoveredServer> servers) {
  std::sort(servers.begin(), servers.end(),
            [](const DiscoveredServer& a, const DiscoveredServer& b) { return a.name < b.name; });
  const auto named = [](const std::vector<DiscoveredServer>& list, const std::string& name) {
    return std::any_of(list.begin(), list.end(),
                       [&name](const DiscoveredServer& s) { return s.name == name; });
  };
  std::vector<DiscoveredServer> departing;
  for (const DiscoveredServer& old : status.current) {
    if (!named(servers, old.name)) departing.push_back(old);
  }
  for (const DiscoveredServer& old : status.departing) {
    if (!named(servers, old.name) && !named(departing, old.name)) departing.push_back(old);
  }
  std::sort(departing.begin(), departing.end(),
            [](const DiscoveredServer& a, const DiscoveredServer& b) { return a.name < b.name; });
  const bool changed = servers != status.current || departing != status.departing;
  status.current = std::move(servers);
  status.departing = std::move(departing);
  return changed;
}

}  // namespace fulcrum
