// The configuration as plain data parsed from YAML. Nothing here is live:
// the runtime builds snapshots from a Config (see snapshot.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/cidr.hpp"
#include "fulcrum/duration.hpp"
#include "fulcrum/log_level.hpp"

namespace fulcrum {

enum class SchedulerKind { rr, wrr, lc, wlc, maglev, p2c };
enum class HashKey { source_ip, source_ip_port };
enum class AddressMode { snat, transparent };
enum class ProxyProtocol { none, v1, v2 };
// How a service carries a client to its server (SPEC.md "Forwarding in the
// kernel"): relayed by fulcrum, or forwarded by the kernel's nftables.
enum class Forwarding { proxy, nat, fullnat, dsr };
enum class Protocol { tcp, udp };

inline bool in_kernel(Forwarding forwarding) { return forwarding != Forwarding::proxy; }
// nat and fullnat: the kernel's connection tracking holds each flow.
inline bool in_conntrack(Forwarding forwarding) {
  return forwarding == Forwarding::nat || forwarding == Forwarding::fullnat;
}

std::string_view to_string(SchedulerKind);
std::string_view to_string(Forwarding);
std::string_view to_string(Protocol);

// Where a key is written in the file, 1-based; line 0: it is not. Kept for
// the keys that the checks after loading (fulcrum/preflight.hpp) and a
// reload's warnings point at.
struct Position {
  int line = 0;
  int column = 0;
};

// The largest weight a server may have (the file's, the operator's, or
// the agent's N % of the file's).
inline constexpr uint32_t kMaxWeight = 1000;

struct ServerConfig {
  std::string name;              // default: the address as written
  std::string address_text;      // as written in the file
  SocketAddress address;         // first resolved address
  uint32_t weight = 1;           // 0..kMaxWeight, 0 = drain
  uint32_t max_connections = 0;  // 0 = unlimited
  bool backup = false;
  Duration slow_start{0};
  // The sni_routes entry this server belongs to (an index), or none: the
  // service's own `servers`, for clients without a matching name.
  std::optional<size_t> route;
  // Found by the service's `discover` (named `target:port` or
  // `address:port`), not written in the file; `departing`: no longer in
  // the DNS answer, drained until its last session ends.
  bool discovered = false;
  bool departing = false;
};

// `discover` (SPEC.md "Servers from DNS"): the name whose records list
// servers, asked again at the TTL's end, at most every `interval`.
struct DiscoverConfig {
  std::string name;              // lower case, no trailing dot
  std::optional<uint16_t> port;  // NAME:PORT: A and AAAA, each address; none: SRV
  Duration interval{5000};
  uint32_t max_servers = 64;
};

// One `sni_routes` entry: the ClientHello server names that pick its
// servers (lower case; `*.apps.test` stands for one label).
struct SniRoute {
  std::vector<std::string> names;
};

// An accepted range of HTTP statuses, both ends included.
struct StatusRange {
  uint16_t first = 200;
  uint16_t last = 399;
};

// `health_check.http`: a GET over HTTP/1.1 (or HTTPS) whose status must be
// in one of `statuses`.
struct HttpCheckConfig {
  std::string path = "/";
  std::string host;  // empty: the server's address
  std::vector<StatusRange> statuses{StatusRange{}};
  bool tls = false;
  bool verify = false;  // check the certificate (tls only)
};

// `health_check.agent`: HAProxy's agent-check protocol on its own port.
struct AgentCheckConfig {
  uint16_t port = 0;
  Duration interval{2000};
  // Written to the agent once connected (HAProxy's agent-send), e.g. which
  // service asks; empty: nothing, the agent just speaks.
  std::string send;
};

struct HealthCheckConfig {
  bool enabled = false;
  Duration interval{2000};
  Duration timeout{1000};
  uint32_t rise = 2;
  uint32_t fall = 3;
  uint16_t port = 0;   // 0: the server's own port
  std::string send;    // bytes sent once connected
  std::string expect;  // the reply must contain it (empty: no read)
  std::optional<HttpCheckConfig> http;
  std::optional<AgentCheckConfig> agent;
};

// What happens to a server's sessions when it is marked down.
enum class OnServerDown { keep, close };

// `dsr`: where clients' packets for the VIP arrive, the interface on the
// segment shared with the servers (the same one when empty), and the bounds
// of the flow memory (docs/forwarding.md "dsr").
struct DsrConfig {
  std::string ingress;
  std::string egress;
  // How many flows the service remembers at most (about 120 bytes of
  // kernel memory each when full).
  uint64_t flows = 262144;
  // How long a flow is remembered after its last packet; unset: 300 s for
  // TCP, 30 s for UDP. A TCP flow's FIN or RST shortens it to
  // kDsrClosingTimeout.
  std::optional<Duration> flow_timeout;
};

// `source_limits` (SPEC.md "At the edge"): per client, an IPv4 address or
// an IPv6 /64; 0 = no such limit.
struct SourceLimits {
  uint32_t connections = 0;  // concurrent sessions
  uint32_t rate = 0;         // new sessions per second
};

// `accept_proxy_protocol`: whether clients begin with a PROXY header, and
// which senders may send one.
struct ProxyTrust {
  bool enabled = false;
  std::vector<Cidr> senders;  // empty while enabled: every sender (`true`)
  Position at;                // the key's place, for --check's warning

