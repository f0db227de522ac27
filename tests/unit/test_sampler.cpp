// The stats sampler: its rings, the rates and recent failure counts computed
// from them, missed ticks, and reloads (history kept for what stays).
#include <doctest/doctest.h>

#include <string>

#include "config_text.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/sampler.hpp"

using namespace fulcrum;
using namespace fulcrum::test;
using namespace std::chrono_literals;

namespace {

// Service `web` with the servers named in `servers` (each on its own port).
Config web(const std::vector<std::string>& servers) {
  std::string yaml =
      "services:\n"
      "  - name: web\n"
      "    listen: 127.0.0.1:1\n"
      "    servers:\n";
  for (size_t i = 0; i < servers.size(); ++i)
    yaml +=
        "      - {name: " + servers[i] + ", address: 127.0.0.1:" + std::to_string(10 + i) + "}\n";
  return valid(yaml);
}

ServerState& state_of(const Snapshot& snapshot, const std::string& name) {
  const Snapshot::Found found = snapshot.find("web", name);
  REQUIRE(found.server != nullptr);
  return *found.server->state;
}

}  // namespace

TEST_CASE("sampler: a ring holds its first sample everywhere, then the last Seconds + 1") {
  SampleRing<int, 3> ring(7);
  for (size_t ago = 0; ago <= 3; ++ago) CHECK(ring.ago(ago) == 7);
  ring.push(1);
  ring.push(2);
  CHECK(ring.ago(0) == 2);
  CHECK(ring.ago(1) == 1);
  CHECK(ring.ago(2) == 7);
  CHECK(ring.ago(3) == 7);
  ring.push(3);
  ring.push(4);
  ring.push(5);  // wraps: 7 and 1 are gone
  CHECK(ring.ago(0) == 5);
  CHECK(ring.ago(1) == 4);
  CHECK(ring.ago(2) == 3);
  CHECK(ring.ago(3) == 2);
}

TEST_CASE("sampler: rates are the growth over the last 10 samples, divided by 10") {
  SampleRing<TrafficSample, kRateWindowSeconds> ring({100, 1000, 2000});
  CHECK(window_rates(ring).sessions_per_second == 0);
  // 7 sessions, 12345 bytes in and 5 out in the third second.
  ring.push({100, 1000, 2000});
  ring.push({100, 1000, 2000});
  ring.push({107, 13345, 2005});
  Rates rates = window_rates(ring);
  CHECK(rates.sessions_per_second == 0.7);
  CHECK(rates.bytes_in_per_second == 1234.5);
  CHECK(rates.bytes_out_per_second == 0.5);
  CHECK(rates.peak_sessions_per_second == 0);  // the sampler keeps the peak
  // Still in the window while the sample before them is (9 more)...
  for (int i = 0; i < 9; ++i) ring.push({107, 13345, 2005});
  CHECK(window_rates(ring).sessions_per_second == 0.7);
  // ...and out of it once the sample before them leaves.
  ring.push({107, 13345, 2005});
  CHECK(window_rates(ring).sessions_per_second == 0);
  CHECK(window_rates(ring).bytes_in_per_second == 0);
}

TEST_CASE("sampler: a counter that went back counts as no growth") {
  SampleRing<TrafficSample, kRateWindowSeconds> ring({50, 50, 50});
  ring.push({40, 60, 50});
  const Rates rates = window_rates(ring);
  CHECK(rates.sessions_per_second == 0);
  CHECK(rates.bytes_in_per_second == 1.0);
  CHECK(rates.bytes_out_per_second == 0);
}

TEST_CASE("sampler: a tick stands for the whole seconds since the previous one") {
  CHECK(seconds_to_sample(0ms) == 0);
  CHECK(seconds_to_sample(499ms) == 0);
  CHECK(seconds_to_sample(500ms) == 1);
  CHECK(seconds_to_sample(1000ms) == 1);
  CHECK(seconds_to_sample(1499ms) == 1);
  CHECK(seconds_to_sample(1500ms) == 2);
  CHECK(seconds_to_sample(3400ms) == 3);
  CHECK(seconds_to_sample(61s) == 61);
  CHECK(seconds_to_sample(1h) == 61);  // every slot refilled: no more is needed
}

