#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "fulcrum/scheduler.hpp"

using namespace fulcrum;

namespace {

// Servers with live states owned by the fixture.
struct Pool {
  std::deque<ServerState> states;
  std::vector<SchedServer> servers;

  void add(const std::string& name, uint32_t weight = 1, uint32_t max_connections = 0) {
    states.emplace_back();
    servers.push_back(SchedServer{name, weight, max_connections, &states.back()});
  }
};

std::string picks(Scheduler& scheduler, const Pool& pool, int count) {
  SocketAddress client;
  std::string out;
  for (int i = 0; i < count; ++i) {
    auto index = scheduler.pick(PickContext{client, 0, std::nullopt});
    out += index ? pool.servers[*index].name : "-";
  }
  return out;
}

}  // namespace

TEST_CASE("rr walks servers in configuration order") {
  Pool pool;
  pool.add("a");
  pool.add("b");
  pool.add("c");
  auto rr = make_rr_scheduler(pool.servers);
  CHECK(picks(*rr, pool, 7) == "abcabca");
}

TEST_CASE("rr ignores weights and skips unusable servers") {
  Pool pool;
  pool.add("a", 5);
  pool.add("b", 1);
  pool.add("c", 0);  // weight 0 = drain
  pool.add("d", 1);
  pool.states[3].status = ServerStatus::down;
  auto rr = make_rr_scheduler(pool.servers);
  CHECK(picks(*rr, pool, 6) == "ababab");
}

TEST_CASE("rr skips a server at its max_connections") {
  Pool pool;
  pool.add("a", 1, 1);
  pool.add("b");
  pool.states[0].active = 1;
  auto rr = make_rr_scheduler(pool.servers);
  CHECK(picks(*rr, pool, 3) == "bbb");
  pool.states[0].active = 0;
  CHECK(picks(*rr, pool, 2) == "ab");
}

TEST_CASE("a retry avoids the server that failed while another is usable") {
  Pool pool;
  pool.add("a");
  pool.add("b");
  auto rr = make_rr_scheduler(pool.servers);
  SocketAddress client;
  for (int i = 0; i < 10; ++i) {
    CHECK(rr->pick(PickContext{client, 1, 0u}) == 1u);
  }
  pool.states[1].status = ServerStatus::down;
  // The failed server is the only usable one left: it is still offered.
  CHECK(rr->pick(PickContext{client, 1, 0u}) == 0u);
}

TEST_CASE("no usable server gives nullopt") {
  Pool pool;
  pool.add("a");
  pool.states[0].status = ServerStatus::maint;
  auto rr = make_rr_scheduler(pool.servers);
  CHECK(picks(*rr, pool, 2) == "--");
  Pool empty;
  auto none = make_rr_scheduler(empty.servers);
  CHECK(picks(*none, empty, 1) == "-");
}

TEST_CASE("smooth wrr matches nginx's order for 5,1,1") {
  Pool pool;
  pool.add("a", 5);
  pool.add("b", 1);
  pool.add("c", 1);
  auto wrr = make_wrr_scheduler(pool.servers);
  CHECK(picks(*wrr, pool, 14) == "aabacaaaabacaa");
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
        const double deviation = std::abs(seen[s] - static_cast<double>(window) * weights[s] / total);
        worst_window = std::max(worst_window, deviation);
        if (start == 0) worst_prefix = std::max(worst_prefix, deviation);
      }
    }
  }
  CHECK(worst_prefix <= 1.0);
  CHECK(worst_window < 2.0);
}

TEST_CASE("wrr passes over a down server and keeps the others' proportions") {
  Pool pool;
  pool.add("a", 5);
  pool.add("b", 1);
  pool.add("c", 1);
  pool.states[1].status = ServerStatus::down;
  auto wrr = make_wrr_scheduler(pool.servers);
  CHECK(picks(*wrr, pool, 12) == "aaacaaaaacaa");
}

TEST_CASE("smooth wrr reduces common divisors and handles all-zero weights") {
  CHECK(smooth_wrr_sequence({3, 3, 3}) == std::vector<uint32_t>{0, 1, 2});
  CHECK(smooth_wrr_sequence({0, 0}).empty());
}