  bool trusts(const SocketAddress& peer) const {
    return senders.empty() || contains_any(senders, peer);
  }
};

struct ServiceConfig {
  std::string name;
  Forwarding forwarding = Forwarding::proxy;
  Protocol protocol = Protocol::tcp;
  // Kernel modes: the virtual addresses (VIP:port); nothing is bound.
  std::vector<SocketAddress> listen;
  SchedulerKind scheduler = SchedulerKind::wrr;
  HashKey hash_key = HashKey::source_ip;
  AddressMode address_mode = AddressMode::snat;
  std::optional<SocketAddress> source;  // snat (proxy) or fullnat source address, port 0
  std::optional<DsrConfig> dsr;         // forwarding dsr only
  ProxyProtocol proxy_protocol = ProxyProtocol::none;
  ProxyTrust accept_proxy_protocol;
  // Clients checked at accept, before any server is picked (proxy only).
  std::vector<Cidr> allow;  // empty: every source
  std::vector<Cidr> deny;   // wins over allow
  std::optional<SourceLimits> source_limits;
  // Routing by the TLS server name (proxy only); the routes' servers are in
  // `servers` too, each with its `route`.
  std::vector<SniRoute> sni_routes;
  bool sni_required = false;
  std::optional<DiscoverConfig> discover;
  Duration connect_timeout{3000};
  Duration idle_timeout{600000};
  uint32_t retries = 2;
  uint32_t max_connections = 0;  // 0 = unlimited
  Duration max_lifetime{0};      // 0 = never
  HealthCheckConfig health_check;
  OnServerDown on_server_down = OnServerDown::keep;
  Position address_mode_at;  // in the service, else in defaults
  Position forwarding_at;    // likewise
  std::vector<ServerConfig> servers;
};

// `global.announce` (SPEC.md "Announcing VIPs to routers"): the interface
// fulcrum creates and owns, where a service's virtual address is while the
// service has a usable server, for a routing daemon to announce; and how
// long every data plane keeps forwarding after the addresses are removed
// on stop.
struct AnnounceConfig {
  std::string interface;
  Duration grace{2000};
  Position interface_at;
};

struct GlobalConfig {
  unsigned workers = 0;  // 0 = auto: the CPUs this process may run on
  uint64_t max_connections = 100000;
  Duration shutdown_timeout{30000};
  std::string user;
  std::string group;
  LogLevel log_level = LogLevel::info;
  bool access_log = true;
  std::optional<AnnounceConfig> announce;
  // DNS servers for discovery; empty: the nameservers of /etc/resolv.conf.
  std::vector<SocketAddress> resolvers;
  Position workers_at;
  Position user_at;
};

// The stats HTTP endpoint (SPEC.md "Stats endpoint"); absent = disabled.
struct StatsConfig {
  bool enabled = false;
  SocketAddress listen;
  std::string admin_token_file;  // empty: the write API answers 403
  Position listen_at;
  Position admin_token_file_at;
};

struct Config {
  std::string path;
  GlobalConfig global;
  StatsConfig stats;
  std::vector<ServiceConfig> services;
};

// One problem found in a configuration file, 1-based line and column (line
// 0: no place in the file). Warnings (a reload's, the token file's mode)
// take the same form.
struct ConfigError {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  // `FILE:LINE:COL: message`, or `FILE: message` without a line.
  std::string to_string() const;
};
using ConfigWarning = ConfigError;

// A problem with `config` at `at`.
ConfigError config_error(const Config& config, Position at, std::string message);

// Either a valid config (errors empty) or every error found.
struct ConfigLoad {
  std::optional<Config> config;
  std::vector<ConfigError> errors;
};

// Reads, parses and validates a file. Never throws. A missing or unreadable
// file is one error at line 1 column 1:
// `FILE:1:1: cannot read configuration: REASON` (REASON from strerror).
ConfigLoad load_config_file(const std::string& path);
// The text of the file at `path`, or none with `failed` holding why it
// could not be read (as load_config_file reports it).
std::optional<std::string> read_config_file(const std::string& path, ConfigLoad& failed);

// Same as load_config_file for text already in memory; `file_name` is the
// name errors carry.
ConfigLoad load_config_text(std::string_view text, const std::string& file_name);

}  // namespace fulcrum
