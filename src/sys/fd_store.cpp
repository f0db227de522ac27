#include "fulcrum/fd_store.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <set>

namespace fulcrum {

namespace {

constexpr std::string_view kListenerPrefix = "listen_";
constexpr std::string_view kStatsPrefix = "stats_";
// More than any unit's FileDescriptorStoreMax= could sensibly be: a
// LISTEN_FDS beyond it is garbage, not descriptors.
constexpr long kMaxPassedFds = 1 << 20;

template <typename Number>
std::optional<Number> parse_decimal(std::string_view text) {
  Number value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// `HOST_PORT`: the address as inet_ntop writes it, ':' turned into '-'.
std::string address_part(const SocketAddress& address) {
  char host[INET6_ADDRSTRLEN] = {};
  std::string text;
  if (address.family() == AF_INET) {
    const auto& ipv4 = reinterpret_cast<const sockaddr_in&>(address.storage);
    if (::inet_ntop(AF_INET, &ipv4.sin_addr, host, sizeof host) != nullptr) text = host;
  } else if (address.family() == AF_INET6) {
    const auto& ipv6 = reinterpret_cast<const sockaddr_in6&>(address.storage);
    if (::inet_ntop(AF_INET6, &ipv6.sin6_addr, host, sizeof host) != nullptr) text = host;
    std::replace(text.begin(), text.end(), ':', '-');
    if (ipv6.sin6_scope_id != 0) text += "%" + std::to_string(ipv6.sin6_scope_id);
  }
  return text + "_" + std::to_string(address.port());
}

// The inverse of address_part; the caller checks that it is the canonical
// spelling by writing it again.
std::optional<SocketAddress> parse_address_part(std::string_view text) {
  const size_t separator = text.rfind('_');
  if (separator == std::string_view::npos) return std::nullopt;
  const auto port = parse_decimal<uint16_t>(text.substr(separator + 1));
  if (!port || *port == 0) return std::nullopt;
  std::string host(text.substr(0, separator));
  SocketAddress address;
  sockaddr_in ipv4{};
  if (::inet_pton(AF_INET, host.c_str(), &ipv4.sin_addr) == 1) {
    ipv4.sin_family = AF_INET;
    ipv4.sin_port = htons(*port);
    std::memcpy(&address.storage, &ipv4, sizeof ipv4);
    address.length = sizeof ipv4;
    return address;
  }
  sockaddr_in6 ipv6{};
  if (const size_t percent = host.find('%'); percent != std::string::npos) {
    const auto scope = parse_decimal<uint32_t>(std::string_view(host).substr(percent + 1));
    if (!scope) return std::nullopt;
    ipv6.sin6_scope_id = *scope;
    host.resize(percent);
  }
  if (host.find(':') != std::string::npos) return std::nullopt;
  std::replace(host.begin(), host.end(), '-', ':');
  if (::inet_pton(AF_INET6, host.c_str(), &ipv6.sin6_addr) != 1) return std::nullopt;
  ipv6.sin6_family = AF_INET6;
  ipv6.sin6_port = htons(*port);
  std::memcpy(&address.storage, &ipv6, sizeof ipv6);
  address.length = sizeof ipv6;
  return address;
}

int socket_option(int fd, int option) {
  int value = 0;
  socklen_t length = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, option, &value, &length) != 0) return -1;
  return value;
}

// Whether `fd` is what its name says: a listening TCP socket bound to
// `address`. A name alone is not trusted: whatever sat in the store under
// it, the workers would accept on.
bool listens_on(int fd, const SocketAddress& address) {
  if (socket_option(fd, SO_ACCEPTCONN) != 1 || socket_option(fd, SO_TYPE) != SOCK_STREAM ||
      socket_option(fd, SO_PROTOCOL) != IPPROTO_TCP)
    return false;
  SocketAddress bound;
  bound.length = sizeof bound.storage;
  if (::getsockname(fd, bound.sockaddr_ptr(), &bound.length) != 0) return false;
  return bound == address;
}

std::vector<std::string> split_names(std::string_view text) {
  std::vector<std::string> names;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(':', start);
    names.emplace_back(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return names;
    start = end + 1;
  }
}

std::string take_variable(const char* name) {
  const char* value = std::getenv(name);
  std::string text = value != nullptr ? value : "";
  ::unsetenv(name);
  return text;
}

}  // namespace

std::string listener_fd_name(const SocketAddress& address, uint32_t worker) {
  return std::string(kListenerPrefix) + address_part(address) + "_w" + std::to_string(worker);
}

std::string stats_fd_name(const SocketAddress& address) {
  return std::string(kStatsPrefix) + address_part(address);
}

