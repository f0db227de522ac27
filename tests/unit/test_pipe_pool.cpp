#include <doctest/doctest.h>

#include <unistd.h>

#include <string>

#include "fulcrum/admission.hpp"
#include "fulcrum/pipe_pool.hpp"

using namespace fulcrum;

namespace {

constexpr int64_t kBudget = 100;
constexpr size_t kPage = 4096;  // the smallest pipe F_SETPIPE_SZ gives

}  // namespace

// A short write into a pipe (the kernel took part of the bytes: here the
// pipe is smaller than the write, in the relay a page allocation that
// failed half way) must leave the lease knowing what the pipe holds, so that
// the pipe is closed, never pooled with those bytes for the next session.
TEST_CASE("a pipe that took part of a write is closed, not pooled") {
  Admission admission(10, kBudget);
  PipePool pool(admission, kPage, 16);
  {
    PipeLease lease = pool.acquire();
    REQUIRE(lease);
    REQUIRE(lease.capacity() == kPage);
    const std::string data(3 * kPage, 'x');
    CHECK_FALSE(lease.fill(data.data(), data.size()));
    CHECK(lease.bytes == kPage);
  }
  CHECK(pool.idle_count() == 0);
  CHECK(admission.free_fds() == kBudget);  // both ends closed, back in the budget
}

TEST_CASE("a pipe that refused a write keeps the bytes it already held") {
  Admission admission(10, kBudget);
  PipePool pool(admission, kPage, 16);
  {
    PipeLease lease = pool.acquire();
    REQUIRE(lease);
    const std::string page(kPage, 'x');
    CHECK(lease.fill(page.data(), page.size()));
    CHECK(lease.bytes == kPage);
    CHECK_FALSE(lease.fill("y", 1));  // full: EAGAIN
    CHECK(lease.bytes == kPage);
  }
  CHECK(pool.idle_count() == 0);
  CHECK(admission.free_fds() == kBudget);
}

TEST_CASE("a drained pipe goes back to the pool and comes out empty") {
  Admission admission(10, kBudget);
  PipePool pool(admission, kPage, 16);
  {
    PipeLease lease = pool.acquire();
    REQUIRE(lease);
    CHECK(lease.fill("abc", 3));
    CHECK(lease.bytes == 3);
    char buffer[8];
    REQUIRE(::read(lease.read_fd(), buffer, sizeof buffer) == 3);
    lease.bytes = 0;
  }
  CHECK(pool.idle_count() == 1);
  CHECK(admission.free_fds() == kBudget - 2);  // the idle pipe keeps its descriptors
  PipeLease again = pool.acquire();
  REQUIRE(again);
  CHECK(pool.idle_count() == 0);
  char byte;
  CHECK(::read(again.read_fd(), &byte, 1) == -1);  // empty (non-blocking: EAGAIN)
}
