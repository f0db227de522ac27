// The smooth weighted round robin order of one set of weights, computed
// chunk by chunk as the workers reach it instead of all at once when the
// scheduler is rebuilt. docs/scheduling.md states the order's guarantees and
// proves them.
//
// The order (w_i the weights divided by their greatest common divisor, T
// their sum, the cycle's length; positions numbered 1..T): server i's j-th
// pick of the cycle becomes eligible at position floor((j-1)T/w_i) + 1 and is
// due by position ceil(jT/w_i); each position goes to the eligible pick that
// is due first (equally due: the lighter server's, which usually became
// eligible first, then the lower index). This is the shape of WF2Q's rule
// (Bennett and Zhang, worst-case fair weighted fair queueing: of the packets
// the fluid system has started, send the one it finishes first) with every
// pick one unit long. Every pick meets its due position, so after any
// number t of positions from a cycle boundary a server's count differs from
// t * w_i / T by less than 1, and over a full cycle it is w_i exactly.
//
// nginx's rule (raise every server's current weight, pick the largest),
// which fulcrum used before, keeps counts a little closer to their shares
// on average, but its next pick depends on every server's state and costs
// O(servers) per position. This one ranks one pending pick per server
// by a number fixed when the pick is made: O(log servers) per position. And
// the state at any position is one bit per server (whether its count is
// rounded up), so a chunk can be computed from where the previous one ended.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

namespace fulcrum {

class SmoothCycle {
 public:
  // Positions computed at a time: enough that starting a chunk (O(servers))
  // costs little beside it, few enough that a rebuild, which computes the
  // first chunk, stays well under a millisecond at 1000 servers. A power of
  // two, so that finding a position's chunk is a shift and a mask.
  static uint64_t chunk_length(size_t servers) {
    return std::bit_ceil(std::max<uint64_t>(4096, 4 * static_cast<uint64_t>(servers)));
  }

  // `weights` divided by their greatest common divisor (3,3,3 -> 1,1,1): the
  // same order in a shorter cycle. All zero stays all zero.
  static std::vector<uint32_t> reduced(std::vector<uint32_t> weights) {
    uint32_t divisor = 0;
    for (uint32_t w : weights) divisor = std::gcd(divisor, w);
    if (divisor > 1) {
      for (uint32_t& w : weights) w /= divisor;
    }
    return weights;
  }

  // Computes the first chunk: O(servers + chunk * log servers), whatever the
  // weights. Weight-0 servers never appear; all zero gives an empty cycle.
  explicit SmoothCycle(const std::vector<uint32_t>& weights)
      : weights_(reduced(weights)),
        length_(std::accumulate(weights_.begin(), weights_.end(), uint64_t{0})),
        chunk_(chunk_length(weights_.size())),
        chunks_((length_ + chunk_ - 1) / chunk_),
        claimed_(chunks_.size()) {
    // Positions and slots fit in 32 bits (rank() packs them): with weights
    // up to 1000 (the configuration's limit) that is four million servers.
    assert(length_ < (uint64_t{1} << 32));
    for (uint32_t i = 0; i < weights_.size(); ++i) {
      if (weights_[i] > 0) slots_.push_back(i);
    }
    std::stable_sort(slots_.begin(), slots_.end(),
                     [this](uint32_t a, uint32_t b) { return weights_[a] < weights_[b]; });
    while (leaves_ < slots_.size()) leaves_ *= 2;
    if (length_ == 0) return;
    chunks_[0].store(compute(0, std::vector<bool>(slots_.size())).release(),
                     std::memory_order_relaxed);
  }

  SmoothCycle(const SmoothCycle&) = delete;
  SmoothCycle& operator=(const SmoothCycle&) = delete;

  ~SmoothCycle() {
    // The slots own their chunks (an atomic cannot hold a unique_ptr).
    for (auto& slot : chunks_) {
      const std::unique_ptr<const Chunk> owned(slot.load(std::memory_order_relaxed));
    }
  }

