// Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4): a
// lookup table of 65537 slots filled by each server's own permutation of
// the slots, so that removing one of N servers moves only about 1/N of the
// clients, and the same server names give the same table in every process.
#include <netinet/in.h>
#include <algorithm>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>

#include "algorithms.hpp"
#include "cursor.hpp"
#include "fulcrum/jhash.hpp"
#include "published.hpp"

namespace fulcrum {

namespace {

// Seeds of the two permutation hashes and of the client hash: part of the
// mapping, pinned by a golden test. Changing them moves every client.
constexpr uint64_t kOffsetSeed = 0x6d61676c65762d6fULL;  // "maglev-o"
constexpr uint64_t kSkipSeed = 0x6d61676c65762d73ULL;    // "maglev-s"
// Slots tried from the client's own before scanning the servers: enough to
// meet another server nearly always (servers' slots are spread evenly).
constexpr size_t kLookupWalk = 128;

}  // namespace

uint64_t stable_hash(const void* data, size_t length, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < length; ++i) {
    h ^= bytes[i];
    h *= 0x100000001b3ULL;
  }
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

uint32_t maglev_slot(const SocketAddress& client, HashKey key) {
  // The bytes nftables hashes for `jhash ip saddr` (4), `ip6 saddr` (16),
  // and with `. th sport` the port in network order padded to a register
  // (4 more): the kernel's maps then find the same slot (src/kernel/).
  unsigned char buffer[20] = {};
  size_t length = 0;
  uint16_t port = 0;
  if (client.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&client.storage);
    std::memcpy(buffer, &in->sin_addr, 4);
    length = 4;
    port = in->sin_port;
  } else if (client.family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&client.storage);
    std::memcpy(buffer, &in6->sin6_addr, 16);
    length = 16;
    port = in6->sin6_port;
  }
  if (key == HashKey::source_ip_port) {
    std::memcpy(buffer + length, &port, 2);
    length += 4;
  }
  return scale_to(kernel_jhash(buffer, length, kMaglevClientSeed), kMaglevTableSize);
}

// Turns go round the servers; in each round a server fills as many slots as
// its weight allows (credit grows by its weight, one slot costs the largest
// weight), so the heaviest server takes one slot a round and the others
// proportionally fewer. Each takes the next slot of its permutation that is
// still empty.
std::vector<uint32_t> build_maglev_table(const std::vector<std::string>& names,
                                         const std::vector<uint32_t>& weights, uint32_t size) {
  const size_t n = names.size();
  uint32_t max_weight = 0;
  for (uint32_t w : weights) max_weight = std::max(max_weight, w);
  if (max_weight == 0) return {};

  // Each server's permutation is offset, offset + skip, offset + 2 skip...
  // modulo size: `position` walks it by adding skip and wrapping once, no
  // division per step (a build probes about size x ln(size) slots).
  std::vector<uint64_t> position(n);
  std::vector<uint64_t> skip(n);
  for (size_t i = 0; i < n; ++i) {
    position[i] = stable_hash(names[i].data(), names[i].size(), kOffsetSeed) % size;
    skip[i] = stable_hash(names[i].data(), names[i].size(), kSkipSeed) % (size - 1) + 1;
  }
  const auto advance = [&](size_t i) {
    position[i] += skip[i];
    if (position[i] >= size) position[i] -= size;
  };
  constexpr uint32_t kEmpty = UINT32_MAX;
  // Turns are taken in name order, so the order servers are listed in the
  // configuration does not matter: only names and weights do.
  std::vector<size_t> turn_order(n);
  for (size_t i = 0; i < n; ++i) turn_order[i] = i;
  std::sort(turn_order.begin(), turn_order.end(),
            [&names](size_t a, size_t b) { return names[a] < names[b]; });

  std::vector<uint32_t> table(size, kEmpty);
  std::vector<uint64_t> credit(n, 0);
  uint32_t filled = 0;
  while (filled < size) {
    for (size_t i : turn_order) {
      if (filled == size) break;
      if (weights[i] == 0) continue;
      credit[i] += weights[i];
      while (credit[i] >= max_weight && filled < size) {
        credit[i] -= max_weight;
        while (table[position[i]] != kEmpty) advance(i);
        table[position[i]] = static_cast<uint32_t>(i);
        advance(i);
        ++filled;
      }
    }
  }
  return table;
}

uint64_t maglev_table_checksum(const std::vector<std::string>& names,
                               const std::vector<uint32_t>& table) {
  if (table.empty()) return 0;
  std::vector<uint64_t> name_hashes;
  name_hashes.reserve(names.size());
  for (const std::string& name : names)
    name_hashes.push_back(stable_hash(name.data(), name.size(), 0));
  std::vector<uint64_t> slots;
  slots.reserve(table.size());
  for (const uint32_t index : table) slots.push_back(name_hashes[index]);
  return stable_hash(slots.data(), slots.size() * sizeof(uint64_t), 0);
}

