// Servers in least-connection order, kept as sessions start and end, so that
// the lc and wlc schedulers find the least loaded server at the top of a
// heap instead of scanning every server at every pick (HAProxy's leastconn
// keeps its servers in a tree the same way).
//
// One index per service (ServiceState::load_index), shared by the service's
// lc/wlc schedulers: each scheduler (the primaries and the backups of each
// server group, of each snapshot still in use) has a heap of its own. A
// server's try_acquire() and release() move it in every heap it is in.
// Everything is under one mutex: a pick or a change is a few dozen
// nanoseconds of work, and workers are few.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

namespace fulcrum {

struct ServerState;
struct PickContext;

class LoadIndex {
 public:
  // A server a heap may give: `weight` 1 for lc, the weight in force for
  // wlc; `id` is what pick() returns for it (the scheduler's index).
  struct Member {
    const ServerState* state;
    uint32_t weight;
    uint32_t id;
  };

  LoadIndex() = default;
  LoadIndex(const LoadIndex&) = delete;
  LoadIndex& operator=(const LoadIndex&) = delete;
  // Unbinds the servers still bound to it.
  ~LoadIndex();

  // Main thread: a new, empty heap, and its removal.
  uint32_t add_heap();
  void remove_heap(uint32_t heap);
  // Main thread: the heap's servers are now `members`, each one bound to
  // this index; picks see the old or the new set, never a mix.
  void set_members(uint32_t heap, std::span<const Member> members);
  // Any thread: the id of the heap's least loaded server ((active + 1) /
  // weight, ties in turn) below its max_connections and not avoided by
  // `context` (an avoided one when no other is usable).
  std::optional<uint32_t> pick(uint32_t heap, const PickContext& context);
  // Any thread: `state`'s active count changed (ServerState calls it).
  void changed(const ServerState* state);

 private:
  struct Entry {
    const ServerState* state;
    uint32_t id;
    uint32_t member;  // its place in the heap's `position`
    uint32_t weight;
    uint32_t active;  // as of the last change seen
    uint32_t max;     // max_connections as of set_members (0: none)
    uint64_t turn;    // ties: the lower turn first
  };
  struct Heap {
    std::vector<Entry> entries;      // a binary min-heap by `before`
    std::vector<uint32_t> position;  // member -> its index in entries
  };
  // Where a server is: in which heaps, as which member. Found through the
  // server's own slot number (ServerState::load_slot_), not a hash lookup:
  // every session start and end comes here.
  struct Place {
    Heap* heap;
    uint32_t member;
  };
  struct Slot {
    const ServerState* state = nullptr;  // null: free
    std::vector<Place> places;
  };

  static bool before(const Entry& a, const Entry& b);
  void place(Heap& heap, uint32_t at, Entry entry);
  void sift(Heap& heap, uint32_t at);
  // Drops the heap's servers' places (the heap itself is left as it is).
  void forget(const Heap& heap);
  Slot& slot_of(const ServerState& state);

  std::mutex mutex_;
  std::vector<std::unique_ptr<Heap>> heaps_;  // by heap id; null: removed (ids are reused)
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  uint64_t next_turn_ = 0;
};

}  // namespace fulcrum
