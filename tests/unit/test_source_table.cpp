// source_limits' table (source_table.hpp): per-client counts and buckets.
#include <doctest/doctest.h>

#include <string>

#include "fulcrum/source_table.hpp"

using namespace fulcrum;
using namespace std::chrono_literals;
using Verdict = SourceTable::Verdict;

namespace {

SocketAddress client(std::string_view text) { return parse_address(text).addresses.at(0); }

}  // namespace

TEST_CASE("source table: concurrent sessions per client, an IPv6 /64 being one client") {
  SourceTable table;
  table.set_limits(2, 0);
  const auto now = SourceTable::Clock::now();
  CHECK(table.admit(client("198.18.0.7:1000"), now) == Verdict::admitted);
  CHECK(table.admit(client("198.18.0.7:1001"), now) == Verdict::admitted);
  CHECK(table.admit(client("198.18.0.7:1002"), now) == Verdict::over_connections);
  CHECK(table.admit(client("198.18.0.8:1000"), now) == Verdict::admitted);
  table.release(client("198.18.0.7:1000"));
  CHECK(table.admit(client("198.18.0.7:1003"), now) == Verdict::admitted);
  CHECK(table.admit(client("[2001:db8:1:2::7]:1000"), now) == Verdict::admitted);
  CHECK(table.admit(client("[2001:db8:1:2::8]:1000"), now) == Verdict::admitted);
  CHECK(table.admit(client("[2001:db8:1:2:ffff::9]:1000"), now) == Verdict::over_connections);
  CHECK(table.admit(client("[2001:db8:1:3::7]:1000"), now) == Verdict::admitted);
  // Without a rate, a client with no open session leaves the table.
  CHECK(table.size() == 4);
  table.release(client("198.18.0.8:1000"));
  CHECK(table.size() == 3);
}

TEST_CASE("source table: a burst of `rate`, then `rate` per second") {
  SourceTable table;
  table.set_limits(0, 10);
  const auto t0 = SourceTable::Clock::now();
  int admitted = 0;
  for (int i = 0; i < 30; ++i) {
    const Verdict verdict = table.admit(client("198.18.0.7:1000"), t0);
    if (verdict == Verdict::admitted) ++admitted;
    CHECK((verdict == Verdict::admitted) == (i < 10));
  }
  CHECK(admitted == 10);
  // 250 ms later: two and a half tokens, two sessions.
  CHECK(table.admit(client("198.18.0.7:1000"), t0 + 250ms) == Verdict::admitted);
  CHECK(table.admit(client("198.18.0.7:1000"), t0 + 250ms) == Verdict::admitted);
  CHECK(table.admit(client("198.18.0.7:1000"), t0 + 250ms) == Verdict::over_rate);
  // A full second refills the bucket, never beyond `rate`.
  for (int i = 0; i < 10; ++i)
    CHECK(table.admit(client("198.18.0.7:1000"), t0 + 5s) == Verdict::admitted);
  CHECK(table.admit(client("198.18.0.7:1000"), t0 + 5s) == Verdict::over_rate);
}

TEST_CASE("source table: bounded; idle clients make room, busy ones do not") {
  SourceTable table;
  table.set_limits(1, 0);
  const auto now = SourceTable::Clock::now();
  // Every client holds a session: the table fills, then admits untracked.
  size_t untracked = 0;
  for (uint32_t i = 0; i < kSourceTableClients + 1000; ++i) {
    const std::string address = "10." + std::to_string((i >> 16) & 255) + "." +
                                std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255) +
                                ":1";
    if (table.admit(client(address), now) == Verdict::untracked) ++untracked;
  }
  CHECK(table.size() <= kSourceTableClients);
  CHECK(untracked >= 1000);
  // With a rate, clients whose sessions ended and whose bucket refilled go
  // when room is needed: fill every shard at t0 (some clients untracked,
  // their buckets not full yet), then 2 s later every new client finds room.
  SourceTable rated;
  rated.set_limits(0, 5);
  const auto address_of = [](uint32_t i) {
    return client("10." + std::to_string((i >> 16) & 255) + "." + std::to_string((i >> 8) & 255) +
                  "." + std::to_string(i & 255) + ":1");
  };
  size_t full = 0;
  for (uint32_t i = 0; i < kSourceTableClients + 10000; ++i) {
    const SocketAddress one = address_of(i);
    if (rated.admit(one, now) == Verdict::untracked) ++full;
    rated.release(one);
  }
  CHECK(full > 0);
  size_t later = 0;
  for (uint32_t i = 0; i < 5000; ++i) {
    if (rated.admit(address_of(200000 + i), now + 2s) != Verdict::admitted) ++later;
  }
  CHECK(later == 0);
  CHECK(rated.size() <= kSourceTableClients);
}