namespace {

class Maglev final : public Scheduler {
 public:
  Maglev(std::vector<SchedServer> servers, HashKey key, unsigned workers)
      : servers_(std::move(servers)), key_(key), table_(workers, build()) {}

  // The client's slot names its server. When that server cannot take the
  // session right now (full, or failed on this very session) the following
  // slots are tried: deterministic, and no rebuild for a passing condition.
  std::optional<uint32_t> pick(const PickContext& context) override {
    const std::vector<uint32_t>& table = table_.read(context.worker);
    if (table.empty()) return std::nullopt;
    constexpr size_t size = kMaglevTableSize;
    size_t slot = maglev_slot(context.client, key_);
    for (size_t step = 0; step < kLookupWalk; ++step, slot = slot + 1 == size ? 0 : slot + 1) {
      const uint32_t index = table[slot];
      if (is_usable(servers_[index]) && !context.avoids(index)) return index;
    }
    // Rare: the walk met only unusable servers (or the one to avoid). A scan
    // of the servers, from the client's slot so still deterministic, settles
    // it in O(servers), the avoided server last.
    return scan_usable(servers_, slot, context);
  }

  // Rebuilt from the servers that are up, with their weights in force: a
  // server that goes down gives up its slots (its clients move, nobody
  // else's), and gets exactly the same slots back when it returns.
  void rebuild() override {
    const auto previous = current_;
    auto next = build();
    if (next != previous && *next != *previous) table_.publish(std::move(next));
  }

  // Computed when asked (/stats, main thread), not at every rebuild: slow
  // start rebuilds at each weight step, and hashing the 65537 slots would
  // add to each.
  std::optional<uint64_t> table_checksum() const override {
    if (!checksum_) {
      std::vector<std::string> names;
      names.reserve(servers_.size());
      for (const auto& s : servers_) names.push_back(s.name);
      checksum_ = maglev_table_checksum(names, *current_);
    }
    return checksum_;
  }

 private:
  std::shared_ptr<const std::vector<uint32_t>> build() {
    std::vector<std::string> names;
    std::vector<uint32_t> weights;
    names.reserve(servers_.size());
    weights.reserve(servers_.size());
    for (const auto& s : servers_) {
      names.push_back(s.name);
      const bool up = s.state->status() == ServerStatus::up;
      weights.push_back(up ? s.state->weight() : 0);
    }
    if (current_ && names == names_ && weights == weights_) return current_;
    current_ = recent_tables().find_or_build(names, weights);
    names_ = std::move(names);
    weights_ = std::move(weights);
    checksum_.reset();
    return current_;
  }

  // The tables still in use, by their names and weights: a new snapshot
  // (reload, DNS discovery) builds a scheduler for every service, and the
  // services whose servers did not change get the table the previous
  // snapshot's scheduler holds instead of building it again (3 ms at 1000
  // servers). Weak references: a table no scheduler holds is freed.
  class RecentTables {
   public:
    std::shared_ptr<const std::vector<uint32_t>> find_or_build(
        const std::vector<std::string>& names, const std::vector<uint32_t>& weights) {
      const std::lock_guard lock(mutex_);
      entries_.remove_if([](const Entry& entry) { return entry.table.expired(); });
      for (const Entry& entry : entries_) {
        if (entry.names != names || entry.weights != weights) continue;
        if (auto table = entry.table.lock()) return table;
      }
      auto table = std::make_shared<const std::vector<uint32_t>>(
          build_maglev_table(names, weights, kMaglevTableSize));
      entries_.push_front({names, weights, table});
      if (entries_.size() > kKept) entries_.pop_back();
      return table;
    }

   private:
    static constexpr size_t kKept = 16;
    struct Entry {
      std::vector<std::string> names;
      std::vector<uint32_t> weights;
      std::weak_ptr<const std::vector<uint32_t>> table;
    };
    std::mutex mutex_;
    std::list<Entry> entries_;
  };
  static RecentTables& recent_tables() {
    static RecentTables tables;
    return tables;
  }

  std::vector<SchedServer> servers_;
  HashKey key_;
  std::shared_ptr<const std::vector<uint32_t>> current_;  // main thread's copy of the latest build
  std::vector<std::string> names_;                        // what current_ was built from
  std::vector<uint32_t> weights_;
  mutable std::optional<uint64_t> checksum_;  // of current_, once asked
  Published<std::vector<uint32_t>> table_;
};

}  // namespace

std::unique_ptr<Scheduler> make_maglev_scheduler(std::vector<SchedServer> servers, HashKey key,
                                                 unsigned workers) {
  return std::make_unique<Maglev>(std::move(servers), key, workers);
}

}  // namespace fulcrum
