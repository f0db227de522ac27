#include "fulcrum/upgrade_state.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>

namespace fulcrum {

namespace {

constexpr std::string_view kMagic = "FULCRUM-UPGRADE\n";

// Writes each field in a fixed width, little-endian as the machine is (the
// blob never leaves the host that wrote it).
class Writer {
 public:
  template <typename T>
  requires std::is_arithmetic_v<T> || std::is_enum_v<T>
  void operator()(const T& value) {
    out_.append(reinterpret_cast<const char*>(&value), sizeof value);
  }
  void operator()(const std::string& text) {
    (*this)(static_cast<uint64_t>(text.size()));
    out_ += text;
  }
  void operator()(const SocketAddress& address) {
    (*this)(static_cast<uint32_t>(address.length));
    out_.append(reinterpret_cast<const char*>(&address.storage), address.length);
  }
  template <typename T>
  void operator()(const std::optional<T>& value) {
    (*this)(value.has_value());
    if (value) (*this)(*value);
  }
  template <typename T>
  void operator()(const std::vector<T>& items) {
    (*this)(static_cast<uint64_t>(items.size()));
    for (const T& item : items) (*this)(item);
  }
  template <typename T>
  requires std::is_class_v<T>
  void operator()(const T& record) { visit(*this, record); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads what Writer wrote; throws std::runtime_error with the reason at the
// first field that does not fit.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  template <typename T>
  requires std::is_arithmetic_v<T> || std::is_enum_v<T>
  void operator()(T& value) { take(&value, sizeof value); }
  void operator()(bool& value) {
    uint8_t byte = 0;
    take(&byte, 1);
    if (byte > 1) throw std::runtime_error("a flag is neither 0 nor 1");
    value = byte == 1;
  }
  void operator()(std::string& text) {
    uint64_t size = 0;
    (*this)(size);
    if (size > in_.size()) throw std::runtime_error("a text runs past the end");
    text.assign(in_.substr(0, size));
    in_.remove_prefix(size);
  }
  void operator()(SocketAddress& address) {
    uint32_t length = 0;
    (*this)(length);
    if (length > sizeof address.storage) throw std::runtime_error("an address is too long");
    take(&address.storage, length);
    address.length = length;
    const bool v4 = address.family() == AF_INET && length == sizeof(sockaddr_in);
    const bool v6 = address.family() == AF_INET6 && length == sizeof(sockaddr_in6);
    if (!v4 && !v6) throw std::runtime_error("an address is neither IPv4 nor IPv6");
  }
  template <typename T>
  void operator()(std::optional<T>& value) {
    bool present = false;
    (*this)(present);
    value.reset();
    if (present) (*this)(value.emplace());
  }
  template <typename T>
  void operator()(std::vector<T>& items) {
    uint64_t count = 0;
    (*this)(count);
    // Every element takes at least a byte: a count beyond the bytes left
    // is a lie, and is not allocated for.
    if (count > in_.size()) throw std::runtime_error("a list runs past the end");
    items.resize(count);
    for (T& item : items) (*this)(item);
  }
  template <typename T>
  requires std::is_class_v<T>
  void operator()(T& record) { visit(*this, record); }
  bool at_end() const { return in_.empty(); }

 private:
  void take(void* to, size_t size) {
    if (size > in_.size()) throw std::runtime_error("truncated");
    std::memcpy(to, in_.data(), size);
    in_.remove_prefix(size);
  }
  std::string_view in_;
};

template <typename IO, typename L>
requires std::is_same_v<std::remove_const_t<L>, CarriedListener>
void visit(IO& io, L& l) {
  io(l.address);
  io(l.worker);
  io(l.fd);
}

template <typename IO, typename D>
requires std::is_same_v<std::remove_const_t<D>, CarriedDirection>
void visit(IO& io, D& d) {
  io(d.pipe_read);
  io(d.pipe_write);
  io(d.pipe_capacity);
  io(d.pipe_bytes);
  io(d.eof);
  io(d.done);
  io(d.splicing);
  io(d.watching_sink);
  io(d.bytes);
}

template <typename IO, typename S>
requires std::is_same_v<std::remove_const_t<S>, CarriedSession>
void visit(IO& io, S& s) {
  io(s.worker);
  io(s.service);
  io(s.server);
  io(s.phase);
  io(s.client_fd);
  io(s.server_fd);
  io(s.client_address);
  io(s.peer_address);
  io(s.source_counted);
  io(s.group);
  io(s.pending);
  io(s.started_ns);
  io(s.last_activity_ns);
  io(s.connect_started_ns);
  io(s.lifetime_end_ns);
  io(s.last_publish_ns);
  io(s.deadline_ns);
  io(s.published_in);
  io(s.published_out);
  io(s.failed_servers);
  io(s.attempt);
  io(s.last_failure);
  io(s.first_close);
  io(s.c2s);
  io(s.s2c);
}

template <typename IO, typename S>
requires std::is_same_v<std::remove_const_t<S>, CarriedService>
void visit(IO& io, S& s) {
  io(s.name);
  for (auto* counter :
       {&s.total, &s.rejected, &s.proxy_header_errors, &s.denied, &s.limited, &s.bytes_in,
        &s.bytes_out, &s.local_errors, &s.packets_in, &s.packets_out, &s.packets_not_remembered})
    io(*counter);
}

template <typename IO, typename S>
requires std::is_same_v<std::remove_const_t<S>, CarriedServer>
void visit(IO& io, S& s) {
  io(s.service);
  io(s.name);
  io(s.status);
  io(s.admin);
  io(s.healthy);
  io(s.assigned_weight);
  io(s.weight_by_operator);
  io(s.up_since_ns);
  io(s.last_change_ns);
  io(s.last_error);
  io(s.last_error_ns);
  io(s.health_streak);
  io(s.agent.says_down);
  io(s.agent.down_reason);
  io(s.agent.admin);
  io(s.agent.weight_percent);
  io(s.agent.max_connections);
  io(s.agent.reply);
  io(s.agent.reply_ns);
  io(s.agent.error);
  for (auto* counter :
       {&s.total, &s.connect_failures, &s.connects, &s.connect_time_us, &s.bytes_in, &s.bytes_out,
        &s.checks_failed, &s.local_errors, &s.closed_on_down, &s.packets_in, &s.packets_out})
    io(*counter);
}

template <typename IO, typename D>
requires std::is_same_v<std::remove_const_t<D>, DiscoveredServer>
void visit(IO& io, D& d) {
  io(d.name);
  io(d.address);
  io(d.weight);
  io(d.backup);
}

template <typename IO, typename D>
requires std::is_same_v<std::remove_const_t<D>, CarriedDiscovery>
void visit(IO& io, D& d) {
  io(d.service);
  io(d.status.query);
  io(d.status.current);
  io(d.status.departing);
  io(d.status.errors);
  int64_t last_success = d.status.last_success ? d.status.last_success->time_since_epoch().count()
                                               : std::numeric_limits<int64_t>::min();
  io(last_success);
  if constexpr (!std::is_const_v<D>) {
    d.status.last_success.reset();
    if (last_success != std::numeric_limits<int64_t>::min())
      d.status.last_success =
          std::chrono::system_clock::time_point(std::chrono::system_clock::duration(last_success));
  }
  io(d.status.last_error);
}

template <typename IO, typename U>
requires std::is_same_v<std::remove_const_t<U>, UpgradeState>
void visit(IO& io, U& u) {
  io(u.from_version);
  io(u.generation);
  io(u.upgrades);
  io(u.started_ns);
  io(u.started_wall_ns);
  io(u.reloads_succeeded);
  io(u.reloads_failed);
  io(u.stats_fd);
  io(u.listeners);
  io(u.services);
  io(u.servers);
  io(u.discoveries);
  io(u.sessions);
}

// What the typed reads cannot see: enums and descriptors in range.
std::string out_of_range(const UpgradeState& state) {
  const auto bad_fd = [](int fd) { return fd < -1; };
  if (bad_fd(state.stats_fd)) return "a descriptor is negative";
  for (const CarriedListener& listener : state.listeners) {
    if (listener.fd < 0) return "a listener has no descriptor";
  }
  for (const CarriedServer& server : state.servers) {
    if (server.status > ServerStatus::maint || server.admin > AdminState::maint ||
        server.agent.admin > AdminState::maint)
      return "a server state is unknown";
  }
  for (const CarriedSession& session : state.sessions) {
    if (session.phase > CarriedPhase::relaying) return "a session phase is unknown";
    if (session.client_fd < 0 || bad_fd(session.server_fd)) return "a session descriptor is bad";
    for (const CarriedDirection* d : {&session.c2s, &session.s2c}) {
      if (bad_fd(d->pipe_read) || bad_fd(d->pipe_write) ||
          (d->pipe_read < 0) != (d->pipe_write < 0))
        return "a session pipe is bad";
      if (d->pipe_bytes > d->pipe_capacity) return "a session pipe holds more than it can";
    }
  }
  return {};
}

}  // namespace

std::string encode_upgrade_state(const UpgradeState& state) {
  Writer writer;
  for (char c : kMagic) writer(c);
  writer(kUpgradeStateVersion);
  writer(state);
  return writer.take();
}

UpgradeStateRead decode_upgrade_state(std::string_view blob) {
  if (!blob.starts_with(kMagic)) return {std::nullopt, "not an upgrade state"};
  Reader reader(blob.substr(kMagic.size()));
  try {
    uint32_t version = 0;
    reader(version);
    if (version != kUpgradeStateVersion)
      return {std::nullopt, "state version " + std::to_string(version) + ", this build reads " +
                                std::to_string(kUpgradeStateVersion)};
    UpgradeState state;
    reader(state);
    if (!reader.at_end()) return {std::nullopt, "bytes after the end"};
    if (std::string error = out_of_range(state); !error.empty()) return {std::nullopt, error};
    return {std::move(state), {}};
  } catch (const std::runtime_error& error) {
    return {std::nullopt, error.what()};
  }
}

std::vector<int> carried_descriptors(const UpgradeState& state) {
  std::vector<int> fds;
  if (state.stats_fd >= 0) fds.push_back(state.stats_fd);
  for (const CarriedListener& listener : state.listeners) fds.push_back(listener.fd);
  for (const CarriedSession& session : state.sessions) {
    for (int fd : {session.client_fd, session.server_fd, session.c2s.pipe_read,
                   session.c2s.pipe_write, session.s2c.pipe_read, session.s2c.pipe_write}) {
      if (fd >= 0) fds.push_back(fd);
    }
  }
  return fds;
}

}  // namespace fulcrum
