// Recent figures computed by the daemon (SPEC.md "Stats endpoint": `rate`,
// the failures of the last minute): once a second the main loop copies the
// counters of every service and server of the running snapshot into a small
// ring each. Workers never see it: the relay path keeps writing its atomics
// as before, and the sampler only reads them (relaxed loads).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "fulcrum/server_state.hpp"
#include "fulcrum/snapshot.hpp"

namespace fulcrum {

// The rate window: sessions and bytes per second over the last this many
// samples (one a second).
inline constexpr size_t kRateWindowSeconds = 10;
// The window of the recent failure counts.
inline constexpr size_t kRecentFailuresSeconds = 60;

// The last `Seconds` + 1 samples of something, one a second: ago(0) is the
// newest, ago(Seconds) the oldest kept. A new ring holds its first sample
// in every slot, as if nothing had happened before it existed.
template <typename Sample, size_t Seconds>
class SampleRing {
 public:
  explicit SampleRing(const Sample& first) { slots_.fill(first); }
  void push(const Sample& sample) {
    newest_ = (newest_ + 1) % slots_.size();
    slots_[newest_] = sample;
  }
  // `seconds` is at most Seconds.
  const Sample& ago(size_t seconds) const {
    return slots_[(newest_ + slots_.size() - seconds) % slots_.size()];
  }

 private:
  std::array<Sample, Seconds + 1> slots_;
  size_t newest_ = 0;
};

// The counters rates are computed from.
struct TrafficSample {
  uint64_t sessions = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
};

// The failure counters of a server.
struct FailureSample {
  uint64_t connect_failures = 0;
  uint64_t checks_failed = 0;
};

struct Rates {
  double sessions_per_second = 0;
  double bytes_in_per_second = 0;
  double bytes_out_per_second = 0;
  // The highest sessions_per_second of any sample since the service or
  // server joined the running configuration.
  double peak_sessions_per_second = 0;
};

// What the last kRateWindowSeconds seconds of `ring` give: the growth of
// each counter from the oldest sample of the window to the newest, divided
// by the window (a counter that went back counts as no growth).
Rates window_rates(const SampleRing<TrafficSample, kRateWindowSeconds>& ring);

// How many samples a tick `elapsed` after the previous one stands for:
// one normally; more when the main loop was held up and ticks were missed,
// so that each slot of a ring stays one second; none for a tick less than
// half a second after the previous one.
size_t seconds_to_sample(std::chrono::nanoseconds elapsed);

class StatsSampler {
 public:
  // Failures of a server in the last kRecentFailuresSeconds seconds.
  struct RecentFailures {
    uint64_t connect_failures = 0;
    uint64_t checks_failed = 0;
  };

  // `start`: when the first tick's second began.
  explicit StatsSampler(SteadyTime start);

  // From now on, sample the services and servers of `snapshot`: those that
  // stay (the same live state, see StateRegistry) keep their history,
  // new ones start from their counters now, the others are forgotten.
  // Called with every snapshot installed, before the old one can go.
  void follow(const Snapshot& snapshot);
  // Takes the samples; main loop, once a second.
  void tick(SteadyTime now);

  // Unknown services and servers (not in the snapshot followed) have
  // nothing: zero rates, no recent failure.
  Rates rates(const ServiceState& service) const;
  Rates rates(const ServerState& server) const;
  // The live counters minus those of the sample kRecentFailuresSeconds
  // before the newest: failures in the last 60 to 61 seconds, new ones
  // counted at once. `live` holds the counters read by the caller, so that
  // a document shows totals and recent counts from one reading.
  RecentFailures recent_failures(const ServerState& server, const FailureSample& live) const;

 private:
  struct Track {
    explicit Track(const TrafficSample& first) : traffic(first) {}
    SampleRing<TrafficSample, kRateWindowSeconds> traffic;
    double peak = 0;
  };
  struct ServerTrack : Track {
    ServerTrack(const TrafficSample& first, const FailureSample& first_failures)
        : Track(first), failures(first_failures) {}
    SampleRing<FailureSample, kRecentFailuresSeconds> failures;
  };

  // Keyed by the live state, which a server keeps across reloads while it
  // stays; every key is a state of the snapshot followed, alive while it is.
  std::unordered_map<const ServiceState*, Track> services_;
  std::unordered_map<const ServerState*, ServerTrack> servers_;
  SteadyTime last_tick_{};
};

// The counters of a service or server now (relaxed loads).
TrafficSample read_traffic(const ServiceState& service);
TrafficSample read_traffic(const ServerState& server);
FailureSample read_failures(const ServerState& server);

}  // namespace fulcrum
