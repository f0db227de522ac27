#include "fulcrum/discovery.hpp"

#include <algorithm>
#include <chrono>

#include "fulcrum/log.hpp"

namespace fulcrum {

namespace {

constexpr const char* kResolvConf = "/etc/resolv.conf";

bool same_discover(const DiscoverConfig& a, const DiscoverConfig& b) {
  return a.name == b.name && a.port == b.port && a.interval == b.interval &&
         a.max_servers == b.max_servers;
}

bool by_name(const DiscoveredServer& a, const DiscoveredServer& b) { return a.name < b.name; }

// The first of `addresses` in a stable order (answers rotate theirs).
SocketAddress first_address(std::vector<SocketAddress> addresses) {
  std::sort(addresses.begin(), addresses.end(), [](const SocketAddress& a, const SocketAddress& b) {
    if (a.family() != b.family()) return a.family() == AF_INET;
    return a.to_string() < b.to_string();
  });
  return addresses.front();
}

// Why an answer gave nothing to use.
std::string why(const DnsAnswer& answer, std::string_view what, std::string_view name) {
  if (answer.status == DnsAnswer::Status::no_name)
    return "no such name " + std::string(name) + " (NXDOMAIN)";
  if (answer.status == DnsAnswer::Status::failed) return answer.error;
  return "no " + std::string(what) + " records for " + std::string(name);
}

}  // namespace

std::vector<DiscoveredServer> servers_from_srv(
    const DnsAnswer& answer, const std::map<std::string, std::vector<SocketAddress>>& addresses,
    uint32_t max) {
  if (answer.srv.empty()) return {};
  uint16_t best = answer.srv.front().priority;
  uint32_t heaviest = 1;
  for (const DnsSrv& srv : answer.srv) {
    best = std::min(best, srv.priority);
    heaviest = std::max<uint32_t>(heaviest, srv.weight);
  }
  std::vector<DiscoveredServer> out;
  for (const DnsSrv& srv : answer.srv) {
    // RFC 2782's "." target: the service is decidedly not available there.
    if (srv.target.empty() || srv.port == 0) continue;
    std::vector<SocketAddress> found;
    for (const DnsAddress& extra : answer.additional) {
      if (extra.owner == srv.target) found.push_back(extra.address);
    }
    if (found.empty()) {
      if (const auto it = addresses.find(srv.target); it != addresses.end()) found = it->second;
    }
    if (found.empty()) continue;
    DiscoveredServer server;
    server.name = srv.target + ":" + std::to_string(srv.port);
    if (std::any_of(out.begin(), out.end(),
                    [&server](const DiscoveredServer& s) { return s.name == server.name; }))
      continue;
    server.address = first_address(found).with_port(srv.port);
    // 0 counts as 1; a set above 1000 is scaled down in proportion.
    const uint32_t weight = std::max<uint32_t>(srv.weight, 1);
    server.weight =
        heaviest > kMaxWeight
            ? std::max<uint32_t>(1, static_cast<uint32_t>(uint64_t{weight} * kMaxWeight / heaviest))
            : weight;
    server.backup = srv.priority != best;
    out.push_back(std::move(server));
  }
  std::sort(out.begin(), out.end(), [](const DiscoveredServer& a, const DiscoveredServer& b) {
    return a.backup != b.backup ? !a.backup : a.name < b.name;
  });
  if (out.size() > max) out.resize(max);
  return out;
}

std::vector<DiscoveredServer> servers_from_addresses(const std::vector<SocketAddress>& addresses,
                                                     uint16_t port, uint32_t max) {
  std::vector<DiscoveredServer> out;
  for (const SocketAddress& address : addresses) {
    DiscoveredServer server;
    server.address = address.with_port(port);
    server.name = server.address.to_string();
    if (std::none_of(out.begin(), out.end(),
                     [&server](const DiscoveredServer& s) { return s.name == server.name; }))
      out.push_back(std::move(server));
  }
  std::sort(out.begin(), out.end(), by_name);
  if (out.size() > max) out.resize(max);
  return out;
}

struct Discovery::Target {
  Discovery* owner = nullptr;
  std::string service;
  DiscoverConfig config;
  EventPtr timer;
  std::vector<uint64_t> queries;  // running
  int pending = 0;
  std::optional<uint32_t> ttl;           // the smallest of the answers used
  std::string error;                     // a failed query's reason
  std::vector<SocketAddress> addresses;  // A/AAAA of NAME:PORT
  DnsAnswer srv;
  std::map<std::string, std::vector<SocketAddress>> target_addresses;  // SRV targets asked apart
  std::string last_logged;  // the failure last logged (empty: none since the last success)

