#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "fulcrum/scheduler.hpp"

using namespace fulcrum;
using namespace std::chrono_literals;

namespace {

// Servers with live states owned by the fixture.
struct Pool {
  std::deque<ServerState> states;
  std::vector<SchedServer> servers;

  SchedServer& add(const std::string& name, uint32_t weight = 1) {
    states.emplace_back();
    ServerStateWriter writer(states.back());
    writer.set_assigned_weight(weight);
    writer.set_weight(weight);
    servers.push_back(SchedServer{name, 0, false, &states.back()});
    return servers.back();
  }
  std::unique_ptr<Scheduler> make(SchedulerKind kind, HashKey key = HashKey::source_ip) const {
    return make_scheduler(SchedulerOptions{kind, key, 1}, servers);
  }
};

// What the control plane would decide for a server; the schedulers only read.
void set_status(ServerState& state, ServerStatus status,
                SteadyTime at = std::chrono::steady_clock::now()) {
  ServerStateWriter(state).set_status(status, at);
}

// A client address from an IPv4 or IPv6 literal (the loader's own parser;
// at() throws on a bad literal, also where kClient is made, before any test).
SocketAddress client_at(const std::string& ip, uint16_t port = 40000) {
  return parse_ip_literal(ip).addresses.at(0).with_port(port);
}

const SocketAddress kClient = client_at("127.0.0.1");

std::optional<uint32_t> pick(Scheduler& scheduler, const SocketAddress& client = kClient,
                             std::optional<uint32_t> avoid = std::nullopt) {
  std::vector<uint32_t> failed;
  if (avoid) failed.push_back(*avoid);
  return scheduler.pick(PickContext{client, avoid ? 1u : 0u, failed, 0});
}

// Names of `count` consecutive picks, "-" for none.
std::string picks(Scheduler& scheduler, const Pool& pool, int count) {
  std::string out;
  for (int i = 0; i < count; ++i) {
    auto index = pick(scheduler);
    out += index ? pool.servers[*index].name : "-";
  }
  return out;
}

// Places `count` sessions: each pick takes an active slot on the server, as
// a session does. Returns the resulting active counts.
std::vector<uint32_t> place(Scheduler& scheduler, Pool& pool, int count) {
  for (int i = 0; i < count; ++i) {
    auto index = pick(scheduler);
    REQUIRE(index);
    pool.states[*index].active++;
  }
  std::vector<uint32_t> active;
  for (auto& state : pool.states) active.push_back(state.active.load());
  return active;
}

}  // namespace

// ---- rr

TEST_CASE("rr walks servers in configuration order") {
  Pool pool;
  pool.add("a");
  pool.add("b");
  pool.add("c");
  CHECK(picks(*pool.make(SchedulerKind::rr), pool, 7) == "abcabca");
}

TEST_CASE("rr ignores weights and passes over unusable servers exactly once") {
  Pool pool;
  pool.add("a", 5);
  pool.add("b", 1);
  pool.add("c", 0);  // weight 0 = drain
  pool.add("d", 1);
  set_status(pool.states[3], ServerStatus::down);
  CHECK(picks(*pool.make(SchedulerKind::rr), pool, 6) == "ababab");
}

TEST_CASE("rr skips a server at its max_connections") {
  Pool pool;
  pool.add("a").max_connections = 1;
  pool.add("b");
  auto rr = pool.make(SchedulerKind::rr);
  pool.states[0].active = 1;
  CHECK(picks(*rr, pool, 3) == "bbb");
  pool.states[0].active = 0;
  CHECK(picks(*rr, pool, 2) == "ab");
}

TEST_CASE("every scheduler: a retry avoids the failed server while another is usable") {
  for (auto kind : {SchedulerKind::rr, SchedulerKind::wrr, SchedulerKind::lc, SchedulerKind::wlc,
                    SchedulerKind::maglev, SchedulerKind::p2c}) {
    CAPTURE(to_string(kind));
    Pool pool;
    pool.add("a");
    pool.add("b");
    auto scheduler = pool.make(kind);
    for (int i = 0; i < 50; ++i) {
      CHECK(pick(*scheduler, client_at("198.18.0." + std::to_string(i)), 0u) == 1u);
      CHECK(pick(*scheduler, client_at("198.18.0." + std::to_string(i)), 1u) == 0u);
    }
    // The failed server is the only usable one left: it is still offered.
    set_status(pool.states[1], ServerStatus::down);
    scheduler->rebuild();
    CHECK(pick(*scheduler, kClient, 0u) == 0u);
  }
}

