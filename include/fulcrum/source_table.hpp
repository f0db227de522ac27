// source_limits (SPEC.md "At the edge"): per client of one service, its
// concurrent sessions and a token bucket of new ones, shared by every
// worker. A client is an IPv4 address or an IPv6 /64 (one host's share of
// a typical allocation).
//
// Bounded: at most kSourceTableClients clients per service, about 64 bytes
// each with the hash table's own (4 MiB when full). A client with no open
// session whose bucket is full again carries no information and is evicted
// when room is needed; when every entry still matters (65,536 clients with
// open sessions or recent bursts), a new client is admitted untracked
// (Verdict::untracked) rather than refused: a table filled by many sources
// must not lock out everyone else (HAProxy's stick tables behave alike).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "fulcrum/address.hpp"

namespace fulcrum {

inline constexpr size_t kSourceTableClients = 65536;

class SourceTable {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Verdict { admitted, over_connections, over_rate, untracked };

  // Main thread, when a snapshot is made: the limits in force (0: none).
  void set_limits(uint32_t connections, uint32_t rate);
  // Whether any limit is set: without one, workers never touch the table.
  bool limited() const {
    return connections_.load(std::memory_order_relaxed) != 0 ||
           rate_.load(std::memory_order_relaxed) != 0;
  }
  // A new session of `client` at `now`: admitted (one more open session
  // counted, to release() when it ends) or over a limit (nothing counted).
  Verdict admit(const SocketAddress& client, Clock::time_point now);
  // A session carried over by a binary upgrade that admit() had counted:
  // counted again, whatever the limits (it is open already).
  void count_carried(const SocketAddress& client);
  // The end of a session admit() counted.
  void release(const SocketAddress& client);
  // Clients in the table (tests, stats).
  size_t size() const;

 private:
  struct Key {
    uint64_t prefix = 0;  // the IPv4 address, or the IPv6 /64
    bool v6 = false;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const;
  };
  struct Entry {
    uint32_t open = 0;
    double tokens = 0;
    Clock::time_point refilled;
  };
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<Key, Entry, KeyHash> entries;
  };

  static Key key_of(const SocketAddress& client);
  Shard& shard_of(const Key& key) { return shards_[KeyHash()(key) % kShards]; }
  // Tokens of `entry` at `now` (refilled, at most `rate`).
  static void refill(Entry& entry, uint32_t rate, Clock::time_point now);
  // Makes room in `shard` for one more client; false when none can go.
  bool make_room(Shard& shard, uint32_t rate, Clock::time_point now);

  std::atomic<uint32_t> connections_{0};
  std::atomic<uint32_t> rate_{0};
  std::array<Shard, kShards> shards_;
};

}  // namespace fulcrum