TEST_CASE("sampler: rates, peak and the failures of the last minute of servers and services") {
  ControlPlane control(1);
  const SteadyTime t0 = std::chrono::steady_clock::now();
  const auto snapshot = control.install(web({"a", "b"}), t0);
  StatsSampler sampler(t0);
  sampler.follow(*snapshot);
  ServerState& a = state_of(*snapshot, "a");
  ServiceState& service = *snapshot->services.at(0).state;

  // 25 sessions on a in the first second, then nothing.
  a.total += 25;
  a.bytes_in += 2500;
  service.total += 25;
  sampler.tick(t0 + 1s);
  CHECK(sampler.rates(a).sessions_per_second == 2.5);
  CHECK(sampler.rates(a).bytes_in_per_second == 250);
  CHECK(sampler.rates(a).peak_sessions_per_second == 2.5);
  CHECK(sampler.rates(service).sessions_per_second == 2.5);
  CHECK(sampler.rates(state_of(*snapshot, "b")).sessions_per_second == 0);
  // Between ticks the rates stay as sampled: they move once a second.
  a.total += 5;
  CHECK(sampler.rates(a).sessions_per_second == 2.5);
  // The next tick sees the 5: 30 in the window.
  sampler.tick(t0 + 2s);
  CHECK(sampler.rates(a).sessions_per_second == 3.0);
  for (int s = 3; s <= 11; ++s) sampler.tick(t0 + std::chrono::seconds(s));
  CHECK(sampler.rates(a).sessions_per_second == 0.5);  // the 25 left, the 5 remain
  sampler.tick(t0 + 12s);
  CHECK(sampler.rates(a).sessions_per_second == 0);
  CHECK(sampler.rates(a).peak_sessions_per_second == 3.0);
  CHECK(sampler.rates(service).peak_sessions_per_second == 2.5);

  // Failures count at once, from the live counters, for 60 samples.
  a.connect_failures += 3;
  a.checks_failed += 2;
  const auto recent = [&] { return sampler.recent_failures(a, read_failures(a)); };
  CHECK(recent().connect_failures == 3);
  CHECK(recent().checks_failed == 2);
  SteadyTime now = t0 + 12s;
  for (int s = 0; s < 60; ++s) sampler.tick(now += 1s);
  CHECK(recent().connect_failures == 3);  // the sample 60 s back is from before them
  sampler.tick(now += 1s);
  CHECK(recent().connect_failures == 0);
  CHECK(recent().checks_failed == 0);
  CHECK(a.connect_failures == 3);  // the totals stay

  // A tick 5 s late fills the 4 seconds missed with what was known: what
  // happened meanwhile counts in the last second, inside the window.
  a.total += 40;
  sampler.tick(now += 5s);
  CHECK(sampler.rates(a).sessions_per_second == 4.0);
  for (int s = 0; s < 9; ++s) sampler.tick(now += 1s);
  CHECK(sampler.rates(a).sessions_per_second == 4.0);
  sampler.tick(now += 1s);
  CHECK(sampler.rates(a).sessions_per_second == 0);
  // A tick less than half a second after the previous one takes no sample.
  a.total += 10;
  sampler.tick(now + 400ms);
  CHECK(sampler.rates(a).sessions_per_second == 0);
}

TEST_CASE("sampler: a reload keeps the history of what stays and starts what is new from now") {
  ControlPlane control(1);
  const SteadyTime t0 = std::chrono::steady_clock::now();
  const auto first = control.install(web({"a", "b"}), t0);
  StatsSampler sampler(t0);
  sampler.follow(*first);
  ServerState& a = state_of(*first, "a");
  ServerState& b = state_of(*first, "b");
  a.total += 10;
  b.total += 20;
  a.checks_failed += 1;
  sampler.tick(t0 + 1s);
  CHECK(sampler.rates(b).sessions_per_second == 2.0);

  const auto second = control.install(web({"a", "c"}), t0 + 1500ms);
  sampler.follow(*second);
  CHECK(&state_of(*second, "a") == &a);  // the same live state: history kept
  CHECK(sampler.rates(a).sessions_per_second == 1.0);
  CHECK(sampler.rates(a).peak_sessions_per_second == 1.0);
  CHECK(sampler.recent_failures(a, read_failures(a)).checks_failed == 1);
  // b left: no figures (its state lives on only in the old snapshot).
  CHECK(sampler.rates(b).sessions_per_second == 0);
  CHECK(sampler.rates(b).peak_sessions_per_second == 0);
  // c starts from its counters when it joined.
  ServerState& c = state_of(*second, "c");
  c.total += 3;
  CHECK(sampler.rates(c).sessions_per_second == 0);
  sampler.tick(t0 + 2s);
  CHECK(sampler.rates(c).sessions_per_second == 0.3);
  CHECK(sampler.rates(a).sessions_per_second == 1.0);
  CHECK(sampler.rates(*second->services.at(0).state).sessions_per_second == 0);
}
