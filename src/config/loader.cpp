// The strict configuration loader: every key must be known, every value is
// checked, and every problem is reported with its file position instead of
// stopping at the first one. docs/configuration.md is the user's view.
#include "fulcrum/config.hpp"

#include <grp.h>
#include <pwd.h>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <span>
#include <sstream>

#include "fulcrum/quote.hpp"

namespace fulcrum {
namespace {

// ---- Enumerations as written in the file ------------------------------------

template <class E>
struct Choice {
  std::string_view text;
  E value;
};

constexpr Choice<LogLevel> kLogLevels[] = {
    {"error", LogLevel::error},
    {"warn", LogLevel::warn},
    {"info", LogLevel::info},
    {"debug", LogLevel::debug},
};

constexpr Choice<SchedulerKind> kSchedulers[] = {
    {"rr", SchedulerKind::rr},   {"wrr", SchedulerKind::wrr},       {"lc", SchedulerKind::lc},
    {"wlc", SchedulerKind::wlc}, {"maglev", SchedulerKind::maglev}, {"p2c", SchedulerKind::p2c},
};

constexpr Choice<HashKey> kHashKeys[] = {
    {"source_ip", HashKey::source_ip},
    {"source_ip_port", HashKey::source_ip_port},
};

constexpr Choice<OnServerDown> kOnServerDown[] = {
    {"keep", OnServerDown::keep},
    {"close", OnServerDown::close},
};

constexpr Choice<AddressMode> kAddressModes[] = {
    {"snat", AddressMode::snat},
    {"transparent", AddressMode::transparent},
};

constexpr Choice<ProxyProtocol> kProxyProtocols[] = {
    {"none", ProxyProtocol::none},
    {"v1", ProxyProtocol::v1},
    {"v2", ProxyProtocol::v2},
};

constexpr Choice<Forwarding> kForwardings[] = {
    {"proxy", Forwarding::proxy},
    {"nat", Forwarding::nat},
    {"fullnat", Forwarding::fullnat},
    {"dsr", Forwarding::dsr},
};

constexpr Choice<Protocol> kProtocols[] = {
    {"tcp", Protocol::tcp},
    {"udp", Protocol::udp},
};

template <class E>
std::string_view choice_text(std::span<const Choice<E>> choices, E value) {
  for (const Choice<E>& choice : choices) {
    if (choice.value == value) return choice.text;
  }
  return "?";
}

// ---- Sections and their keys ------------------------------------------------

// The mappings of the file, each with its own set of keys.
enum class Section {
  top,
  global,
  stats,
  defaults,
  service,
  timeouts,
  health_check,
  http_check,
  agent_check,
  dsr,
  announce,
  source_limits,
  sni_route,
  discover,
  server
};

// An sni_routes name, lowered: a host name (letters, digits, '-', '_'
// labels of 1 to 63, 253 in all, no trailing dot), or `*.` and one.
bool is_sni_pattern(std::string_view name) {
  if (name.starts_with("*.")) name.remove_prefix(2);
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (const char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
      if (++label > 63) return false;
    } else {
      return false;
    }
  }
  return label > 0;
}

bool is_one_of(std::string_view key, std::initializer_list<std::string_view> keys) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

// Per-service keys that `defaults` may set for every service.
bool is_service_setting(std::string_view key) {
  return is_one_of(
      key, {"forwarding", "protocol", "dsr", "scheduler", "hash_key", "address_mode", "source",
            "proxy_protocol", "accept_proxy_protocol", "timeouts", "retries", "max_connections",
            "max_lifetime", "health_check", "on_server_down", "allow", "deny", "source_limits"});
}

// Per-service keys that only mean something while fulcrum relays the bytes:
// errors in a kernel mode (SPEC.md "Forwarding in the kernel"), each with
// the reason.
std::optional<std::string_view> proxy_only_reason(std::string_view key) {
  if (key == "address_mode")
    return "the kernel keeps the client's address (nat, dsr) or uses source (fullnat)";
  if (key == "proxy_protocol" || key == "accept_proxy_protocol")
    return "the kernel forwards packets and adds no header";
  if (key == "retries") return "the kernel does not retry a server that refuses";
  if (key == "allow" || key == "deny" || key == "source_limits")
    return "fulcrum checks clients as it accepts them, and the kernel accepts none (filter with "
           "nftables rules of your own)";
  if (key == "max_connections" || key == "max_lifetime")
    return "the kernel counts no session to limit or end";
  return std::nullopt;
}

// Per-service keys that name a service or belong to it alone.
bool is_service_identity(std::string_view key) {
  return is_one_of(key, {"name", "listen", "servers", "sni_routes", "sni_required", "discover"});
}

bool allows(Section section, std::string_view key) {
  switch (section) {
    case Section::top: return is_one_of(key, {"global", "stats", "defaults", "services"});
    case Section::global:
      return is_one_of(key, {"workers", "max_connections", "shutdown_timeout", "user", "group",
                             "log_level", "access_log", "announce", "resolvers"});
    case Section::stats: return is_one_of(key, {"listen", "admin_token_file"});
    case Section::defaults: return is_service_setting(key);
    case Section::service: return is_service_setting(key) || is_service_identity(key);
    case Section::timeouts: return is_one_of(key, {"connect", "idle"});
    case Section::health_check:
      return is_one_of(
          key, {"interval", "timeout", "rise", "fall", "port", "send", "expect", "http", "agent"});
    case Section::http_check: return is_one_of(key, {"path", "host", "status", "tls", "verify"});
    case Section::agent_check: return is_one_of(key, {"port", "interval", "send"});
    case Section::dsr: return is_one_of(key, {"ingress", "egress", "flows", "flow_timeout"});
    case Section::announce: return is_one_of(key, {"interface", "grace"});
    case Section::source_limits: return is_one_of(key, {"connections", "rate"});
    case Section::sni_route: return is_one_of(key, {"names", "servers"});
    case Section::discover: return is_one_of(key, {"name", "interval", "max_servers"});
    case Section::server:
      return is_one_of(key,
                       {"address", "name", "weight", "max_connections", "backup", "slow_start"});
  }
  return false;
}

// `unknown key "x" in service`, `... at top level`.
std::string_view in_section(Section section) {
  switch (section) {
    case Section::top: return "at top level";
    case Section::global: return "in global";
    case Section::stats: return "in stats";
    case Section::defaults: return "in defaults";
    case Section::service: return "in service";
    case Section::timeouts: return "in timeouts";
    case Section::health_check: return "in health_check";
    case Section::http_check: return "in health_check.http";
    case Section::agent_check: return "in health_check.agent";
    case Section::dsr: return "in dsr";
    case Section::announce: return "in global.announce";
    case Section::source_limits: return "in source_limits";
    case Section::sni_route: return "in sni_routes";
    case Section::discover: return "in discover";
    case Section::server: return "in server";
  }
  return "";
}

// `service is missing required key "listen"`.
std::string_view section_name(Section section) {
  switch (section) {
    case Section::top: return "configuration";
    case Section::global: return "global";
    case Section::stats: return "stats";
    case Section::defaults: return "defaults";
    case Section::service: return "service";
    case Section::timeouts: return "timeouts";
    case Section::health_check: return "health_check";
    case Section::http_check: return "health_check.http";
    case Section::agent_check: return "health_check.agent";
    case Section::dsr: return "dsr";
    case Section::announce: return "global.announce";
    case Section::source_limits: return "source_limits";
    case Section::sni_route: return "sni_routes entry";
    case Section::discover: return "discover";
    case Section::server: return "server";
  }
  return "";
}

// ---- Plain text checks ------------------------------------------------------

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Unsigned decimal digits only: no sign, no fraction, no spaces, no 0x.
std::optional<uint64_t> parse_decimal(std::string_view text) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), is_digit)) return std::nullopt;
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Non-empty and made of letters, digits and the characters in `extra`.
bool is_name(std::string_view text, std::string_view extra) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [extra](char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           extra.find(c) != std::string_view::npos;
  });
}