TEST_CASE("every scheduler: no usable server gives nullopt") {
  for (auto kind : {SchedulerKind::rr, SchedulerKind::wrr, SchedulerKind::lc, SchedulerKind::wlc,
                    SchedulerKind::maglev, SchedulerKind::p2c}) {
    CAPTURE(to_string(kind));
    Pool pool;
    pool.add("a");
    pool.add("b", 0);
    set_status(pool.states[0], ServerStatus::maint);
    auto scheduler = pool.make(kind);
    scheduler->rebuild();
    CHECK(picks(*scheduler, pool, 3) == "---");
    Pool empty;
    CHECK(picks(*empty.make(kind), empty, 1) == "-");
  }
}

// ---- wrr

TEST_CASE("smooth wrr matches nginx's order for 5,1,1") {
  Pool pool;
  pool.add("a", 5);
  pool.add("b", 1);
  pool.add("c", 1);
  CHECK(picks(*pool.make(SchedulerKind::wrr), pool, 14) == "aabacaaaabacaa");
}

// Smooth WRR keeps every prefix of the cycle within +-1 of its exact share;
// an arbitrary window (the difference of two prefixes) stays strictly within
// +-2. SPEC.md asks +-1 for any window, which no sequence can give for every
// weight set; docs/scheduling.md explains.
TEST_CASE("smooth wrr cycle: exact split, prefixes within 1, any window within 2") {
  const std::vector<uint32_t> weights{3, 7, 2, 0, 5};
  const auto sequence = smooth_wrr_sequence(weights);
  const size_t total = 17;
  REQUIRE(sequence.size() == total);
  std::vector<int> counts(weights.size(), 0);
  for (auto index : sequence) counts[index]++;
  CHECK(counts == std::vector<int>{3, 7, 2, 0, 5});
  double worst_prefix = 0;
  double worst_window = 0;
  for (size_t start = 0; start < total; ++start) {
    for (size_t window = 1; window <= total; ++window) {
      std::vector<int> seen(weights.size(), 0);
      for (size_t k = 0; k < window; ++k) seen[sequence[(start + k) % total]]++;
      for (size_t s = 0; s < weights.size(); ++s) {
        const double deviation =
            std::abs(seen[s] - static_cast<double>(window) * weights[s] / total);
        worst_window = std::max(worst_window, deviation);
        if (start == 0) worst_prefix = std::max(worst_prefix, deviation);
      }
    }
  }
  CHECK(worst_prefix <= 1.0);
  CHECK(worst_window < 2.0);
}

TEST_CASE("smooth wrr reduces common divisors and handles all-zero weights") {
  CHECK(smooth_wrr_sequence({3, 3, 3}) == std::vector<uint32_t>{0, 1, 2});
  CHECK(smooth_wrr_sequence({0, 0}).empty());
}

TEST_CASE("wrr over many cycles splits exactly by weight") {
  Pool pool;
  pool.add("a", 1);
  pool.add("b", 2);
  pool.add("c", 3);
  auto wrr = pool.make(SchedulerKind::wrr);
  std::map<char, int> counts;
  for (char c : picks(*wrr, pool, 600)) counts[c]++;
  CHECK(counts == std::map<char, int>{{'a', 100}, {'b', 200}, {'c', 300}});
}

TEST_CASE("wrr passes over a down or full server and keeps the others' proportions") {
  Pool pool;
  pool.add("a", 5);
  pool.add("b", 1).max_connections = 1;
  pool.add("c", 1);
  auto wrr = pool.make(SchedulerKind::wrr);
  set_status(pool.states[1], ServerStatus::down);
  CHECK(picks(*wrr, pool, 12) == "aaacaaaaacaa");
  set_status(pool.states[1], ServerStatus::up);
  pool.states[1].active = 1;  // full
  CHECK(picks(*wrr, pool, 12) == "aaacaaaaacaa");
}

// ---- lc, wlc

