#include "fulcrum/source_table.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace fulcrum {

void SourceTable::set_limits(uint32_t connections, uint32_t rate) {
  connections_.store(connections, std::memory_order_relaxed);
  rate_.store(rate, std::memory_order_relaxed);
}

size_t SourceTable::KeyHash::operator()(const Key& key) const {
  // splitmix64's finaliser: the low bits of an address alone are poor.
  uint64_t h = key.prefix ^ (key.v6 ? 0x9e3779b97f4a7c15ULL : 0);
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return static_cast<size_t>(h ^ (h >> 31));
}

SourceTable::Key SourceTable::key_of(const SocketAddress& client) {
  Key key;
  if (client.family() == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(client.storage);
    std::memcpy(&key.prefix, in6.sin6_addr.s6_addr, 8);
    key.v6 = true;
  } else {
    const auto& in4 = reinterpret_cast<const sockaddr_in&>(client.storage);
    key.prefix = in4.sin_addr.s_addr;
  }
  return key;
}

void SourceTable::refill(Entry& entry, uint32_t rate, Clock::time_point now) {
  if (rate == 0) return;
  const double seconds = std::chrono::duration<double>(now - entry.refilled).count();
  entry.tokens = std::min(static_cast<double>(rate), entry.tokens + seconds * rate);
  entry.refilled = now;
}

bool SourceTable::make_room(Shard& shard, uint32_t rate, Clock::time_point now) {
  constexpr size_t kPerShard = kSourceTableClients / kShards;
  if (shard.entries.size() < kPerShard) return true;
  // Full: drop every client that no longer matters (no open session, its
  // bucket full again). A scan of one shard, only when it is full.
  for (auto it = shard.entries.begin(); it != shard.entries.end();) {
    Entry& entry = it->second;
    refill(entry, rate, now);
    const bool idle = entry.open == 0 && (rate == 0 || entry.tokens >= rate);
    it = idle ? shard.entries.erase(it) : std::next(it);
  }
  return shard.entries.size() < kPerShard;
}

SourceTable::Verdict SourceTable::admit(const SocketAddress& client, Clock::time_point now) {
  const uint32_t connections = connections_.load(std::memory_order_relaxed);
  const uint32_t rate = rate_.load(std::memory_order_relaxed);
  const Key key = key_of(client);
  Shard& shard = shard_of(key);
  const std::lock_guard lock(shard.mutex);
  auto found = shard.entries.find(key);
  if (found == shard.entries.end()) {
    if (!make_room(shard, rate, now)) return Verdict::untracked;
    found = shard.entries.emplace(key, Entry{0, static_cast<double>(rate), now}).first;
  }
  Entry& entry = found->second;
  refill(entry, rate, now);
  if (connections != 0 && entry.open >= connections) return Verdict::over_connections;
  if (rate != 0) {
    if (entry.tokens < 1) return Verdict::over_rate;
    entry.tokens -= 1;
  }
  ++entry.open;
  return Verdict::admitted;
}

void SourceTable::count_carried(const SocketAddress& client) {
  const Key key = key_of(client);
  Shard& shard = shard_of(key);
  const std::lock_guard lock(shard.mutex);
  const auto now = Clock::now();
  auto found = shard.entries.find(key);
  if (found == shard.entries.end()) {
    if (!make_room(shard, rate_.load(std::memory_order_relaxed), now)) return;
    found = shard.entries.emplace(key, Entry{0, 0.0, now}).first;
  }
  ++found->second.open;
}

void SourceTable::release(const SocketAddress& client) {
  const Key key = key_of(client);
  Shard& shard = shard_of(key);
  const std::lock_guard lock(shard.mutex);
  const auto found = shard.entries.find(key);
  if (found == shard.entries.end() || found->second.open == 0) return;
  // Without a rate, a client with no open session is worth nothing.
  if (--found->second.open == 0 && rate_.load(std::memory_order_relaxed) == 0)
    shard.entries.erase(found);
}

size_t SourceTable::size() const {
  size_t total = 0;
  for (const Shard& shard : shards_) {
    const std::lock_guard lock(shard.mutex);
    total += shard.entries.size();
  }
  return total;
}

}  // namespace fulcrum