std::string_view family_name(int family) { return family == AF_INET6 ? "IPv6" : "IPv4"; }

// In transparent mode a server connection comes from the client's address,
// so servers must have the clients' family: that of the (first) listen
// address. Not when clients send PROXY headers, whose addresses may be of
// either family; sessions then skip servers of the other family. In the
// kernel modes the packet keeps its family (nft nat rewrites an address for
// one of the same family), so the same rule holds.
std::optional<int> transparent_family(const ServiceConfig& service) {
  if (service.listen.empty()) return std::nullopt;
  if (in_kernel(service.forwarding)) return service.listen.front().family();
  if (service.address_mode != AddressMode::transparent || service.accept_proxy_protocol.enabled) {
    return std::nullopt;
  }
  return service.listen.front().family();
}

// Whether `c` may appear in an IPv6 literal with a zone (`fe80::1%eth0`).
bool is_ipv6_literal_char(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ':' || c == '.' ||
         c == '%';
}

// The first `[IPv6]:PORT` written without quotes on the line of `mark`:
// YAML reads its brackets as a list, which turns the line into a syntax
// error (`listen: [::]:80`). A scan rather than std::regex, whose
// recursion a long line could take past the stack.
std::optional<std::string> unquoted_ipv6_on_line(const std::string& text, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return std::nullopt;
  std::size_t start = 0;
  for (int line = 0; line < mark.line && start != std::string::npos; ++line) {
    start = text.find('\n', start);
    if (start != std::string::npos) ++start;
  }
  if (start == std::string::npos) return std::nullopt;
  const std::string_view line =
      std::string_view(text).substr(start, text.find('\n', start) - start);
  for (std::size_t open = line.find('['); open != std::string_view::npos;
       open = line.find('[', open + 1)) {
    if (open > 0 &&
        (line[open - 1] == '"' || line[open - 1] == '\'' || is_ipv6_literal_char(line[open - 1]))) {
      continue;
    }
    std::size_t close = open + 1;
    while (close < line.size() && is_ipv6_literal_char(line[close])) ++close;
    std::size_t port_end = close + 2;
    while (port_end < line.size() && is_digit(line[port_end])) ++port_end;
    const std::string_view inside = line.substr(open + 1, close - open - 1);
    if (close + 2 < port_end && line[close] == ']' && line[close + 1] == ':' &&
        inside.find(':') != std::string_view::npos) {
      return std::string(line.substr(open, port_end - open));
    }
  }
  return std::nullopt;
}

// ` (first at line N)`, the end of a duplicate's error.
std::string first_at(const YAML::Mark& mark) {
  return " (first at line " + std::to_string(mark.line + 1) + ")";
}

// The 1-based position of a key.
Position position_of(const YAML::Node& key) {
  const YAML::Mark mark = key.Mark();
  if (mark.is_null()) return Position{1, 1};
  return Position{mark.line + 1, mark.column + 1};
}

template <class T, class U>
void assign(T& field, const std::optional<U>& value) {
  if (value) field = static_cast<T>(*value);
}

// ---- YAML structure -----------------------------------------------------------

// A value together with what error messages need to place it: for a mapping
// entry its key, for a list item (`name` empty) the item itself.
struct Entry {
  std::string name;
  YAML::Node key;
  YAML::Node value;
};

Entry item(const YAML::Node& node) { return Entry{"", node, node}; }

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return quote(node.Scalar());
    default: return "an empty value";
  }
}

// A mapping whose keys were checked against its section: each allowed key
// once, lookups see its first occurrence.
class Mapping {
 public:
  Mapping(Section section, const YAML::Node& node) : section_(section), node_(node) {}

  Section section() const { return section_; }
  const YAML::Node& node() const { return node_; }
  void add(Entry entry) { entries_.push_back(std::move(entry)); }

  const Entry* find(std::string_view name) const {
    for (const Entry& entry : entries_) {
      if (entry.name == name) return &entry;
    }
    return nullptr;
  }

 private:
  Section section_;
  YAML::Node node_;
  std::vector<Entry> entries_;
};

