#include "fulcrum/sampler.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

namespace fulcrum {

namespace {

uint64_t growth(uint64_t older, uint64_t newer) { return newer > older ? newer - older : 0; }

double per_second(uint64_t older, uint64_t newer) {
  return static_cast<double>(growth(older, newer)) / static_cast<double>(kRateWindowSeconds);
}

// Pushes `steps` samples: the newest one again for each second missed (what
// happened meanwhile counts in the last second), then `sample`.
template <typename Sample, size_t Seconds>
void push_steps(SampleRing<Sample, Seconds>& ring, const Sample& sample, size_t steps) {
  const Sample previous = ring.ago(0);
  for (size_t i = 1; i < steps; ++i) ring.push(previous);
  ring.push(sample);
}

}  // namespace

Rates window_rates(const SampleRing<TrafficSample, kRateWindowSeconds>& ring) {
  const TrafficSample& oldest = ring.ago(kRateWindowSeconds);
  const TrafficSample& newest = ring.ago(0);
  Rates rates;
  rates.sessions_per_second = per_second(oldest.sessions, newest.sessions);
  rates.bytes_in_per_second = per_second(oldest.bytes_in, newest.bytes_in);
  rates.bytes_out_per_second = per_second(oldest.bytes_out, newest.bytes_out);
  return rates;
}

size_t seconds_to_sample(std::chrono::nanoseconds elapsed) {
  if (elapsed < std::chrono::milliseconds(500)) return 0;
  // Past the longest ring every slot is refilled anyway.
  constexpr auto kMost = static_cast<int64_t>(kRecentFailuresSeconds + 1);
  const int64_t seconds = (elapsed + std::chrono::milliseconds(500)) / std::chrono::seconds(1);
  return static_cast<size_t>(std::min(seconds, kMost));
}

TrafficSample read_traffic(const ServiceState& service) {
  return {service.total.load(std::memory_order_relaxed),
          service.bytes_in.load(std::memory_order_relaxed),
          service.bytes_out.load(std::memory_order_relaxed)};
}

TrafficSample read_traffic(const ServerState& server) {
  return {server.total.load(std::memory_order_relaxed),
          server.bytes_in.load(std::memory_order_relaxed),
          server.bytes_out.load(std::memory_order_relaxed)};
}

FailureSample read_failures(const ServerState& server) {
  return {server.connect_failures.load(std::memory_order_relaxed),
          server.checks_failed.load(std::memory_order_relaxed)};
}

StatsSampler::StatsSampler(SteadyTime start) : last_tick_(start) {}

void StatsSampler::follow(const Snapshot& snapshot) {
  std::unordered_map<const ServiceState*, Track> services;
  std::unordered_map<const ServerState*, ServerTrack> servers;
  for (const ServiceRuntime& service : snapshot.services) {
    const ServiceState* key = service.state.get();
    if (auto kept = services_.find(key); kept != services_.end())
      services.emplace(key, kept->second);
    else
      services.emplace(key, Track(read_traffic(*key)));
    for (const ServerRuntime& server : service.servers) {
      const ServerState* state = server.state.get();
      if (auto kept = servers_.find(state); kept != servers_.end())
        servers.emplace(state, kept->second);
      else
        servers.emplace(state, ServerTrack(read_traffic(*state), read_failures(*state)));
    }
  }
  services_ = std::move(services);
  servers_ = std::move(servers);
}

void StatsSampler::tick(SteadyTime now) {
  const size_t steps = seconds_to_sample(now - last_tick_);
  if (steps == 0) return;
  last_tick_ = now;
  const auto sample = [steps](Track& track, const TrafficSample& traffic) {
    push_steps(track.traffic, traffic, steps);
    track.peak = std::max(track.peak, window_rates(track.traffic).sessions_per_second);
  };
  for (auto& [state, track] : services_) sample(track, read_traffic(*state));
  for (auto& [state, track] : servers_) {
    sample(track, read_traffic(*state));
    push_steps(track.failures, read_failures(*state), steps);
  }
}

namespace {

template <typename Map, typename Key>
Rates rates_of(const Map& tracks, const Key* key) {
  const auto found = tracks.find(key);
  if (found == tracks.end()) return {};
  Rates rates = window_rates(found->second.traffic);
  rates.peak_sessions_per_second = found->second.peak;
  return rates;
}

}  // namespace

Rates StatsSampler::rates(const ServiceState& service) const {
  return rates_of(services_, &service);
}

Rates StatsSampler::rates(const ServerState& server) const { return rates_of(servers_, &server); }

StatsSampler::RecentFailures StatsSampler::recent_failures(const ServerState& server,
                                                           const FailureSample& live) const {
  const auto found = servers_.find(&server);
  if (found == servers_.end()) return {};
  const FailureSample& before = found->second.failures.ago(kRecentFailuresSeconds);
  return {growth(before.connect_failures, live.connect_failures),
          growth(before.checks_failed, live.checks_failed)};
}

}  // namespace fulcrum