TEST_CASE("lc picks the server with the fewest active sessions") {
  Pool pool;
  pool.add("a");
  pool.add("b");
  pool.add("c");
  pool.states[0].active = 5;
  pool.states[1].active = 2;
  pool.states[2].active = 7;
  auto lc = pool.make(SchedulerKind::lc);
  CHECK(pick(*lc) == 1u);
  // Filling up: every placement goes to the least loaded.
  CHECK(place(*lc, pool, 16) == std::vector<uint32_t>{10, 10, 10});
}

TEST_CASE("lc breaks ties fairly") {
  Pool pool;
  pool.add("a");
  pool.add("b");
  pool.add("c");
  auto lc = pool.make(SchedulerKind::lc);
  std::map<uint32_t, int> counts;
  for (int i = 0; i < 3000; ++i) counts[*pick(*lc)]++;  // loads never change: always a 3-way tie
  REQUIRE(counts.size() == 3);
  for (auto [index, count] : counts) {
    const uint32_t server =
        index;  // CAPTURE refers to it from a lambda: clang 14 takes no structured binding there
    CAPTURE(server);
    CHECK(count > 800);  // 1000 expected; a fixed tie-break would give 3000 to one
    CHECK(count < 1200);
  }
}

TEST_CASE("lc ignores weights except 0; wlc follows them") {
  Pool pool;
  pool.add("a", 1);
  pool.add("b", 2);
  pool.add("c", 3);
  pool.add("drained", 0);
  CHECK(place(*pool.make(SchedulerKind::lc), pool, 30) == std::vector<uint32_t>{10, 10, 10, 0});
  for (auto& state : pool.states) state.active = 0;
  CHECK(place(*pool.make(SchedulerKind::wlc), pool, 60) == std::vector<uint32_t>{10, 20, 30, 0});
}

TEST_CASE("wlc with no load prefers the heavier server ((active + 1) / weight)") {
  Pool pool;
  pool.add("light", 1);
  pool.add("heavy", 4);
  auto wlc = pool.make(SchedulerKind::wlc);
  for (int i = 0; i < 20; ++i) CHECK(pick(*wlc) == 1u);
}

// ---- p2c

TEST_CASE("p2c keeps loads close and follows weights") {
  Pool pool;
  for (int i = 0; i < 8; ++i) pool.add("s" + std::to_string(i));
  auto active = place(*pool.make(SchedulerKind::p2c), pool, 8000);
  const auto [low, high] = std::minmax_element(active.begin(), active.end());
  CHECK(*high - *low <= 20);  // random choice alone would spread about +-90

  Pool weighted;
  weighted.add("a", 1);
  weighted.add("b", 3);
  auto split = place(*weighted.make(SchedulerKind::p2c), weighted, 4000);
  CHECK(split[0] > 900);
  CHECK(split[0] < 1100);
}

TEST_CASE("p2c skips unusable servers") {
  Pool pool;
  pool.add("a");
  pool.add("b", 0);
  pool.add("c");
  set_status(pool.states[2], ServerStatus::down);
  auto p2c = pool.make(SchedulerKind::p2c);
  for (int i = 0; i < 50; ++i) CHECK(pick(*p2c) == 0u);
}

// ---- maglev

namespace {

std::vector<std::string> names(int count) {
  std::vector<std::string> out;
  out.reserve(count);
  for (int i = 0; i < count; ++i) out.push_back("server-" + std::to_string(i));
  return out;
}

}  // namespace

TEST_CASE("maglev: every server gets its weighted share of the 65537 slots within 1%") {
  const auto servers = names(10);
  const std::vector<uint32_t> weights{1, 2, 3, 4, 5, 1, 2, 3, 4, 5};
  const auto table = build_maglev_table(servers, weights);
  REQUIRE(table.size() == 65537);
  std::vector<int> counts(servers.size(), 0);
  for (uint32_t index : table) counts.at(index)++;
  for (size_t i = 0; i < servers.size(); ++i) {
    const double share = 65537.0 * weights[i] / 30.0;
    CAPTURE(i);
    CHECK(std::abs(counts[i] - share) / share < 0.01);
  }
}

