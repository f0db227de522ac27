#include "fulcrum/load_index.hpp"

#include <algorithm>
#include <utility>

#include "fulcrum/scheduler.hpp"
#include "fulcrum/server_state.hpp"

namespace fulcrum {

namespace {

bool full(uint32_t active, uint32_t max) { return max != 0 && active >= max; }

}  // namespace

LoadIndex::~LoadIndex() {
  for (const Slot& slot : slots_) {
    if (slot.state == nullptr) continue;
    LoadIndex* self = this;
    slot.state->load_index_.compare_exchange_strong(self, nullptr);
    slot.state->load_slot_ = UINT32_MAX;
  }
}

uint32_t LoadIndex::add_heap() {
  const std::lock_guard lock(mutex_);
  for (uint32_t id = 0; id < heaps_.size(); ++id) {
    if (!heaps_[id]) {
      heaps_[id] = std::make_unique<Heap>();
      return id;
    }
  }
  heaps_.push_back(std::make_unique<Heap>());
  return static_cast<uint32_t>(heaps_.size() - 1);
}

void LoadIndex::remove_heap(uint32_t heap_id) {
  const std::lock_guard lock(mutex_);
  if (heap_id >= heaps_.size() || !heaps_[heap_id]) return;
  forget(*heaps_[heap_id]);
  heaps_[heap_id].reset();
}

LoadIndex::Slot& LoadIndex::slot_of(const ServerState& state) {
  if (state.load_slot_ == UINT32_MAX) {
    if (free_slots_.empty()) {
      state.load_slot_ = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    } else {
      state.load_slot_ = free_slots_.back();
      free_slots_.pop_back();
    }
    slots_[state.load_slot_].state = &state;
  }
  return slots_[state.load_slot_];
}

void LoadIndex::forget(const Heap& heap) {
  for (const Entry& entry : heap.entries) {
    const uint32_t number = entry.state->load_slot_;
    if (number == UINT32_MAX) continue;
    Slot& slot = slots_[number];
    std::erase_if(slot.places, [&heap](const Place& place) { return place.heap == &heap; });
    if (slot.places.empty()) {
      // The server is in no heap of this index any more: its slot is free.
      slot.state = nullptr;
      entry.state->load_slot_ = UINT32_MAX;
      free_slots_.push_back(number);
    }
  }
}

void LoadIndex::set_members(uint32_t heap_id, std::span<const Member> members) {
  for (const Member& member : members) member.state->load_index_.store(this);
  const std::lock_guard lock(mutex_);
  if (heap_id >= heaps_.size() || !heaps_[heap_id]) return;
  Heap& heap = *heaps_[heap_id];
  forget(heap);
  heap.entries.clear();
  heap.position.assign(members.size(), 0);
  for (uint32_t i = 0; i < members.size(); ++i) {
    const ServerState& state = *members[i].state;
    heap.entries.push_back(Entry{&state, members[i].id, i, std::max(members[i].weight, 1U),
                                 state.active.load(std::memory_order_relaxed),
                                 state.max_connections(), next_turn_++});
    slot_of(state).places.push_back(Place{&heap, i});
  }
  // Floyd's bottom-up heap construction: O(n).
  for (uint32_t i = 0; i < heap.entries.size(); ++i) heap.position[heap.entries[i].member] = i;
  for (auto at = static_cast<uint32_t>(heap.entries.size() / 2); at-- > 0;) sift(heap, at);
}

// (active + 1) / weight, lower first, without division; a full server after
// every other; equal loads in turn.
bool LoadIndex::before(const Entry& a, const Entry& b) {
  const bool a_full = full(a.active, a.max);
  const bool b_full = full(b.active, b.max);
  if (a_full != b_full) return b_full;
  const uint64_t left = (uint64_t{a.active} + 1) * b.weight;
  const uint64_t right = (uint64_t{b.active} + 1) * a.weight;
  if (left != right) return left < right;
  return a.turn < b.turn;
}

void LoadIndex::place(Heap& heap, uint32_t at, Entry entry) {
  heap.position[entry.member] = at;
  heap.entries[at] = entry;
}

// Moves the entry at `at` up or down to where it belongs.
void LoadIndex::sift(Heap& heap, uint32_t at) {
  const Entry entry = heap.entries[at];
  while (at > 0) {
    const uint32_t parent = (at - 1) / 2;
    if (!before(entry, heap.entries[parent])) break;
    place(heap, at, heap.entries[parent]);
    at = parent;
  }
  const auto size = static_cast<uint32_t>(heap.entries.size());
  for (;;) {
    uint32_t child = 2 * at + 1;
    if (child >= size) break;
    if (child + 1 < size && before(heap.entries[child + 1], heap.entries[child])) ++child;
    if (!before(heap.entries[child], entry)) break;
    place(heap, at, heap.entries[child]);
    at = child;
  }
  place(heap, at, entry);
}

void LoadIndex::changed(const ServerState* state) {
  const std::lock_guard lock(mutex_);
  const uint32_t number = state->load_slot_;
  if (number == UINT32_MAX) return;
  const uint32_t active = state->active.load(std::memory_order_relaxed);
  for (const Place& where : slots_[number].places) {
    Heap& heap = *where.heap;
    const uint32_t at = heap.position[where.member];
    Entry& entry = heap.entries[at];
    // A server that took a session goes after the others of equal load.
    if (active > entry.active) entry.turn = next_turn_++;
    entry.active = active;
    sift(heap, at);
  }
}

std::optional<uint32_t> LoadIndex::pick(uint32_t heap_id, const PickContext& context) {
  const std::lock_guard lock(mutex_);
  if (heap_id >= heaps_.size() || !heaps_[heap_id] || heaps_[heap_id]->entries.empty())
    return std::nullopt;
  const std::vector<Entry>& entries = heaps_[heap_id]->entries;
  const auto usable = [](const Entry& entry) {
    return !full(entry.state->active.load(std::memory_order_relaxed),
                 entry.state->max_connections());
  };
  const Entry& top = entries.front();
  if (usable(top) && !context.avoids(top.id)) return top.id;
  // A retry that avoids the top server, or limits changed since the last
  // rebuild: the best of the rest, by a scan (as every pick once did).
  const Entry* best = nullptr;
  const Entry* avoided = nullptr;  // taken only when nothing else is usable
  for (const Entry& entry : entries) {
    if (!usable(entry)) continue;
    const Entry*& slot = context.avoids(entry.id) ? avoided : best;
    if (slot == nullptr || before(entry, *slot)) slot = &entry;
  }
  if (best != nullptr) return best->id;
  if (avoided != nullptr) return avoided->id;
  return std::nullopt;
}

}  // namespace fulcrum
