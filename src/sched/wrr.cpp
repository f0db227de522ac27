// Smooth weighted round robin. nginx computes the order pick by pick under a
// lock; here a whole cycle is computed off the hot path (at start-up and on
// each weight or state change, slow start included) and workers walk it with one
// shared atomic cursor, so picking takes no lock and the split is exact
// across workers.
#include <atomic>
#include <numeric>

#include "algorithms.hpp"
#include "cursor.hpp"
#include "published.hpp"

namespace fulcrum {

std::vector<uint32_t> smooth_wrr_sequence(const std::vector<uint32_t>& weights) {
  // Dividing by the common divisor keeps the cycle short (3,3,3 -> 1,1,1)
  // without changing the order.
  uint32_t divisor = 0;
  for (uint32_t w : weights) divisor = std::gcd(divisor, w);
  if (divisor == 0) return {};
  std::vector<int64_t> effective(weights.size());
  int64_t total = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    effective[i] = weights[i] / divisor;
    total += effective[i];
  }
  std::vector<int64_t> current(weights.size(), 0);
  std::vector<uint32_t> sequence;
  sequence.reserve(static_cast<size_t>(total));
  for (int64_t pick = 0; pick < total; ++pick) {
    size_t best = weights.size();
    for (size_t i = 0; i < weights.size(); ++i) {
      if (effective[i] == 0) continue;
      current[i] += effective[i];
      if (best == weights.size() || current[i] > current[best]) best = i;
    }
    current[best] -= total;
    sequence.push_back(static_cast<uint32_t>(best));
  }
  return sequence;
}

namespace {

class WeightedRoundRobin final : public Scheduler {
 public:
  WeightedRoundRobin(std::vector<SchedServer> servers, unsigned workers)
      : servers_(std::move(servers)), sequence_(workers, build()) {}

  // Walks the cycle; unusable servers (down, full) are passed over, so over
  // each pass the others keep exactly their relative proportions.
  std::optional<uint32_t> pick(const PickContext& context) override {
    return claim_next(cursor_, sequence_.read(context.worker), servers_, context);
  }

  void continue_from(const Scheduler& previous) override {
    if (const auto* same = dynamic_cast<const WeightedRoundRobin*>(&previous)) {
      cursor_.store(same->cursor_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
  }

  void rebuild() override {
    const auto previous = current_;
    auto next = build();
    if (*next != *previous) sequence_.publish(std::move(next));
  }

 private:
  std::shared_ptr<const std::vector<uint32_t>> build() {
    // Servers that are not up leave the cycle until they return: picks then
    // only pass over servers that are momentarily full.
    std::vector<uint32_t> weights;
    for (const auto& s : servers_) {
      const bool up = s.state->status() == ServerStatus::up;
      weights.push_back(up ? s.state->weight() : 0);
    }
    current_ = std::make_shared<const std::vector<uint32_t>>(smooth_wrr_sequence(weights));
    return current_;
  }

  std::vector<SchedServer> servers_;
  std::shared_ptr<const std::vector<uint32_t>> current_;  // main thread's copy of the latest build
  Published<std::vector<uint32_t>> sequence_;
  std::atomic<uint64_t> cursor_{0};
};

}  // namespace

std::unique_ptr<Scheduler> make_wrr_scheduler(std::vector<SchedServer> servers, unsigned workers) {
  return std::make_unique<WeightedRoundRobin>(std::move(servers), workers);
}

}  // namespace fulcrum