TEST_CASE(
    "maglev: removing 1 of N remaps few slots of the others; adding it back restores the table") {
  const auto servers = names(10);
  std::vector<uint32_t> weights(10, 1);
  const auto before = build_maglev_table(servers, weights);
  weights[4] = 0;  // server-4 goes down
  const auto without = build_maglev_table(servers, weights);
  int moved = 0;
  int orphaned = 0;
  for (size_t slot = 0; slot < before.size(); ++slot) {
    CHECK(without[slot] != 4u);
    if (before[slot] == 4) {
      ++orphaned;
    } else if (without[slot] != before[slot]) {
      ++moved;  // a slot of a server that stayed went elsewhere
    }
  }
  CHECK(orphaned > 6000);  // about 1/10 of the table had to move
  MESSAGE("slots of staying servers remapped: " << moved << " of 65537");
  CHECK(moved < 65537 * 3 / 100);
  weights[4] = 1;
  CHECK(build_maglev_table(servers, weights) == before);
}

TEST_CASE("maglev: the table depends on names and weights, not on list order") {
  const std::vector<std::string> forward{"alpha", "beta", "gamma"};
  const std::vector<std::string> backward{"gamma", "beta", "alpha"};
  const auto a = build_maglev_table(forward, {1, 2, 3});
  const auto b = build_maglev_table(backward, {3, 2, 1});
  REQUIRE(a.size() == b.size());
  for (size_t slot = 0; slot < a.size(); ++slot) {
    REQUIRE(forward[a[slot]] == backward[b[slot]]);
  }
}

TEST_CASE("maglev: golden table prefix and hashes pin the mapping") {
  // If this fails, every client of every deployment moves: change the
  // expected values only on purpose, and say so in the release notes.
  CHECK(stable_hash("app1", 4, 0) == 0x559721a43f6847d7ULL);
  CHECK(client_hash(client_at("198.18.0.7"), HashKey::source_ip) == 0x735e28b1ad0f13a8ULL);
  const auto table = build_maglev_table({"app1", "app2", "app3"}, {1, 1, 1});
  const std::vector<uint32_t> prefix(table.begin(), table.begin() + 24);
  CHECK(prefix == std::vector<uint32_t>{0, 1, 0, 1, 2, 2, 1, 1, 2, 0, 2, 2,
                                        0, 1, 0, 2, 1, 2, 1, 0, 1, 0, 2, 0});
}

TEST_CASE("maglev scheduler: the same client always reaches the same server, across instances") {
  Pool pool;
  for (int i = 0; i < 5; ++i) pool.add("s" + std::to_string(i));
  auto first = pool.make(SchedulerKind::maglev);
  auto second = pool.make(SchedulerKind::maglev);
  std::map<uint32_t, int> spread;
  for (int i = 0; i < 200; ++i) {
    const auto client = client_at("198.18.1." + std::to_string(i), static_cast<uint16_t>(1000 + i));
    const auto a = pick(*first, client);
    REQUIRE(a);
    CHECK(pick(*first, client) == a);
    CHECK(pick(*second, client_at("198.18.1." + std::to_string(i), 9)) ==
          a);  // source_ip: port ignored
    spread[*a]++;
  }
  CHECK(spread.size() == 5);
}

TEST_CASE("maglev scheduler: source_ip_port spreads one address's ports") {
  Pool pool;
  for (int i = 0; i < 4; ++i) pool.add("s" + std::to_string(i));
  auto maglev = pool.make(SchedulerKind::maglev, HashKey::source_ip_port);
  std::map<uint32_t, int> spread;
  for (uint16_t port = 1000; port < 1100; ++port)
    spread[*pick(*maglev, client_at("198.19.113.9", port))]++;
  CHECK(spread.size() == 4);
}

TEST_CASE(
    "maglev scheduler: IPv6 clients hash all 16 bytes of the address, and the port with "
    "source_ip_port") {
  CHECK(client_hash(client_at("2001:db8::7"), HashKey::source_ip) == 0xbd58fc51043a6b8aULL);
  Pool pool;
  for (int i = 0; i < 5; ++i) pool.add("s" + std::to_string(i));
  auto by_ip = pool.make(SchedulerKind::maglev);
  auto again = pool.make(SchedulerKind::maglev);
  std::map<uint32_t, int> spread;
  for (int i = 0; i < 200; ++i) {
    // Clients differ in the first and in the last group: both count.
    const std::string ip = "2001:db8:" + std::to_string(i % 10) + "::" + std::to_string(i / 10 + 1);
    const auto a = pick(*by_ip, client_at(ip, 1000));
    REQUIRE(a);
    CHECK(pick(*again, client_at(ip, 2000)) == a);  // source_ip: port ignored
    spread[*a]++;
  }
  CHECK(spread.size() == 5);
  auto by_port = pool.make(SchedulerKind::maglev, HashKey::source_ip_port);
  std::map<uint32_t, int> ports;
  for (uint16_t port = 1000; port < 1100; ++port)
    ports[*pick(*by_port, client_at("2001:db8::9", port))]++;
  CHECK(ports.size() == 5);
}