  void use_ttl(uint32_t value) { ttl = ttl ? std::min(*ttl, value) : value; }
};

Discovery::Discovery(event_base* base, ControlPlane& control) : base_(base), control_(control) {}

Discovery::~Discovery() = default;

void Discovery::configure(const Config& config) {
  if (stopped_) return;
  std::vector<SocketAddress> nameservers = config.global.resolvers;
  if (nameservers.empty()) nameservers = resolv_conf_nameservers(kResolvConf);
  if (!client_ || !(nameservers == nameservers_)) {
    // New nameservers: every query starts again with them.
    nameservers_ = nameservers;
    client_ = std::make_unique<DnsClient>(base_, nameservers_);
    targets_.clear();
  }
  std::map<std::string, std::unique_ptr<Target>> targets;
  for (const ServiceConfig& service : config.services) {
    if (!service.discover) continue;
    auto found = targets_.find(service.name);
    if (found != targets_.end() && same_discover(found->second->config, *service.discover)) {
      targets.emplace(service.name, std::move(found->second));
      continue;
    }
    auto target = std::make_unique<Target>();
    target->owner = this;
    target->service = service.name;
    target->config = *service.discover;
    target->timer.reset(evtimer_new(
        base_,
        [](evutil_socket_t, short, void* arg) {
          auto* due = static_cast<Target*>(arg);
          due->owner->start(*due);
        },
        target.get()));
    targets.emplace(service.name, std::move(target));
  }
  // Targets left behind: their queries must never call back.
  for (auto& [name, target] : targets_) {
    if (!target) continue;
    for (const uint64_t id : target->queries) client_->cancel(id);
  }
  targets_ = std::move(targets);
  for (auto& [name, target] : targets_) {
    if (!target->queries.empty() || evtimer_pending(target->timer.get(), nullptr)) continue;
    start(*target);
  }
}

void Discovery::stop() {
  stopped_ = true;
  client_.reset();  // first: its queries' callbacks are never called
  targets_.clear();
}

void Discovery::start(Target& target) {
  target.pending = 0;
  target.ttl.reset();
  target.error.clear();
  target.addresses.clear();
  target.srv = DnsAnswer{};
  target.target_addresses.clear();
  target.queries.clear();
  const std::string& name = target.config.name;
  if (!target.config.port) {
    target.pending = 1;
    target.queries.push_back(
        client_->query(name, DnsType::srv,
                       [this, &target](const DnsAnswer& answer) { srv_answered(target, answer); }));
    return;
  }
  for (const DnsType type : {DnsType::a, DnsType::aaaa}) {
    ++target.pending;
    target.queries.push_back(client_->query(name, type, [this, &target](const DnsAnswer& answer) {
      if (answer.status == DnsAnswer::Status::ok && !answer.addresses.empty()) {
        target.addresses.insert(target.addresses.end(), answer.addresses.begin(),
                                answer.addresses.end());
        target.use_ttl(answer.ttl);
      } else if (target.error.empty() || answer.status == DnsAnswer::Status::failed) {
        target.error = why(answer, "A or AAAA", target.config.name);
      }
      if (--target.pending == 0) addresses_answered(target);
    }));
  }
}

void Discovery::srv_answered(Target& target, const DnsAnswer& answer) {
  --target.pending;
  if (answer.status != DnsAnswer::Status::ok || answer.srv.empty()) {
    fail(target, why(answer, "SRV", target.config.name));
    return;
  }
  target.srv = answer;
  target.use_ttl(answer.ttl);
  // Targets whose addresses the answer did not carry are asked apart.
  for (const DnsSrv& srv : answer.srv) {
    const bool carried =
        std::any_of(answer.additional.begin(), answer.additional.end(),
                    [&srv](const DnsAddress& extra) { return extra.owner == srv.target; });
    if (carried || srv.target.empty() || target.target_addresses.contains(srv.target)) continue;
    target.target_addresses[srv.target];
    for (const DnsType type : {DnsType::a, DnsType::aaaa}) {
      ++target.pending;
      target.queries.push_back(client_->query(
          srv.target, type, [this, &target, name = srv.target](const DnsAnswer& reply) {
            if (reply.status == DnsAnswer::Status::ok && !reply.addresses.empty()) {
              auto& list = target.target_addresses[name];
              list.insert(list.end(), reply.addresses.begin(), reply.addresses.end());
              target.use_ttl(reply.ttl);
            }
            if (--target.pending == 0) addresses_answered(target);
          }));
    }
  }
  for (const DnsAddress& extra : answer.additional) target.use_ttl(extra.ttl);
  if (target.pending == 0) addresses_answered(target);
}

void Discovery::addresses_answered(Target& target) {
  target.queries.clear();
  std::vector<DiscoveredServer> servers;
  if (target.config.port) {
    servers =
        servers_from_addresses(target.addresses, *target.config.port, target.config.max_servers);
    if (servers.empty()) {
      fail(target,
           target.error.empty() ? "no A or AAAA records for " + target.config.name : target.error);
      return;
    }
  } else {
    servers = servers_from_srv(target.srv, target.target_addresses, target.config.max_servers);
    if (servers.empty()) {
      fail(target, "no address for any SRV target of " + target.config.name);
      return;
    }
  }
  report(target, std::move(servers), target.ttl.value_or(0));
}

void Discovery::report(Target& target, std::vector<DiscoveredServer> servers, uint32_t ttl) {
  target.last_logged.clear();
  control_.report_discovery(target.service, std::move(servers), "",
                            std::chrono::system_clock::now(), std::chrono::steady_clock::now());
  // Never before the TTL ends, at most every interval.
  const auto interval =
      std::chrono::duration_cast<std::chrono::milliseconds>(target.config.interval);
  schedule(target, std::max(interval, std::chrono::milliseconds(std::chrono::seconds(ttl))));
}

void Discovery::fail(Target& target, std::string error) {
  target.queries.clear();
  // Logged when it starts and when its reason changes; each one is counted.
  if (error != target.last_logged) {
    log_warn("discovery failed, the known servers stay",
             {{"service", target.service}, {"name", target.config.name}, {"error", error}});
    target.last_logged = error;
  }
  control_.report_discovery(target.service, std::nullopt, std::move(error),
                            std::chrono::system_clock::now(), std::chrono::steady_clock::now());
  schedule(target, std::chrono::duration_cast<std::chrono::milliseconds>(target.config.interval));
}

void Discovery::schedule(Target& target, std::chrono::milliseconds delay) {
  add_with_timeout(target.timer.get(), delay);
}

}  // namespace fulcrum
