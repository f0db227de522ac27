#include "fulcrum/poller.hpp"

#include <cerrno>

namespace fulcrum {

namespace {

// Readiness reports taken per wake-up of the worker's loop. More wait in the
// set, which stays readable: the loop comes back after its other events.
constexpr int kBatch = 64;

}  // namespace

Poller::Poller(event_base* base) : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
  // Without a set (no descriptor left at start), watch() fails and each
  // session ends as a local error.
  if (!epoll_) return;
  event_.reset(event_new(base, epoll_.get(), EV_READ | EV_PERSIST, on_ready_cb, this));
  event_add(event_.get(), nullptr);
}

Poller::~Poller() = default;

int Poller::watch(int fd, Watch& watch, uint32_t events) {
  if (watch.in_set && watch.events == events) return 0;
  if (!watch.in_set && events == 0) return 0;
  int op = EPOLL_CTL_MOD;
  if (!watch.in_set) op = EPOLL_CTL_ADD;
  if (events == 0) op = EPOLL_CTL_DEL;
  if (watch.slot == kNoSlot) {
    if (free_slots_.empty()) {
      free_slots_.push_back(static_cast<uint32_t>(slots_.size()));
      slots_.emplace_back();
    }
    watch.slot = free_slots_.back();
    free_slots_.pop_back();
    slots_[watch.slot].watch = &watch;
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = key(watch.slot, slots_[watch.slot].generation);
  if (::epoll_ctl(epoll_.get(), op, fd, &ev) != 0) return errno;
  watch.events = events;
  watch.in_set = events != 0;
  return 0;
}

void Poller::closed(Watch& watch) {
  watch.events = 0;
  watch.in_set = false;
  if (watch.slot == kNoSlot) return;
  Slot& slot = slots_[watch.slot];
  slot.watch = nullptr;
  ++slot.generation;  // a report still keyed with the old one is dropped
  free_slots_.push_back(watch.slot);
  watch.slot = kNoSlot;
}

void Poller::on_ready_cb(evutil_socket_t, short, void* arg) {
  static_cast<Poller*>(arg)->on_ready();
}

// A report may reach an owner that finished earlier in the same batch: the
// worker destroys finished sessions (closing their descriptors) only after
// this callback, and a finished session ignores what it is told. The same
// holds for the flushes that follow the batch.
void Poller::on_ready() {
  epoll_event events[kBatch];
  const int n = ::epoll_wait(epoll_.get(), events, kBatch, 0);
  for (int i = 0; i < n; ++i) {
    const uint64_t reported = events[i].data.u64;
    const auto index = static_cast<uint32_t>(reported);
    // A registration of a closed descriptor still referenced elsewhere, or
    // one whose owner closed it earlier in this batch: nobody to tell.
    if (index >= slots_.size() || key(index, slots_[index].generation) != reported) continue;
    Watch* watch = slots_[index].watch;
    watch->callback(watch->arg, events[i].events);
  }
  // Swapped out first, so that a flush asking for another (none does)
  // cannot invalidate the loop: that one would run after the next batch.
  flushing_.swap(after_batch_);
  for (const auto& [flush, arg] : flushing_) flush(arg);
  flushing_.clear();
}

}  // namespace fulcrum