std::optional<StoredName> parse_fd_name(std::string_view name) {
  StoredName parsed;
  if (name.starts_with(kStatsPrefix)) {
    const auto address = parse_address_part(name.substr(kStatsPrefix.size()));
    if (!address) return std::nullopt;
    parsed.kind = StoredName::Kind::stats;
    parsed.address = *address;
    if (stats_fd_name(parsed.address) != name) return std::nullopt;
    return parsed;
  }
  if (!name.starts_with(kListenerPrefix)) return std::nullopt;
  const size_t separator = name.rfind("_w");
  if (separator == std::string_view::npos || separator < kListenerPrefix.size())
    return std::nullopt;
  const auto worker = parse_decimal<uint32_t>(name.substr(separator + 2));
  const auto address =
      parse_address_part(name.substr(kListenerPrefix.size(), separator - kListenerPrefix.size()));
  if (!worker || !address) return std::nullopt;
  parsed.address = *address;
  parsed.worker = *worker;
  if (listener_fd_name(parsed.address, parsed.worker) != name) return std::nullopt;
  return parsed;
}

StoredFds take_stored_fds(int first_fd) {
  const std::string pid = take_variable("LISTEN_PID");
  const std::string count = take_variable("LISTEN_FDS");
  const std::string names = take_variable("LISTEN_FDNAMES");
  StoredFds stored;
  const auto for_pid = parse_decimal<pid_t>(pid);
  const auto passed = parse_decimal<long>(count);
  if (!for_pid || *for_pid != ::getpid() || !passed || *passed <= 0 || *passed > kMaxPassedFds)
    return stored;
  const int last = first_fd + static_cast<int>(*passed);
  // Without a name for each we cannot tell which is which: close them all.
  const std::vector<std::string> passed_names = split_names(names);
  const bool named = static_cast<long>(passed_names.size()) == *passed;
  for (int fd = first_fd; fd < last; ++fd) {
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) continue;  // not open after all
    if (!named) {
      ::close(fd);
      continue;
    }
    const std::string& name = passed_names[fd - first_fd];
    stored.names.push_back(name);
    const auto parsed = parse_fd_name(name);
    const bool usable = parsed && listens_on(fd, parsed->address) &&
                        (parsed->kind == StoredName::Kind::listener || !stored.stats);
    // The file status flags are shared with systemd's duplicate: they are
    // the old process's (non-blocking), but nothing else guarantees that.
    const int flags = usable ? ::fcntl(fd, F_GETFL) : -1;
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
      ::close(fd);
      stored.discarded.push_back(name);
      continue;
    }
    const CarriedListener listener{parsed->address, parsed->worker, fd};
    if (parsed->kind == StoredName::Kind::stats) {
      stored.stats = listener;
    } else {
      stored.listeners.push_back(listener);
    }
  }
  return stored;
}

FdStore::FdStore(const Notifier& notifier, size_t capacity)
    : notifier_(notifier), capacity_(capacity) {}

size_t FdStore::capacity_from_environment() {
  const char* text = std::getenv("FDSTORE");
  if (text == nullptr) return 0;
  return parse_decimal<size_t>(text).value_or(0);
}

size_t FdStore::begin(const std::vector<StoreEntry>& entries, const std::vector<std::string>& stale,
                      const std::vector<std::string>& discarded) {
  if (!enabled()) return 0;
  std::set<std::string> kept;
  for (const StoreEntry& entry : entries) {
    if (entry.stored) kept.insert(entry.name);
  }
  for (const std::string& name : discarded) kept.erase(name);
  std::set<std::string> removed;
  for (const auto* names : {&stale, &discarded}) {
    for (const std::string& name : *names) {
      if (!kept.contains(name) && removed.insert(name).second) notifier_.remove_stored_fd(name);
    }
  }
  // What stays takes its places first; the rest follows in order.
  std::vector<const StoreEntry*> to_store;
  for (const StoreEntry& entry : entries) {
    if (entry.stored && kept.contains(entry.name)) {
      ++stored_[entry.name];
      ++size_;
    } else {
      to_store.push_back(&entry);
    }
  }
  size_t left_out = 0;
  for (const StoreEntry* entry : to_store) left_out += store(*entry) ? 0 : 1;
  return left_out;
}

size_t FdStore::add(const std::vector<StoreEntry>& entries) {
  if (!enabled()) return 0;
  size_t left_out = 0;
  for (const StoreEntry& entry : entries) left_out += store(entry) ? 0 : 1;
  return left_out;
}

void FdStore::remove_if(const std::function<bool(const StoredName&)>& gone) {
  std::vector<std::string> names;
  for (const auto& [name, count] : stored_) {
    const auto parsed = parse_fd_name(name);
    if (parsed && gone(*parsed)) names.push_back(name);
  }
  for (const std::string& name : names) remove(name);
}

void FdStore::remove_all() {
  for (const auto& [name, count] : stored_) notifier_.remove_stored_fd(name);
  stored_.clear();
  size_ = 0;
}

bool FdStore::store(const StoreEntry& entry) {
  if (size_ >= capacity_ || !notifier_.store_fd(entry.name, entry.fd)) return false;
  ++stored_[entry.name];
  ++size_;
  return true;
}

void FdStore::remove(const std::string& name) {
  notifier_.remove_stored_fd(name);
  if (const auto it = stored_.find(name); it != stored_.end()) {
    size_ -= it->second;
    stored_.erase(it);
  }
}

}  // namespace fulcrum
