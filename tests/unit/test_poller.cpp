#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"
#include "fulcrum/poller.hpp"

using namespace fulcrum;

namespace {

// What the Poller told, in order: "in" / "out" for reports, "flush" for
// after_batch.
struct Log {
  std::vector<std::string> seen;
};

void record(void* arg, uint32_t events) {
  auto* log = static_cast<Log*>(arg);
  if (events & EPOLLIN) log->seen.emplace_back("in");
  if (events & EPOLLOUT) log->seen.emplace_back("out");
}

struct Pair {
  Fd a;
  Fd b;
  Pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};

// One pass of the loop without waiting: whatever is ready is reported.
void run_once(event_base* base) { event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK); }

// A Poller on its own loop, and a socket pair whose `a` end is watched,
// its reports recorded in `log`.
struct OneWatch {
  EventBasePtr base{event_base_new()};
  Poller poller{base.get()};
  Pair pair;
  Log log;
  Poller::Watch watch{record, &log};
};

}  // namespace

TEST_CASE_FIXTURE(OneWatch,
                  "a socket is reported for what it is watched for, until it is taken out") {
  REQUIRE(poller.watch(pair.a.get(), watch, EPOLLIN) == 0);
  CHECK(watch.in_set);
  run_once(base.get());
  CHECK(log.seen.empty());  // nothing to read yet

  REQUIRE(::write(pair.b.get(), "x", 1) == 1);
  run_once(base.get());
  CHECK(log.seen == std::vector<std::string>{"in"});
  run_once(base.get());  // level-triggered: still readable, reported again
  CHECK(log.seen == std::vector<std::string>{"in", "in"});

  // Watching for writable instead: one change of the registration.
  REQUIRE(poller.watch(pair.a.get(), watch, EPOLLOUT) == 0);
  log.seen.clear();
  run_once(base.get());
  CHECK(log.seen == std::vector<std::string>{"out"});

  // Nothing wanted: out of the set, not reported although ready both ways.
  REQUIRE(poller.watch(pair.a.get(), watch, 0) == 0);
  CHECK_FALSE(watch.in_set);
  log.seen.clear();
  run_once(base.get());
  CHECK(log.seen.empty());

  // And back in.
  REQUIRE(poller.watch(pair.a.get(), watch, EPOLLIN | EPOLLOUT) == 0);
  run_once(base.get());
  CHECK(log.seen == std::vector<std::string>{"in", "out"});
}

TEST_CASE_FIXTURE(OneWatch, "watching for what is already watched changes nothing") {
  REQUIRE(poller.watch(pair.a.get(), watch, EPOLLIN) == 0);
  // The descriptor is closed behind the Poller's back: a real epoll_ctl
  // would now fail (EBADF); asking for the same events makes none.
  const int fd = pair.a.release();
  ::close(fd);
  CHECK(poller.watch(fd, watch, EPOLLIN) == 0);
  CHECK(poller.watch(fd, watch, EPOLLOUT) == EBADF);
  poller.closed(watch);
  CHECK_FALSE(watch.in_set);
  CHECK(poller.watch(fd, watch, 0) == 0);  // not in the set: nothing to take out
}

TEST_CASE("closing a watched socket takes it out of the set") {
  EventBasePtr base(event_base_new());
  Poller poller(base.get());
  Log log;
  Poller::Watch watch{record, &log};
  {
    Pair pair;
    REQUIRE(poller.watch(pair.a.get(), watch, EPOLLIN | EPOLLOUT) == 0);
    poller.closed(watch);
  }
  // The same descriptor numbers again, never registered: nothing reported.
  Pair again;
  REQUIRE(::write(again.b.get(), "x", 1) == 1);
  run_once(base.get());
  CHECK(log.seen.empty());
}

TEST_CASE("after_batch runs once every report of the batch was told") {
  EventBasePtr base(event_base_new());
  Poller poller(base.get());
  Pair first;
  Pair second;
  Log log;
  struct Owner {
    Poller* poller;
    Log* log;
  } owner{&poller, &log};
  auto report = [](void* arg, uint32_t) {
    auto* o = static_cast<Owner*>(arg);
    o->log->seen.emplace_back("report");
    o->poller->after_batch([](void* a) { static_cast<Owner*>(a)->log->seen.emplace_back("flush"); },
                           arg);
  };
  Poller::Watch a{report, &owner};
  Poller::Watch b{report, &owner};
  REQUIRE(poller.watch(first.a.get(), a, EPOLLOUT) == 0);
  REQUIRE(poller.watch(second.a.get(), b, EPOLLOUT) == 0);
  run_once(base.get());
  CHECK(log.seen == std::vector<std::string>{"report", "report", "flush", "flush"});
  log.seen.clear();
  run_once(base.get());  // the list was emptied: each flush once per batch asked for it
  CHECK(log.seen == std::vector<std::string>{"report", "report", "flush", "flush"});
}

TEST_CASE("a registration that outlives its closed descriptor reaches nobody") {
  // posix_spawn's child holds a copy of every descriptor until it execs:
  // a socket closed meanwhile stays in the set, and may be reported after
  // its owner is gone. Here a dup() plays the child.
  EventBasePtr base(event_base_new());
  Poller poller(base.get());
  Log log;
  Pair pair;
  {
    Poller::Watch watch{record, &log};
    REQUIRE(poller.watch(pair.a.get(), watch, EPOLLIN) == 0);
    const Fd copy(::dup(pair.a.get()));
    REQUIRE(copy);
    poller.closed(watch);
    pair.a.reset();  // still referenced by `copy`: still in the set
    REQUIRE(::write(pair.b.get(), "x", 1) == 1);
    run_once(base.get());
    CHECK(log.seen.empty());
    // A new owner takes the retired slot: the old registration's reports
    // still reach nobody, the new one's reach it.
    Pair next;
    Log next_log;
    Poller::Watch next_watch{record, &next_log};
    REQUIRE(poller.watch(next.a.get(), next_watch, EPOLLIN) == 0);
    CHECK(next_watch.slot == 0);
    REQUIRE(::write(next.b.get(), "y", 1) == 1);
    run_once(base.get());
    CHECK(log.seen.empty());
    CHECK(next_log.seen == std::vector<std::string>{"in"});
    poller.closed(next_watch);
  }
}