TEST_CASE(
    "maglev scheduler: a down server's clients move on rebuild, the others stay, and all return") {
  Pool pool;
  for (int i = 0; i < 5; ++i) pool.add("s" + std::to_string(i));
  auto maglev = pool.make(SchedulerKind::maglev);
  std::vector<uint32_t> before;
  before.reserve(500);
  for (int i = 0; i < 500; ++i)
    before.push_back(*pick(
        *maglev, client_at("198.19." + std::to_string(i / 250) + "." + std::to_string(i % 250))));
  const auto now = std::chrono::steady_clock::now();
  set_status(pool.states[2], ServerStatus::down, now);
  maglev->rebuild();
  int stayed = 0;
  int had_two = 0;
  for (int i = 0; i < 500; ++i) {
    const auto after = *pick(
        *maglev, client_at("198.19." + std::to_string(i / 250) + "." + std::to_string(i % 250)));
    CHECK(after != 2u);
    if (before[i] == 2) {
      ++had_two;
    } else if (after == before[i]) {
      ++stayed;
    }
  }
  CHECK(stayed >= (500 - had_two) * 97 / 100);
  set_status(pool.states[2], ServerStatus::up, now - 1h);
  maglev->rebuild();
  for (int i = 0; i < 500; ++i) {
    CHECK(*pick(*maglev, client_at("198.19." + std::to_string(i / 250) + "." +
                                   std::to_string(i % 250))) == before[i]);
  }
}

// ---- weights, backup

TEST_CASE("backup servers serve only while no primary is up") {
  for (auto kind : {SchedulerKind::rr, SchedulerKind::wrr, SchedulerKind::lc, SchedulerKind::wlc,
                    SchedulerKind::maglev, SchedulerKind::p2c}) {
    CAPTURE(to_string(kind));
    Pool pool;
    pool.add("p1");
    pool.add("b1").backup = true;
    pool.add("p2");
    pool.add("b2").backup = true;
    auto scheduler = pool.make(kind);
    const auto now = std::chrono::steady_clock::now();
    std::map<std::string, int> seen;
    for (int i = 0; i < 40; ++i)
      seen[pool.servers[*pick(*scheduler, client_at("198.18.1." + std::to_string(i)))].name]++;
    CHECK(seen.count("b1") == 0);
    CHECK(seen.count("b2") == 0);

    set_status(pool.states[0], ServerStatus::down, now);
    scheduler->rebuild();
    seen.clear();
    for (int i = 0; i < 40; ++i)
      seen[pool.servers[*pick(*scheduler, client_at("198.18.1." + std::to_string(i)))].name]++;
    CHECK(seen == std::map<std::string, int>{{"p2", 40}});  // one primary up: still no backup

    set_status(pool.states[2], ServerStatus::down, now);
    scheduler->rebuild();
    seen.clear();
    for (int i = 0; i < 40; ++i)
      seen[pool.servers[*pick(*scheduler, client_at("198.18.1." + std::to_string(i)))].name]++;
    CHECK(seen.count("p1") == 0);
    CHECK(seen.count("p2") == 0);
    CHECK(seen["b1"] + seen["b2"] == 40);

    set_status(pool.states[0], ServerStatus::up, now);
    scheduler->rebuild();
    CHECK(pool.servers[*pick(*scheduler)].name == "p1");
  }
}

TEST_CASE("drained primaries (weight 0) hand over to the backups") {
  Pool pool;
  pool.add("p1", 0);
  pool.add("b1").backup = true;
  CHECK(picks(*pool.make(SchedulerKind::wrr), pool, 3) == "b1b1b1");
}