  uint64_t length() const { return length_; }
  const std::vector<uint32_t>& weights() const { return weights_; }  // reduced

  // The server at `position` (< length()). Any thread, concurrently, lock
  // free: a chunk nobody has computed yet is computed by the caller (two
  // callers racing both compute it, the same; the first one stored is
  // kept). Reading the middle of a chunk computes the next one ahead of
  // need, once, so the walk seldom waits. O(1) within computed chunks; a
  // chunk costs O(servers + chunk * log servers), once per cycle.
  uint32_t at(uint64_t position) {
    assert(position < length_);
    const size_t index = position >> chunk_bits_;
    const uint64_t offset = position & (chunk_ - 1);
    const Chunk* chunk = chunks_[index].load(std::memory_order_acquire);
    if (chunk == nullptr) chunk = &fill(index);
    if (offset == chunk_ / 2) prefetch(index + 1);
    return chunk->servers[offset];
  }

  // Positions computed so far by all threads, a chunk computed twice by
  // racing callers counted twice. Tests check that a rebuild computes one
  // chunk, not the cycle.
  uint64_t computed() const { return computed_.load(std::memory_order_relaxed); }

 private:
  struct Chunk {
    std::vector<uint32_t> servers;  // the server of each position of the chunk
    std::vector<bool> ahead;        // after its last position, by slot: count rounded up
  };

  // A server's j-th pick of the cycle (j = its count so far + 1), for a
  // server of weight w: the first and the last position it may take.
  struct Pick {
    uint64_t eligible;
    uint64_t due;
  };

  Pick pick_of(uint64_t w, uint64_t j) const {
    return Pick{(j - 1) * length_ / w + 1, (j * length_ + w - 1) / w};
  }

  // An eligible pick as one number that orders them: due position, then
  // slot (lighter server first, then lower index). Positions are below
  // 2^32 (see the constructor).
  static uint64_t rank(uint64_t due, uint32_t slot) { return due << 32 | slot; }
  static constexpr uint64_t kNotEligible = UINT64_MAX;

