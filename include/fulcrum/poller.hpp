// The relay's own epoll set: one per worker, read through a single libevent
// event on its descriptor (an epoll set can be watched like a socket).
//
// Why not one libevent event per socket and direction: libevent adds and
// deletes a descriptor in its epoll set for each event, and deletes it again
// before the socket is closed. Here each socket has one registration for
// all it waits for, changed only when that changes, and never deleted before
// a close: closing a descriptor removes it from every epoll set. Changes a
// batch of reports makes are applied once it has been handled
// (after_batch). A new session that ends with two FINs makes 3 or 4
// epoll_ctl calls instead of 6 (docs/performance.md, issue 18).
// Level-triggered, like the libevent events it replaces.
//
// Worker thread only. The kernel takes a closed descriptor out of the set
// only when the last reference to its socket goes: while a child process
// still holds a copy (posix_spawn's child holds every descriptor from the
// clone to its exec, as during a binary upgrade's check), the set may
// report a socket whose owner is gone. So a registration names its owner
// by a slot and that slot's generation, never by address: closed() retires
// the slot, and reports for a retired one are dropped.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"

namespace fulcrum {

class Poller {
 public:
  // What one descriptor is watched for, and whom its readiness is told to.
  // Owned by the caller, which keeps it (at a fixed address) for as long as
  // its descriptor is open.
  struct Watch {
    using Callback = void (*)(void* arg, uint32_t events);
    Callback callback = nullptr;
    void* arg = nullptr;
    uint32_t events = 0;      // what the set watches for
    bool in_set = false;      // the descriptor is in the set
    uint32_t slot = kNoSlot;  // the Poller's, from the first watch() to closed()
  };
  static constexpr uint32_t kNoSlot = UINT32_MAX;

  explicit Poller(event_base* base);
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  // Watches `fd` for `events` (EPOLLIN, EPOLLOUT, both) from now on; 0 takes
  // it out of the set, so that an error or hang-up (which epoll reports
  // whatever was asked for) does not wake its owner again and again. One
  // epoll_ctl only when that changes what the set has. Returns 0 or an errno.
  int watch(int fd, Watch& watch, uint32_t events);
  // Calls `flush(arg)` once every report of the batch being handled has
  // been told: an owner applies what a batch changed in one epoll_ctl per
  // descriptor at most, and none at all if it finished meanwhile (closing
  // its descriptors takes them out of the set). From a report's callback
  // only; the owner must live until the batch ends.
  using Flush = void (*)(void* arg);
  void after_batch(Flush flush, void* arg) { after_batch_.emplace_back(flush, arg); }
  // `watch`'s descriptor is closed, or is about to be, with its owner:
  // reports for it are dropped from now on (see above). Before its owner
  // goes.
  void closed(Watch& watch);

 private:
  static void on_ready_cb(evutil_socket_t, short, void* arg);
  void on_ready();

  // A registration's owner: slots are reused, each time with the next
  // generation, which the registration's key carries.
  struct Slot {
    Watch* watch = nullptr;  // null while free
    uint32_t generation = 0;
  };
  static uint64_t key(uint32_t slot, uint32_t generation) {
    return (uint64_t{generation} << 32) | slot;
  }

  Fd epoll_;
  EventPtr event_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  std::vector<std::pair<Flush, void*>> after_batch_;
  std::vector<std::pair<Flush, void*>> flushing_;  // after_batch_ while it runs
};

}  // namespace fulcrum