TEST_CASE("wrr's cycle follows a weight the control plane changed, once rebuilt") {
  Pool pool;
  pool.add("a", 4);
  pool.add("b", 4);
  auto wrr = pool.make(SchedulerKind::wrr);
  ServerStateWriter(pool.states[1]).set_weight(1);  // b ramping under slow start
  wrr->rebuild();
  std::map<char, int> counts;
  for (char c : picks(*wrr, pool, 50)) counts[c]++;
  CHECK(counts == std::map<char, int>{{'a', 40}, {'b', 10}});
  ServerStateWriter(pool.states[1]).set_weight(4);  // ramp done
  wrr->rebuild();
  counts.clear();
  for (char c : picks(*wrr, pool, 50)) counts[c]++;
  CHECK(counts == std::map<char, int>{{'a', 25}, {'b', 25}});
}

TEST_CASE("every scheduler: with all servers full, picks fail; the last free one is found") {
  for (auto kind : {SchedulerKind::rr, SchedulerKind::wrr, SchedulerKind::lc, SchedulerKind::wlc,
                    SchedulerKind::maglev, SchedulerKind::p2c}) {
    CAPTURE(to_string(kind));
    Pool pool;
    for (int i = 0; i < 200; ++i) {
      pool.add("s" + std::to_string(i), static_cast<uint32_t>(1 + i % 10)).max_connections = 1;
    }
    auto scheduler = pool.make(kind);
    for (auto& state : pool.states) state.active = 1;
    CHECK_FALSE(pick(*scheduler));
    pool.states[137].active = 0;  // one slot frees up, on a light server deep in the cycle
    for (int i = 0; i < 5; ++i)
      CHECK(pick(*scheduler, client_at("198.18.9." + std::to_string(i))) == 137u);
  }
}

TEST_CASE("every scheduler: retries skip every server the session already failed on") {
  for (auto kind : {SchedulerKind::rr, SchedulerKind::wrr, SchedulerKind::lc, SchedulerKind::wlc,
                    SchedulerKind::maglev, SchedulerKind::p2c}) {
    CAPTURE(to_string(kind));
    Pool pool;
    pool.add("a");
    pool.add("b");
    pool.add("c");
    auto scheduler = pool.make(kind);
    const std::vector<uint32_t> failed{0, 2};
    for (int i = 0; i < 30; ++i) {
      const auto client = client_at("198.18.2." + std::to_string(i));
      CHECK(scheduler->pick(PickContext{client, 2, failed, 0}) == 1u);
    }
  }
}

TEST_CASE("every scheduler: once every primary failed for a session, a backup gets it") {
  for (auto kind : {SchedulerKind::rr, SchedulerKind::wrr, SchedulerKind::lc, SchedulerKind::wlc,
                    SchedulerKind::maglev, SchedulerKind::p2c}) {
    CAPTURE(to_string(kind));
    Pool pool;
    pool.add("p1");
    pool.add("p2");
    pool.add("b1").backup = true;
    auto scheduler = pool.make(kind);
    const std::vector<uint32_t> one{0};
    const std::vector<uint32_t> both{0, 1};
    CHECK(scheduler->pick(PickContext{kClient, 1, one, 0}) == 1u);
    CHECK(scheduler->pick(PickContext{kClient, 2, both, 0}) == 2u);
    // Primaries full: the backup absorbs the session rather than failing it.
    pool.servers[0].max_connections = 1;
    pool.servers[1].max_connections = 1;
    auto limited = pool.make(kind);
    pool.states[0].active = 1;
    pool.states[1].active = 1;
    CHECK(pick(*limited) == 2u);
  }
}

TEST_CASE("a reloaded rr or wrr scheduler continues the rotation where the old one was") {
  for (auto kind : {SchedulerKind::rr, SchedulerKind::wrr}) {
    CAPTURE(to_string(kind));
    Pool pool;
    pool.add("a");
    pool.add("b");
    pool.add("c");
    auto before = pool.make(kind);
    CHECK(picks(*before, pool, 2) == "ab");
    auto after = pool.make(kind);
    after->continue_from(*before);
    CHECK(picks(*after, pool, 4) == "cabc");
    auto other_kind = pool.make(SchedulerKind::lc);
    auto fresh = pool.make(kind);
    fresh->continue_from(*other_kind);  // nothing to carry from another kind
    CHECK(picks(*fresh, pool, 1) == "a");
  }
}
