// Servers from DNS (SPEC.md "Servers from DNS"): for each service with
// `discover`, asks for its SRV records (targets, ports, weights) or for the
// A and AAAA records of NAME:PORT, again when the answer's TTL ends but at
// most every `interval`, and reports each answer to the control plane,
// which owns the servers. Runs on the main loop through DnsClient: nothing
// ever blocks on DNS.
#pragma once

#include <event2/event.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fulcrum/config.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/discovered.hpp"
#include "fulcrum/dns_client.hpp"
#include "fulcrum/dns_message.hpp"
#include "fulcrum/event.hpp"

namespace fulcrum {

// The servers of an SRV answer: one per target and port, at the target's
// address (the additional section's, else `addresses`: target -> its
// addresses), the lowest priority as primaries and the others as backups,
// weights 0 as 1 and scaled down to 1000 at most; at most `max` of them
// (primaries first, then by name). Exposed for tests.
std::vector<DiscoveredServer> servers_from_srv(
    const DnsAnswer& answer, const std::map<std::string, std::vector<SocketAddress>>& addresses,
    uint32_t max);
// The servers of A/AAAA answers: every address with `port`, at most `max`
// (by name). Exposed for tests.
std::vector<DiscoveredServer> servers_from_addresses(const std::vector<SocketAddress>& addresses,
                                                     uint16_t port, uint32_t max);

class Discovery {
 public:
  Discovery(event_base* base, ControlPlane& control);
  ~Discovery();
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;

  // At start-up and after each reload: resolve the services of `config`
  // that discover, with its global.resolvers (none: /etc/resolv.conf's).
  // A service whose discover settings stay keeps its schedule.
  void configure(const Config& config);
  // The daemon is stopping: no more queries, nothing more reported.
  void stop();

 private:
  struct Target;
  void start(Target& target);
  void srv_answered(Target& target, const DnsAnswer& answer);
  void addresses_answered(Target& target);
  void report(Target& target, std::vector<DiscoveredServer> servers, uint32_t ttl);
  void fail(Target& target, std::string error);
  void schedule(Target& target, std::chrono::milliseconds delay);

  event_base* base_;
  ControlPlane& control_;
  std::vector<SocketAddress> nameservers_;
  std::unique_ptr<DnsClient> client_;
  std::map<std::string, std::unique_ptr<Target>> targets_;  // by service name
  bool stopped_ = false;
};

}  // namespace fulcrum