// Records where a YAML document's root node starts; builds nothing.
class RootMark final : public YAML::EventHandler {
 public:
  const std::optional<YAML::Mark>& mark() const { return mark_; }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { note(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { note(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    note(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    note(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    note(mark);
  }
  void OnMapEnd() override {}

 private:
  void note(const YAML::Mark& mark) {
    if (!mark_) mark_ = mark;
  }

  std::optional<YAML::Mark> mark_;
};

// ---- The loader -----------------------------------------------------------------

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  // Parses and validates `text`; call once.
  ConfigLoad load(std::string_view text);

 private:
  // Errors.
  void error(const YAML::Mark& mark, std::string message);
  void error(const YAML::Node& at, std::string message) { error(at.Mark(), std::move(message)); }
  void type_error(const Entry& entry, std::string_view expected);
  bool first_occurrence(std::map<std::string, YAML::Mark>& seen, const std::string& key,
                        const YAML::Node& at, const std::string& what);

  // Structure.
  void check_single_document(const std::string& text);
  std::optional<Mapping> mapping(const Entry& entry, Section section, bool empty_ok = false);
  const Entry* require(const Mapping& mapping, std::string_view name);

  // Scalar values; each reports its own errors and returns nullopt on one.
  std::optional<std::string> text(const Entry& entry);
  std::optional<uint64_t> integer(const Entry& entry, uint64_t min, uint64_t max);
  std::optional<unsigned> workers(const Entry& entry);
  std::optional<bool> boolean(const Entry& entry);
  std::optional<Duration> duration(const Entry& entry, bool positive = false);
  template <class E>
  std::optional<E> choice(const Entry& entry, std::span<const Choice<E>> choices);
  std::optional<std::string> name(const Entry& entry, std::string_view what,
                                  std::string_view extra);
  std::optional<SocketAddress> source(const Entry& entry);

  // Sections.
  void parse_root(const YAML::Node& root, Config& config);
  void parse_global(const Entry& entry, GlobalConfig& global);
  void parse_stats(const Entry& entry, StatsConfig& stats);
  void parse_defaults(const Entry& entry, ServiceConfig& defaults);
  void apply_service_settings(const Mapping& mapping, ServiceConfig& service);
  void apply_timeouts(const Entry& entry, ServiceConfig& service);
  std::optional<DsrConfig> dsr(const Entry& entry);
  std::optional<AnnounceConfig> announce(const Entry& entry);
  std::optional<std::vector<Cidr>> cidr_list(const Entry& entry);
  std::optional<ProxyTrust> proxy_trust(const Entry& entry);
  std::optional<SourceLimits> source_limits(const Entry& entry);
  std::optional<std::string> interface_name(const Entry& entry);
  void check_forwarding(const Mapping& mapping, const ServiceConfig& service);
  void apply_health_check(const Entry& entry, HealthCheckConfig& health_check);
  std::optional<HttpCheckConfig> http_check(const Entry& entry);
  std::optional<AgentCheckConfig> agent_check(const Entry& entry, Duration interval);
  std::optional<std::vector<StatusRange>> statuses(const Entry& entry);
  std::optional<std::string> header_text(const Entry& entry, std::string_view what);
  std::vector<ServiceConfig> parse_services(const Entry& entry, const ServiceConfig& defaults);
  std::optional<ServiceConfig> parse_service(const Entry& entry, const ServiceConfig& defaults);
  std::vector<SocketAddress> parse_listen(const Entry& entry, Protocol protocol);
  void check_virtual_addresses(const Entry& entry, const ServiceConfig& service);
  std::vector<ServerConfig> parse_servers(const Entry& entry, const ServiceConfig& service,
                                          std::map<std::string, YAML::Mark>& names);
  void parse_sni_routes(const Entry& entry, ServiceConfig& service,
                        std::map<std::string, YAML::Mark>& server_names);
  std::optional<DiscoverConfig> discover_config(const Entry& entry);
  std::optional<std::vector<SocketAddress>> resolvers(const Entry& entry);
  std::optional<ServerConfig> parse_server(const Entry& entry, const ServiceConfig& service,
                                           std::map<std::string, YAML::Mark>& names);
  std::optional<SocketAddress> server_address(const Entry& entry, const ServiceConfig& service);

  std::string file_;
  std::vector<ConfigError> errors_;
  std::map<std::string, YAML::Mark> service_names_;     // first position of each
  std::map<std::string, YAML::Mark> listen_addresses_;  // by SocketAddress::to_string
};

// ---- Errors

void Loader::error(const YAML::Mark& mark, std::string message) {
  // yaml-cpp counts from 0; positions it does not know print as 1:1.
  const int line = mark.is_null() ? 1 : mark.line + 1;
  const int column = mark.is_null() ? 1 : mark.column + 1;
  errors_.push_back(ConfigError{file_, line, column, std::move(message)});
}

// A value of the wrong kind. An empty value (`key:` and nothing) is reported
// at its key: yaml-cpp places it at the next token, often on another line.
void Loader::type_error(const Entry& entry, std::string_view expected) {
  if (entry.value.IsNull() && !entry.name.empty()) {
    error(entry.key, "missing value for " + quote(entry.name));
    return;
  }
  std::string message = "expected " + std::string(expected) + ", got " + describe(entry.value);
  // `["[::]:80", [::1]:81]` is valid YAML: its second item is the mapping
  // {[::1]: 81}.
  if (entry.value.IsMap() && entry.value.size() == 1) {
    const auto pair = *entry.value.begin();
    if (pair.first.IsSequence() && pair.first.size() == 1 && pair.first[0].IsScalar() &&
        pair.second.IsScalar()) {
      message += " (an [IPv6]:PORT address must be quoted: \"[" + pair.first[0].Scalar() +
                 "]:" + pair.second.Scalar() + "\")";
    }
  }
  error(entry.value, std::move(message));
}

// True for the first occurrence of `key`; a repeat is reported at `at`.
bool Loader::first_occurrence(std::map<std::string, YAML::Mark>& seen, const std::string& key,
                              const YAML::Node& at, const std::string& what) {
  const auto [it, inserted] = seen.emplace(key, at.Mark());
  if (!inserted) {
    error(at, "duplicate " + what + first_at(it->second));
  }
  return inserted;
}

// ---- Structure

// Reports a second document in `text`. Documents are counted here, at most
// two, because yaml-cpp 0.7's LoadAll never returns on a stray "," where a
// document starts: its parser reports an empty document there again and
// again without moving on (jbeder/yaml-cpp#1040, fixed upstream by #1319).
// A second document starting where the first one did is that case.
void Loader::check_single_document(const std::string& text) {
  std::istringstream input(text);
  YAML::Parser parser(input);
  RootMark first;
  RootMark second;
  if (!parser.HandleNextDocument(first) || !parser.HandleNextDocument(second)) return;
  const YAML::Mark at = second.mark().value_or(YAML::Mark::null_mark());
  if (first.mark() && first.mark()->pos == at.pos) {
    const bool known = at.pos >= 0 && static_cast<std::size_t>(at.pos) < text.size();
    error(at, "invalid YAML: unexpected " +
                  (known ? quote(text.substr(static_cast<std::size_t>(at.pos), 1)) : "token"));
  } else {
    error(at, "expected a single YAML document");
  }
}

// The entry's value as a mapping of `section`, its keys checked: unknown and
// repeated keys are reported at the key. With `empty_ok` an empty value is an
// empty mapping (a section whose keys are all commented out).
std::optional<Mapping> Loader::mapping(const Entry& entry, Section section, bool empty_ok) {
  Mapping result(section, entry.value);
  if (empty_ok && entry.value.IsNull()) return result;
  if (!entry.value.IsMap()) {
    type_error(entry, "a mapping");
    return std::nullopt;
  }
  for (const auto& pair : entry.value) {
    const YAML::Node& key = pair.first;
    if (!key.IsScalar()) {
      error(key, "expected a key name, got " + describe(key));
      continue;
    }
    const std::string& name = key.Scalar();
    if (!allows(section, name)) {
      if (section == Section::defaults && is_service_identity(name)) {
        error(key, "key " + quote(name) + " is not allowed in defaults");
      } else {
        error(key, "unknown key " + quote(name) + " " + std::string(in_section(section)));
      }
      continue;
    }
    if (const Entry* first = result.find(name)) {
      error(key, "duplicate key " + quote(name) + " " + std::string(in_section(section)) +
                     first_at(first->key.Mark()));
      continue;
    }
    result.add(Entry{name, key, pair.second});
  }
  return result;
}

// The entry for `name`, or nullptr after reporting it missing at the mapping.
const Entry* Loader::require(const Mapping& mapping, std::string_view name) {
  const Entry* entry = mapping.find(name);
  if (!entry) {
    error(mapping.node(),
          std::string(section_name(mapping.section())) + " is missing required key " + quote(name));
  }
  return entry;
}

// ---- Scalar values

std::optional<std::string> Loader::text(const Entry& entry) {
  if (entry.value.IsScalar()) return entry.value.Scalar();
  type_error(entry, "a scalar");
  return std::nullopt;
}

std::optional<uint64_t> Loader::integer(const Entry& entry, uint64_t min, uint64_t max) {
  const std::optional<std::string> value = text(entry);
  if (!value) return std::nullopt;
  const std::optional<uint64_t> number = parse_decimal(*value);
  if (number && *number >= min && *number <= max) return number;
  error(entry.value, "expected an integer from " + std::to_string(min) + " to " +
                         std::to_string(max) + ", got " + quote(*value));
  return std::nullopt;
}

// `auto` (0) or a thread count.
std::optional<unsigned> Loader::workers(const Entry& entry) {
  const std::optional<std::string> value = text(entry);
  if (!value) return std::nullopt;
  if (*value == "auto") return 0u;
  const std::optional<uint64_t> number = parse_decimal(*value);
  if (number && *number >= 1 && *number <= 256) return static_cast<unsigned>(*number);
  error(entry.value, "expected auto or an integer from 1 to 256, got " + quote(*value));
  return std::nullopt;
}

// Only `true` and `false`: yaml-cpp would also take yes/no/on/off/y/n.
std::optional<bool> Loader::boolean(const Entry& entry) {
  const std::optional<std::string> value = text(entry);
  if (!value) return std::nullopt;
  if (*value == "true") return true;
  if (*value == "false") return false;
  error(entry.value, "expected true or false, got " + quote(*value));
  return std::nullopt;
}

std::optional<Duration> Loader::duration(const Entry& entry, bool positive) {
  const std::optional<std::string> value = text(entry);
  if (!value) return std::nullopt;
  std::string message;
  const std::optional<Duration> result = parse_duration(*value, &message);
  if (!result) {
    error(entry.value, std::move(message));
    return std::nullopt;
  }
  if (positive && result->count() == 0) {
    error(entry.value, "expected a duration greater than 0, got " + quote(*value));
    return std::nullopt;
  }
  return result;
}

template <class E>
std::optional<E> Loader::choice(const Entry& entry, std::span<const Choice<E>> choices) {
  const std::optional<std::string> value = text(entry);
  if (!value) return std::nullopt;
  std::string expected;
  for (const Choice<E>& choice : choices) {
    if (choice.text == *value) return choice.value;
    expected += (expected.empty() ? "" : ", ") + std::string(choice.text);
  }
  error(entry.value, "expected one of " + expected + ", got " + quote(*value));
  return std::nullopt;
}

// A service or server name: letters, digits and the characters in `extra`.
std::optional<std::string> Loader::name(const Entry& entry, std::string_view what,
                                        std::string_view extra) {
  std::optional<std::string> value = text(entry);
  if (!value) return std::nullopt;
  if (is_name(*value, extra)) return value;
  std::string allowed;
  for (const char c : extra) allowed += std::string(" ") + c;
  error(entry.value, "invalid " + std::string(what) + " name " + quote(*value) +
                         ", expected letters, digits and" + allowed);
  return std::nullopt;
}

std::optional<SocketAddress> Loader::source(const Entry& entry) {
  const std::optional<std::string> value = text(entry);
  if (!value) return std::nullopt;
  AddressParse parsed = parse_ip_literal(*value);
  if (!parsed.error.empty()) {
    error(entry.value, std::move(parsed.error));
    return std::nullopt;
  }
  return parsed.addresses.front();
}

// ---- Sections

void Loader::parse_root(const YAML::Node& root, Config& config) {
  const std::optional<Mapping> top = mapping(item(root), Section::top, true);
  if (!top) return;
  if (const Entry* entry = top->find("global")) parse_global(*entry, config.global);
  if (const Entry* entry = top->find("stats")) parse_stats(*entry, config.stats);
  ServiceConfig defaults;
  if (const Entry* entry = top->find("defaults")) parse_defaults(*entry, defaults);
  if (const Entry* entry = require(*top, "services")) {
    config.services = parse_services(*entry, defaults);
  }
}

// The stats endpoint: one listen address (shared with no service) and an
// optional token file for the write API.
void Loader::parse_stats(const Entry& entry, StatsConfig& stats) {
  const std::optional<Mapping> m = mapping(entry, Section::stats, false);
  if (!m) return;
  stats.enabled = true;
  if (const Entry* e = require(*m, "listen")) {
    stats.listen_at = position_of(e->key);
    if (const std::optional<std::string> value = text(*e)) {
      AddressParse parsed = parse_address(*value);
      if (!parsed.error.empty()) {
        error(e->value, std::move(parsed.error));
      } else {
        stats.listen = parsed.addresses.front();
        const std::string printed = stats.listen.to_string();
        first_occurrence(listen_addresses_, printed, e->value, "listen address " + printed);
      }
    }
  }
  if (const Entry* e = m->find("admin_token_file")) {
    assign(stats.admin_token_file, text(*e));
    stats.admin_token_file_at = position_of(e->key);
  }
}

void Loader::parse_global(const Entry& entry, GlobalConfig& global) {
  const std::optional<Mapping> m = mapping(entry, Section::global, true);
  if (!m) return;
  if (const Entry* e = m->find("workers")) {
    assign(global.workers, workers(*e));
    global.workers_at = position_of(e->key);
  }
  if (const Entry* e = m->find("max_connections")) {
    assign(global.max_connections, integer(*e, 1, 10'000'000));
  }
  if (const Entry* e = m->find("shutdown_timeout")) assign(global.shutdown_timeout, duration(*e));
  if (const Entry* e = m->find("announce")) global.announce = announce(*e);
  if (const Entry* e = m->find("resolvers")) assign(global.resolvers, resolvers(*e));
  // Checked here so that --check catches a user or group the system does
  // not know.
  if (const Entry* e = m->find("user")) {
    assign(global.user, text(*e));
    global.user_at = position_of(e->key);
    if (!global.user.empty() && ::getpwnam(global.user.c_str()) == nullptr) {
      error(e->value, "unknown user " + quote(global.user));
    }
  }
  if (const Entry* e = m->find("group")) {
    assign(global.group, text(*e));
    if (!global.group.empty() && ::getgrnam(global.group.c_str()) == nullptr) {
      error(e->value, "unknown group " + quote(global.group));
    } else if (!global.group.empty() && global.user.empty()) {
      error(e->value, "group needs user: fulcrum drops to a user and, optionally, another group");
    }
  }
  if (const Entry* e = m->find("log_level")) {
    assign(global.log_level, choice<LogLevel>(*e, kLogLevels));
  }
  if (const Entry* e = m->find("access_log")) assign(global.access_log, boolean(*e));
}

// `defaults` is a service without identity or servers; every service starts
// as a copy of it.
void Loader::parse_defaults(const Entry& entry, ServiceConfig& defaults) {
  const std::optional<Mapping> m = mapping(entry, Section::defaults, true);
  if (m) apply_service_settings(*m, defaults);
}

// Applies the per-service settings written in `m` (a service or `defaults`)
// over those `service` already has. `timeouts` and `health_check` replace
// only the sub-keys they set.
void Loader::apply_service_settings(const Mapping& m, ServiceConfig& service) {
  if (const Entry* e = m.find("forwarding")) {
    assign(service.forwarding, choice<Forwarding>(*e, kForwardings));
    service.forwarding_at = position_of(e->key);
  }
  if (const Entry* e = m.find("protocol"))
    assign(service.protocol, choice<Protocol>(*e, kProtocols));
  if (const Entry* e = m.find("dsr")) service.dsr = dsr(*e);
  if (const Entry* e = m.find("scheduler")) {
    assign(service.scheduler, choice<SchedulerKind>(*e, kSchedulers));
  }
  if (const Entry* e = m.find("hash_key")) assign(service.hash_key, choice<HashKey>(*e, kHashKeys));
  if (const Entry* e = m.find("address_mode")) {
    assign(service.address_mode, choice<AddressMode>(*e, kAddressModes));
    service.address_mode_at = position_of(e->key);
  }
  if (const Entry* e = m.find("source")) assign(service.source, source(*e));
  if (const Entry* e = m.find("proxy_protocol")) {
    assign(service.proxy_protocol, choice<ProxyProtocol>(*e, kProxyProtocols));
  }
  if (const Entry* e = m.find("accept_proxy_protocol")) {
    assign(service.accept_proxy_protocol, proxy_trust(*e));
    service.accept_proxy_protocol.at = position_of(e->key);
  }
  if (const Entry* e = m.find("allow")) assign(service.allow, cidr_list(*e));
  if (const Entry* e = m.find("deny")) assign(service.deny, cidr_list(*e));
  if (const Entry* e = m.find("source_limits")) assign(service.source_limits, source_limits(*e));
  if (const Entry* e = m.find("timeouts")) apply_timeouts(*e, service);
  if (const Entry* e = m.find("retries")) assign(service.retries, integer(*e, 0, 10));
  if (const Entry* e = m.find("max_connections")) {
    assign(service.max_connections, integer(*e, 0, 10'000'000));
  }
  if (const Entry* e = m.find("max_lifetime")) assign(service.max_lifetime, duration(*e));
  if (const Entry* e = m.find("health_check")) apply_health_check(*e, service.health_check);
  if (const Entry* e = m.find("on_server_down")) {
    assign(service.on_server_down, choice<OnServerDown>(*e, kOnServerDown));
  }
  // Reported where either key is written here; when both come from
  // `defaults`, `defaults` reported it already.
  if (service.address_mode == AddressMode::transparent && service.source) {
    const Entry* at = m.find("source") ? m.find("source") : m.find("address_mode");
    if (at)
      error(at->value,
            "source is for address_mode snat: transparent connects from the client's address");
  }
  check_forwarding(m, service);
}

// The rules of the kernel modes, for the keys written in `m` (a service or
// `defaults`) against the forwarding in force there: a key inherited from
// `defaults` was judged there, or is ignored by a kernel service when
// `defaults` is written for proxy services (docs/configuration.md).
void Loader::check_forwarding(const Mapping& m, const ServiceConfig& service) {
  const Entry* forwarding = m.find("forwarding");
  const std::string mode(to_string(service.forwarding));
  if (const Entry* e = m.find("dsr"); e && service.forwarding != Forwarding::dsr) {
    error(e->key, "dsr is for forwarding dsr");
  }
  if (!in_kernel(service.forwarding)) {
    if (const Entry* e = m.find("protocol"); e && service.protocol == Protocol::udp) {
      error(e->value, "protocol udp needs forwarding nat, fullnat or dsr: the proxy relays TCP");
    }
    return;
  }
  for (const std::string_view key :
       {"address_mode", "proxy_protocol", "accept_proxy_protocol", "retries", "max_connections",
        "max_lifetime", "allow", "deny", "source_limits"}) {
    if (const Entry* e = m.find(key)) {
      error(e->key,
            std::string(key) + " is for forwarding proxy: " + std::string(*proxy_only_reason(key)));
    }
  }
  if (const Entry* e = m.find("timeouts"); e && e->value.IsMap()) {
    for (const auto& pair : e->value) {
      error(pair.first, "timeouts." + pair.first.Scalar() +
                            " is for forwarding proxy: the kernel's conntrack times a flow");
    }
  }
  const Entry* scheduler = m.find("scheduler");
  if ((scheduler || forwarding) && service.scheduler != SchedulerKind::rr &&
      service.scheduler != SchedulerKind::wrr && service.scheduler != SchedulerKind::maglev) {
    error(scheduler ? scheduler->value : forwarding->value,
          "scheduler " + std::string(to_string(service.scheduler)) +
              " does not work in forwarding " + mode +
              ": the kernel counts no connection per server; use rr, wrr or maglev");
  }
  if (const Entry* e = m.find("source"); e && service.forwarding != Forwarding::fullnat) {
    error(e->key,
          "source is for forwarding fullnat (or proxy): " + mode + " keeps the client's address");
  }
}

// `dsr: {ingress: IF, egress: IF, flows: N, flow_timeout: D}`; egress
// defaults to ingress.
std::optional<DsrConfig> Loader::dsr(const Entry& entry) {
  const std::optional<Mapping> m = mapping(entry, Section::dsr);
  if (!m) return std::nullopt;
  DsrConfig config;
  if (const Entry* e = require(*m, "ingress")) assign(config.ingress, interface_name(*e));
  if (const Entry* e = m->find("egress")) assign(config.egress, interface_name(*e));
  if (config.egress.empty()) config.egress = config.ingress;
  // Bounded so that a typo cannot pin gigabytes of kernel memory:
  // 16,777,216 flows are about 2 GB when full.
  if (const Entry* e = m->find("flows")) assign(config.flows, integer(*e, 1, 16'777'216));
  if (const Entry* e = m->find("flow_timeout")) assign(config.flow_timeout, duration(*e, true));
  return config;
}

// A list of address ranges (`[198.18.0.0/15, "2001:db8::/32"]`), at least
// one; each wrong item is reported at its place.
std::optional<std::vector<Cidr>> Loader::cidr_list(const Entry& entry) {
  if (!entry.value.IsSequence() || entry.value.size() == 0) {
    error(entry.value, entry.name + " must be a list of addresses or ranges like 198.18.0.0/15");
    return std::nullopt;
  }
  std::vector<Cidr> list;
  bool ok = true;
  for (const YAML::Node& node : entry.value) {
    const Entry one = item(node);
    const std::optional<std::string> value = text(one);
    if (!value) {
      ok = false;
      continue;
    }
    std::string problem;
    if (const std::optional<Cidr> cidr = parse_cidr(*value, problem)) {
      list.push_back(*cidr);
    } else {
      error(one.value, problem);
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return list;
}

// `true`, `false`, or the list of trusted senders.
std::optional<ProxyTrust> Loader::proxy_trust(const Entry& entry) {
  if (entry.value.IsSequence()) {
    std::optional<std::vector<Cidr>> senders = cidr_list(entry);
    if (!senders) return std::nullopt;
    return ProxyTrust{true, std::move(*senders), {}};
  }
  const std::optional<bool> enabled = boolean(entry);
  if (!enabled) return std::nullopt;
  return ProxyTrust{*enabled, {}, {}};
}

// `source_limits: {connections: N, rate: N/s}`, at least one of them.
std::optional<SourceLimits> Loader::source_limits(const Entry& entry) {
  const std::optional<Mapping> m = mapping(entry, Section::source_limits);
  if (!m) return std::nullopt;
  SourceLimits limits;
  if (const Entry* e = m->find("connections"))
    assign(limits.connections, integer(*e, 1, 10'000'000));
  if (const Entry* e = m->find("rate")) {
    const std::optional<std::string> value = text(*e);
    const std::optional<uint64_t> count = value && value->ends_with("/s")
                                              ? parse_decimal(value->substr(0, value->size() - 2))
                                              : std::nullopt;
    if (value && (!count || *count < 1 || *count > 1'000'000)) {
      error(e->value, "expected a rate like 50/s (1/s to 1000000/s), got " + quote(*value));
    } else if (count) {
      limits.rate = static_cast<uint32_t>(*count);
    }
  }
  if (limits.connections == 0 && limits.rate == 0) {
    if (!m->find("connections") && !m->find("rate"))
      error(entry.key, "source_limits sets neither connections nor rate");
    return std::nullopt;
  }
  return limits;
}

// `announce: {interface: IF, grace: D}`.
std::optional<AnnounceConfig> Loader::announce(const Entry& entry) {
  const std::optional<Mapping> m = mapping(entry, Section::announce);
  if (!m) return std::nullopt;
  AnnounceConfig config;
  if (const Entry* e = require(*m, "interface")) {
    assign(config.interface, interface_name(*e));
    config.interface_at = position_of(e->value);
  }
  if (const Entry* e = m->find("grace")) assign(config.grace, duration(*e));
  return config;
}

// A network interface's name as the kernel takes it (IFNAMSIZ).
std::optional<std::string> Loader::interface_name(const Entry& entry) {
  std::optional<std::string> value = text(entry);
  if (!value) return std::nullopt;
  const bool valid =
      !value->empty() && value->size() < 16 &&
      std::all_of(value->begin(), value->end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
      });
  if (!valid) {
    error(entry.value, "interface name " + quote(*value) +
                           " is not valid: 1 to 15 letters, digits, '-', '_' or '.'");
    return std::nullopt;
  }
  return value;
}

void Loader::apply_timeouts(const Entry& entry, ServiceConfig& service) {
  const std::optional<Mapping> m = mapping(entry, Section::timeouts, true);
  if (!m) return;
  if (const Entry* e = m->find("connect")) assign(service.connect_timeout, duration(*e, true));
  if (const Entry* e = m->find("idle")) assign(service.idle_timeout, duration(*e, true));
}

// `false`, `true` (checks with the settings inherited: those of `defaults`
// or the built-in ones), or a mapping that enables the check.
void Loader::apply_health_check(const Entry& entry, HealthCheckConfig& health_check) {
  if (entry.value.IsScalar() &&
      (entry.value.Scalar() == "false" || entry.value.Scalar() == "true")) {
    health_check.enabled = entry.value.Scalar() == "true";
    return;
  }
  if (!entry.value.IsMap()) {
    type_error(entry, "true, false or a mapping");
    return;
  }
  const std::size_t errors_before = errors_.size();
  const std::optional<Mapping> m = mapping(entry, Section::health_check);
  if (!m) return;
  health_check.enabled = true;
  const Entry* interval = m->find("interval");
  const Entry* timeout = m->find("timeout");
  if (interval) assign(health_check.interval, duration(*interval, true));
  if (timeout) assign(health_check.timeout, duration(*timeout, true));
  if (const Entry* e = m->find("rise")) assign(health_check.rise, integer(*e, 1, 100));
  if (const Entry* e = m->find("fall")) assign(health_check.fall, integer(*e, 1, 100));
  if (const Entry* e = m->find("port")) assign(health_check.port, integer(*e, 1, 65535));
  const Entry* send = m->find("send");
  const Entry* expect = m->find("expect");
  if (send) assign(health_check.send, text(*send));
  if (expect) {
    const std::optional<std::string> value = text(*expect);
    if (value && value->empty()) {
      error(expect->value, "health_check expect is empty: every reply would contain it");
    } else {
      assign(health_check.expect, value);
    }
  }
  if (const Entry* e = m->find("http")) {
    if (send || expect) {
      error(e->key, std::string("health_check http cannot be combined with ") +
                        (send ? "send" : "expect") + ": an HTTP check sends its own request");
    } else {
      health_check.http = http_check(*e);
    }
  }
  if (const Entry* e = m->find("agent"))
    health_check.agent = agent_check(*e, health_check.interval);
  // Only once every value here parsed; the pair may come partly from defaults.
  if (errors_.size() == errors_before && health_check.timeout > health_check.interval) {
    const Entry& at = timeout ? *timeout : interval ? *interval : entry;
    error(at.value, "health_check timeout (" + format_duration(health_check.timeout) +
                        ") must not be longer than its interval (" +
                        format_duration(health_check.interval) + ")");
  }
}

// A Host header or path: printable ASCII without spaces, so that it cannot
// break the request line or add a header.
std::optional<std::string> Loader::header_text(const Entry& entry, std::string_view what) {
  std::optional<std::string> value = text(entry);
  if (!value) return std::nullopt;
  const bool printable =
      std::all_of(value->begin(), value->end(), [](char c) { return c > ' ' && c < 0x7f; });
  if (value->empty() || !printable) {
    error(entry.value, "health_check.http " + std::string(what) +
                           " must be printable ASCII without spaces, got " + quote(*value));
    return std::nullopt;
  }
  return value;
}

std::optional<HttpCheckConfig> Loader::http_check(const Entry& entry) {
  const std::optional<Mapping> m = mapping(entry, Section::http_check, true);
  if (!m) return std::nullopt;
  HttpCheckConfig http;
  if (const Entry* e = m->find("path")) {
    const std::optional<std::string> path = header_text(*e, "path");
    if (path && !path->starts_with('/')) {
      error(e->value, "health_check.http path must start with /, got " + quote(*path));
    } else {
      assign(http.path, path);
    }
  }
  if (const Entry* e = m->find("host")) assign(http.host, header_text(*e, "host"));
  if (const Entry* e = m->find("status")) assign(http.statuses, statuses(*e));
  if (const Entry* e = m->find("tls")) assign(http.tls, boolean(*e));
  if (const Entry* e = m->find("verify")) {
    assign(http.verify, boolean(*e));
    if (http.verify && !http.tls) error(e->key, "health_check.http verify needs tls: true");
  }
  return http;
}

// `200`, `"200-399"`, or a list of those.
std::optional<std::vector<StatusRange>> Loader::statuses(const Entry& entry) {
  std::vector<Entry> items;
  if (entry.value.IsSequence()) {
    if (entry.value.size() == 0) {
      error(entry.value, "health_check.http status lists no status");
      return std::nullopt;
    }
    for (const YAML::Node& node : entry.value) items.push_back(item(node));
  } else {
    items.push_back(entry);
  }
  std::vector<StatusRange> ranges;
  bool ok = true;
  for (const Entry& one : items) {
    const std::optional<std::string> value = text(one);
    if (!value) {
      ok = false;
      continue;
    }
    const size_t dash = value->find('-');
    const std::optional<uint64_t> first = parse_decimal(value->substr(0, dash));
    const std::optional<uint64_t> last =
        dash == std::string::npos ? first : parse_decimal(value->substr(dash + 1));
    if (!first || !last || *first < 100 || *last > 599 || *first > *last) {
      error(one.value, "expected an HTTP status from 100 to 599 or a range like 200-399, got " +
                           quote(*value));
      ok = false;
      continue;
    }
    ranges.push_back({static_cast<uint16_t>(*first), static_cast<uint16_t>(*last)});
  }
  if (!ok) return std::nullopt;
  return ranges;
}

std::optional<AgentCheckConfig> Loader::agent_check(const Entry& entry, Duration interval) {
  const std::optional<Mapping> m = mapping(entry, Section::agent_check);
  if (!m) return std::nullopt;
  AgentCheckConfig agent;
  agent.interval = interval;
  if (const Entry* e = require(*m, "port")) assign(agent.port, integer(*e, 1, 65535));
  if (const Entry* e = m->find("interval")) assign(agent.interval, duration(*e, true));
  if (const Entry* e = m->find("send")) assign(agent.send, text(*e));
  return agent;
}

std::vector<ServiceConfig> Loader::parse_services(const Entry& entry,
                                                  const ServiceConfig& defaults) {
  std::vector<ServiceConfig> services;
  if (!entry.value.IsSequence()) {
    type_error(entry, "a list of services");
    return services;
  }
  if (entry.value.size() == 0) error(entry.value, "expected at least one service");
  for (const YAML::Node& node : entry.value) {
    if (std::optional<ServiceConfig> service = parse_service(item(node), defaults)) {
      services.push_back(std::move(*service));
    }
  }
  return services;
}

std::optional<ServiceConfig> Loader::parse_service(const Entry& entry,
                                                   const ServiceConfig& defaults) {
  const std::optional<Mapping> m = mapping(entry, Section::service);
  if (!m) return std::nullopt;
  ServiceConfig service = defaults;
  apply_service_settings(*m, service);
  if (const Entry* e = require(*m, "name")) {
    const std::optional<std::string> service_name = name(*e, "service", "_.-");
    if (service_name && first_occurrence(service_names_, *service_name, e->value,
                                         "service name " + quote(*service_name))) {
      service.name = *service_name;
    }
  }
  if (const Entry* e = require(*m, "listen")) {
    service.listen = parse_listen(*e, service.protocol);
    if (const std::optional<int> family = transparent_family(service);
        family && !std::all_of(service.listen.begin(), service.listen.end(),
                               [&](const SocketAddress& a) { return a.family() == *family; })) {
      error(e->value, in_kernel(service.forwarding)
                          ? "a service forwarded in the kernel listens on one address family: "
                            "the kernel rewrites an address only for one of its own family"
                          : "a transparent service listens on one address family: its "
                            "clients' addresses are the sources of its server connections");
    }
    if (in_kernel(service.forwarding)) check_virtual_addresses(*e, service);
  }
  if (service.forwarding == Forwarding::dsr && !service.dsr) {
    const Entry* at = m->find("forwarding");
    error(at ? at->value : entry.value,
          "forwarding dsr needs dsr.ingress: the interface where clients' packets for the "
          "virtual address arrive");
  }
  std::map<std::string, YAML::Mark> server_names;
  const Entry* routes = m->find("sni_routes");
  const Entry* discover = m->find("discover");
  // With routes, `servers` (the clients without a matching name) may be
  // left out; with discover, DNS gives them.
  if (const Entry* e = routes || discover ? m->find("servers") : require(*m, "servers"))
    service.servers = parse_servers(*e, service, server_names);
  if (discover) service.discover = discover_config(*discover);
  if (routes) parse_sni_routes(*routes, service, server_names);
  if (const Entry* e = m->find("sni_required")) {
    assign(service.sni_required, boolean(*e));
    if (service.sni_required && !routes && service.forwarding == Forwarding::proxy)
      error(e->key, "sni_required: true needs sni_routes (without them every client is closed)");
  }
  for (const char* key : {"sni_routes", "sni_required"}) {
    if (const Entry* e = m->find(key); e && service.forwarding != Forwarding::proxy) {
      error(e->key, std::string(key) +
                        " is for forwarding proxy: the kernel forwards packets without reading "
                        "them");
    }
  }
  return service;
}

// `discover: {name: _app._tcp.svc.test | app.svc.test:8080, interval,
// max_servers}`.
std::optional<DiscoverConfig> Loader::discover_config(const Entry& entry) {
  const std::optional<Mapping> m = mapping(entry, Section::discover);
  if (!m) return std::nullopt;
  DiscoverConfig config;
  bool valid = true;
  if (const Entry* e = require(*m, "name")) {
    const std::optional<std::string> value = text(*e);
    if (!value) return std::nullopt;
    std::string name = *value;
    const size_t colon = name.rfind(':');
    if (colon != std::string::npos) {
      const std::string port = name.substr(colon + 1);
      const bool digits =
          !port.empty() && port.size() <= 5 &&
          std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
      const unsigned long number = digits ? std::stoul(port) : 0;
      if (number < 1 || number > 65535) {
        error(e->value, "discover.name " + quote(*value) +
                            ": the port after ':' must be 1 to 65535 (NAME:PORT asks for A and "
                            "AAAA records; a name alone, for SRV records)");
        valid = false;
      }
      config.port = static_cast<uint16_t>(number);
      name.resize(colon);
    }
    if (name.ends_with('.')) name.pop_back();
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (valid && (name.starts_with("*.") || !is_sni_pattern(name))) {
      error(e->value, "discover.name " + quote(*value) +
                          " is not a DNS name (_app._tcp.svc.test, or app.svc.test:8080)");
      valid = false;
    }
    config.name = name;
  } else {
    valid = false;
  }
  if (const Entry* e = m->find("interval")) {
    const std::optional<Duration> interval = duration(*e, true);
    if (interval && *interval < Duration(1000)) {
      error(e->value,
            "discover.interval must be at least 1s (a DNS server asked more often is "
            "asked for nothing new)");
    } else {
      assign(config.interval, interval);
    }
  }
  if (const Entry* e = m->find("max_servers")) {
    const std::optional<uint64_t> max = integer(*e, 1, 10000);
    if (max) config.max_servers = static_cast<uint32_t>(*max);
  }
  if (!valid) return std::nullopt;
  return config;
}

// `global.resolvers`: DNS servers as IP addresses (never names: they are
// what names are resolved with), with a port or 53.
std::optional<std::vector<SocketAddress>> Loader::resolvers(const Entry& entry) {
  if (!entry.value.IsSequence() || entry.value.size() == 0) {
    error(entry.value,
          "resolvers must be a list of DNS servers' addresses, like [\"127.0.0.1:53\"]");
    return std::nullopt;
  }
  std::vector<SocketAddress> out;
  for (const YAML::Node& node : entry.value) {
    const Entry one = item(node);
    const std::optional<std::string> value = text(one);
    if (!value) continue;
    const std::string_view written = *value;
    std::string_view host = written;
    std::string_view port = "53";
    if (written.starts_with('[')) {
      const size_t close = written.find("]:");
      host = close == std::string_view::npos ? std::string_view() : written.substr(1, close - 1);
      port = close == std::string_view::npos ? std::string_view() : written.substr(close + 2);
    } else if (std::count(written.begin(), written.end(), ':') == 1) {
      host = written.substr(0, written.find(':'));
      port = written.substr(written.find(':') + 1);
    }
    const AddressParse parsed = parse_ip_literal(host);
    const bool digits =
        !port.empty() && port.size() <= 5 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    const unsigned long number = digits ? std::stoul(std::string(port)) : 0;
    if (!parsed.error.empty() || parsed.addresses.empty() || number < 1 || number > 65535) {
      error(one.value, "resolver " + quote(*value) +
                           " is not an IP address with an optional port (127.0.0.1, "
                           "127.0.0.1:5353, [::1]:53)");
      continue;
    }
    out.push_back(parsed.addresses.front().with_port(static_cast<uint16_t>(number)));
  }
  return out;
}

// `sni_routes: [{names: [...], servers: [...]}, ...]`: each route's servers
// join the service's, tagged with the route; a name may be in one route.
void Loader::parse_sni_routes(const Entry& entry, ServiceConfig& service,
                              std::map<std::string, YAML::Mark>& server_names) {
  if (!entry.value.IsSequence() || entry.value.size() == 0) {
    error(entry.value, "sni_routes must be a list of {names: [...], servers: [...]}");
    return;
  }
  std::map<std::string, YAML::Mark> route_names;
  for (const YAML::Node& node : entry.value) {
    const std::optional<Mapping> m = mapping(item(node), Section::sni_route);
    if (!m) continue;
    SniRoute route;
    if (const Entry* names = require(*m, "names")) {
      if (!names->value.IsSequence() || names->value.size() == 0) {
        error(names->value, "names must be a list of server names (api.test, *.apps.test)");
      } else {
        for (const YAML::Node& name_node : names->value) {
          const Entry one = item(name_node);
          const std::optional<std::string> value = text(one);
          if (!value) continue;
          std::string name = *value;
          std::transform(name.begin(), name.end(), name.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
          if (!is_sni_pattern(name)) {
            error(one.value, "server name " + quote(*value) +
                                 " is not a host name or *.host.name (one label per *)");
            continue;
          }
          if (first_occurrence(route_names, name, one.value, "server name " + name))
            route.names.push_back(name);
        }
      }
    }
    const size_t index = service.sni_routes.size();
    if (const Entry* servers = require(*m, "servers")) {
      for (ServerConfig& server : parse_servers(*servers, service, server_names)) {
        server.route = index;
        service.servers.push_back(std::move(server));
      }
    }
    service.sni_routes.push_back(std::move(route));
  }
}

// One address or a list of them. A host name listens on every address it
// resolves to; an address used twice, in any service, is an error (for UDP
// and TCP apart: DNS wants both on port 53).
std::vector<SocketAddress> Loader::parse_listen(const Entry& entry, Protocol protocol) {
  std::vector<Entry> items;
  if (entry.value.IsScalar()) {
    items.push_back(entry);
  } else if (entry.value.IsSequence()) {
    if (entry.value.size() == 0) error(entry.value, "expected at least one listen address");
    for (const YAML::Node& node : entry.value) items.push_back(item(node));
  } else {
    type_error(entry, "an address or a list of addresses");
  }

  std::vector<SocketAddress> addresses;
  for (const Entry& address_entry : items) {
    const std::optional<std::string> value = text(address_entry);
    if (!value) continue;
    AddressParse parsed = parse_address(*value);
    if (!parsed.error.empty()) error(address_entry.value, std::move(parsed.error));
    for (const SocketAddress& address : parsed.addresses) {
      const std::string printed = address.to_string();
      const std::string key = protocol == Protocol::udp ? "udp " + printed : printed;
      if (first_occurrence(listen_addresses_, key, address_entry.value,
                           "listen address " + printed)) {
        addresses.push_back(address);
      }
    }
  }
  return addresses;
}

// Kernel modes match packets by destination: a listen address names one
// address and port (the VIP), never the wildcard.
void Loader::check_virtual_addresses(const Entry& entry, const ServiceConfig& service) {
  for (const SocketAddress& address : service.listen) {
    if (address.is_wildcard()) {
      error(entry.value, "forwarding " + std::string(to_string(service.forwarding)) +
                             " needs a virtual address, not " + address.to_string() +
                             ": the kernel matches packets by their destination");
    }
  }
}

std::vector<ServerConfig> Loader::parse_servers(const Entry& entry, const ServiceConfig& service,
                                                std::map<std::string, YAML::Mark>& names) {
  std::vector<ServerConfig> servers;
  if (!entry.value.IsSequence()) {
    type_error(entry, "a list of servers");
    return servers;
  }
  if (entry.value.size() == 0) error(entry.value, "expected at least one server");
  for (const YAML::Node& node : entry.value) {
    if (std::optional<ServerConfig> server = parse_server(item(node), service, names)) {
      servers.push_back(std::move(*server));
    }
  }
  return servers;
}

// One server of `service`; `names` holds the server names already used in it.
std::optional<ServerConfig> Loader::parse_server(const Entry& entry, const ServiceConfig& service,
                                                 std::map<std::string, YAML::Mark>& names) {
  const std::optional<Mapping> m = mapping(entry, Section::server);
  if (!m) return std::nullopt;
  ServerConfig server;
  const Entry* name_entry = m->find("name");
  if (const Entry* e = require(*m, "address")) {
    const std::optional<SocketAddress> address = server_address(*e, service);
    if (address) {
      server.address_text = e->value.Scalar();
      server.address = *address;
      // The name defaults to the address as written, so that must be a
      // valid and unique name too.
      if (!name_entry) name_entry = e;
    }
  }
  if (name_entry) {
    const std::optional<std::string> server_name = name(*name_entry, "server", "_.:[]-");
    if (server_name && first_occurrence(names, *server_name, name_entry->value,
                                        "server name " + quote(*server_name))) {
      server.name = *server_name;
    }
  }
  if (const Entry* e = m->find("weight")) assign(server.weight, integer(*e, 0, kMaxWeight));
  if (const Entry* e = m->find("max_connections")) {
    assign(server.max_connections, integer(*e, 0, 10'000'000));
    if (in_kernel(service.forwarding)) {
      error(e->key,
            "max_connections is for forwarding proxy: the kernel counts no session "
            "per server to limit");
    }
  }
  if (service.forwarding == Forwarding::dsr && server.address.port() != 0 &&
      !service.listen.empty() && server.address.port() != service.listen.front().port()) {
    error(m->find("address")->value,
          "in forwarding dsr a server gets the client's packet unchanged: its port must be "
          "the listen port " +
              std::to_string(service.listen.front().port()));
  }
  if (const Entry* e = m->find("backup")) assign(server.backup, boolean(*e));
  if (const Entry* e = m->find("slow_start")) assign(server.slow_start, duration(*e));
  return server;
}

// The server's first resolved address, or the first one of the family the
// service needs (server_family).
std::optional<SocketAddress> Loader::server_address(const Entry& entry,
                                                    const ServiceConfig& service) {
  const std::optional<std::string> value = text(entry);
  if (!value) return std::nullopt;
  AddressParse parsed = parse_address(*value);
  if (!parsed.error.empty()) {
    error(entry.value, std::move(parsed.error));
    return std::nullopt;
  }
  const std::optional<int> family =
      service.source ? std::optional<int>(service.source->family()) : transparent_family(service);
  if (!family) return parsed.addresses.front();
  for (const SocketAddress& address : parsed.addresses) {
    if (address.family() == *family) return address;
  }
  const std::string reason =
      service.source ? "to match source " + service.source->host_string()
      : in_kernel(service.forwarding)
          ? "to match the virtual address " + service.listen.front().to_string()
          : "to match the client addresses of transparent listen " +
                service.listen.front().to_string();
  error(entry.value, "server address " + quote(*value) + " has no " +
                         std::string(family_name(*family)) + " address " + reason);
  return std::nullopt;
}

// ---- Entry point

ConfigLoad Loader::load(std::string_view text) {
  Config config;
  config.path = file_;
  const std::string yaml(text);
  try {
    check_single_document(yaml);
    if (errors_.empty()) parse_root(YAML::Load(yaml), config);
  } catch (const YAML::DeepRecursion& e) {
    error(e.mark,
          "invalid YAML: nested more than " + std::to_string(e.depth() - 1) + " levels deep");
  } catch (const YAML::Exception& e) {
    std::string message = "invalid YAML: " + escape(e.msg);
    if (const std::optional<std::string> address = unquoted_ipv6_on_line(yaml, e.mark)) {
      message += " (an [IPv6]:PORT address must be quoted: \"" + *address + "\")";
    }
    error(e.mark, std::move(message));
  }

  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  ConfigLoad result;
  result.errors = std::move(errors_);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

}  // namespace

std::string_view to_string(SchedulerKind kind) {
  return choice_text<SchedulerKind>(kSchedulers, kind);
}

std::string_view to_string(Forwarding forwarding) {
  return choice_text<Forwarding>(kForwardings, forwarding);
}

std::string_view to_string(Protocol protocol) {
  return choice_text<Protocol>(kProtocols, protocol);
}

std::string ConfigError::to_string() const {
  if (line == 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

ConfigError config_error(const Config& config, Position at, std::string message) {
  return ConfigError{config.path, at.line, at.column, std::move(message)};
}

ConfigLoad load_config_text(std::string_view text, const std::string& file_name) {
  return Loader(file_name).load(text);
}

std::optional<std::string> read_config_file(const std::string& path, ConfigLoad& failed) {
  const auto fail = [&path, &failed](int error_number) {
    failed.errors.push_back(ConfigError{
        path, 1, 1, "cannot read configuration: " + std::string(std::strerror(error_number))});
    return std::nullopt;
  };
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                             &std::fclose);
  if (!file) return fail(errno);
  std::string text;
  char buffer[65536];
  std::size_t count = 0;
  while ((count = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) text.append(buffer, count);
  if (std::ferror(file.get())) return fail(errno);
  return text;
}

ConfigLoad load_config_file(const std::string& path) {
  ConfigLoad failed;
  const std::optional<std::string> text = read_config_file(path, failed);
  if (!text) return failed;
  return load_config_text(*text, path);
}

}  // namespace fulcrum