  // The chunk that starts at position `first` (0-based), from the state
  // there: the server of slot s has been picked floor(first * w / T) times,
  // plus one when ahead[s]. Such a bit is all the state there is: every
  // server's count stays within 1 of its exact share, so it is the floor or
  // the floor plus one (exactly the share when that is a whole number).
  //
  // Eligible picks are ranked in a tournament tree over the slots (each
  // node holds the lowest rank below it): the first is at the root,
  // replacing a slot's rank is O(log servers), one min per level. Picks not
  // yet eligible wait in a calendar, a list per position of the chunk;
  // those that become eligible only after the chunk are left out.
  std::unique_ptr<const Chunk> compute(uint64_t first, const std::vector<bool>& ahead) {
    const uint64_t last = std::min(first + chunk_, length_);
    const size_t slots = slots_.size();
    std::vector<uint64_t> tree(2 * leaves_, kNotEligible);  // node n: 2n, 2n + 1 below it
    const auto set_rank = [&](uint32_t slot, uint64_t value) {
      size_t node = leaves_ + slot;
      tree[node] = value;
      for (node /= 2; node > 0; node /= 2)
        tree[node] = std::min(tree[2 * node], tree[2 * node + 1]);
    };
    constexpr int32_t kNone = -1;
    std::vector<int32_t> calendar(last - first, kNone);  // eligible at first + 1 + k: a list
    std::vector<int32_t> next_in_list(slots, kNone);
    const auto wait = [&](uint32_t slot, uint64_t eligible) {
      if (eligible > last) return;
      next_in_list[slot] = calendar[eligible - first - 1];
      calendar[eligible - first - 1] = static_cast<int32_t>(slot);
    };

    std::vector<uint64_t> counts(slots);
    for (uint32_t slot = 0; slot < slots; ++slot) {
      const uint64_t w = weights_[slots_[slot]];
      counts[slot] = first * w / length_ + (ahead[slot] ? 1 : 0);
      if (counts[slot] == w) continue;  // done for this cycle
      const Pick next = pick_of(w, counts[slot] + 1);
      if (next.eligible <= first + 1) {
        tree[leaves_ + slot] = rank(next.due, slot);
      } else {
        wait(slot, next.eligible);
      }
    }
    for (size_t node = leaves_ - 1; node > 0; --node)
      tree[node] = std::min(tree[2 * node], tree[2 * node + 1]);

    auto chunk = std::make_unique<Chunk>();
    chunk->servers.reserve(last - first);
    for (uint64_t position = first + 1; position <= last; ++position) {
      for (int32_t s = calendar[position - first - 1]; s != kNone; s = next_in_list[s]) {
        const auto slot = static_cast<uint32_t>(s);
        set_rank(slot, rank(pick_of(weights_[slots_[slot]], counts[slot] + 1).due, slot));
      }
      // Some pick is eligible, and none is past due: docs/scheduling.md
      // proves both.
      assert(tree[1] != kNotEligible && tree[1] >> 32 >= position);
      const auto slot = static_cast<uint32_t>(tree[1] & UINT32_MAX);
      chunk->servers.push_back(slots_[slot]);
      const uint64_t w = weights_[slots_[slot]];
      uint64_t next_rank = kNotEligible;
      if (++counts[slot] < w) {
        const Pick next = pick_of(w, counts[slot] + 1);
        if (next.eligible <= position + 1) {
          next_rank = rank(next.due, slot);
        } else {
          wait(slot, next.eligible);
        }
      }
      set_rank(slot, next_rank);
    }
    chunk->ahead.resize(slots);
    for (uint32_t slot = 0; slot < slots; ++slot) {
      const uint64_t floor = last * weights_[slots_[slot]] / length_;
      assert(counts[slot] == floor || counts[slot] == floor + 1);
      chunk->ahead[slot] = counts[slot] != floor;
    }
    computed_.fetch_add(last - first, std::memory_order_relaxed);
    return chunk;
  }

  // Computes chunk `index` (> 0) and stores it, from the nearest chunk
  // before it that is there (chunk 0 always is). The walk reaches chunks in
  // order, so that is nearly always the one just before.
  const Chunk& fill(size_t index) {
    size_t known = index - 1;
    const Chunk* from = chunks_[known].load(std::memory_order_acquire);
    while (from == nullptr) from = chunks_[--known].load(std::memory_order_acquire);
    while (known < index) {
      ++known;
      auto chunk = compute(known * chunk_, from->ahead);
      const Chunk* expected = nullptr;
      if (chunks_[known].compare_exchange_strong(expected, chunk.get(), std::memory_order_acq_rel,
                                                 std::memory_order_acquire)) {
        from = chunk.release();  // now owned by the slot
      } else {
        from = expected;  // another caller stored it first; ours is dropped
      }
    }
    return *from;
  }

  // Computes chunk `index` ahead of need unless it is there, out of range,
  // or another caller already took it on.
  void prefetch(size_t index) {
    if (index >= chunks_.size() || chunks_[index].load(std::memory_order_acquire) != nullptr)
      return;
    if (claimed_[index].exchange(true, std::memory_order_relaxed)) return;
    fill(index);
  }

  const std::vector<uint32_t> weights_;
  const uint64_t length_;
  const uint64_t chunk_;
  const int chunk_bits_ = std::countr_zero(chunk_);
  // The servers of weight above 0, lighter first, then by index: equally
  // due picks go to the lighter server, whose pick waited longer.
  std::vector<uint32_t> slots_;
  size_t leaves_ = 1;  // of the tournament tree: a power of two, at least the slots
  std::vector<std::atomic<const Chunk*>> chunks_;  // null until computed; owned
  std::vector<std::atomic<bool>> claimed_;         // chunk taken on ahead of need
  std::atomic<uint64_t> computed_{0};
};

}  // namespace fulcrum
