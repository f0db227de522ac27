// Smooth weighted round robin. nginx computes its order pick by pick under a
// lock, O(servers) each; here the order of smooth_cycle.hpp (WF2Q's rule:
// every prefix of the cycle within 1 of its exact share) is walked by all
// workers with one shared atomic cursor, so picking takes no lock and the
// split is exact across workers. A rebuild (start-up, each weight or state
// change, each slow start step) computes only the cycle's first chunk; the
// workers compute the rest as they reach it, once per cycle.
#include <atomic>

#include "algorithms.hpp"
#include "cursor.hpp"
#include "published.hpp"
#include "smooth_cycle.hpp"

namespace fulcrum {

std::vector<uint32_t> smooth_wrr_sequence(const std::vector<uint32_t>& weights) {
  SmoothCycle cycle(weights);
  std::vector<uint32_t> sequence;
  sequence.reserve(cycle.length());
  for (uint64_t position = 0; position < cycle.length(); ++position)
    sequence.push_back(cycle.at(position));
  return sequence;
}

namespace {

// A cycle and the cursor value at which its first position is: a new cycle
// starts at its beginning, which is the only place where its state is known
// without computing the positions before.
struct Rotation {
  uint64_t base;
  std::shared_ptr<SmoothCycle> cycle;

  // The order claim_next() walks.
  uint64_t length() const { return cycle->length(); }
  uint32_t server_at(uint64_t cursor) const { return cycle->at((cursor - base) % cycle->length()); }
};

class WeightedRoundRobin final : public Scheduler {
 public:
  WeightedRoundRobin(std::vector<SchedServer> servers, unsigned workers)
      : servers_(std::move(servers)),
        current_(make_rotation(0, weights_in_force())),
        rotation_(workers, current_) {}

  // Walks the cycle; unusable servers (down, full) are passed over, so over
  // each pass the others keep exactly their relative proportions. The
  // rotation is read before the cursor: the cursor is then at or past the
  // rotation's base.
  std::optional<uint32_t> pick(const PickContext& context) override {
    return claim_next(cursor_, rotation_.read(context.worker), servers_, context);
  }

  // With the same weights the previous scheduler's cycle continues where it
  // was (what is computed of it is shared); with other weights the new
  // cycle starts at its beginning.
  void continue_from(const Scheduler& previous) override {
    const auto* same = dynamic_cast<const WeightedRoundRobin*>(&previous);
    if (same == nullptr) return;
    const uint64_t cursor = same->cursor_.load(std::memory_order_relaxed);
    cursor_.store(cursor, std::memory_order_relaxed);
    if (same->current_->cycle->weights() == current_->cycle->weights()) {
      publish(same->current_);
    } else {
      publish(std::make_shared<const Rotation>(Rotation{cursor, current_->cycle}));
    }
  }

  // A new cycle when the weights in force changed (once divided by their
  // greatest common divisor); otherwise the rotation goes on undisturbed.
  void rebuild() override {
    auto weights = weights_in_force();
    if (SmoothCycle::reduced(weights) == current_->cycle->weights()) return;
    publish(make_rotation(cursor_.load(std::memory_order_relaxed), weights));
  }

 private:
  static std::shared_ptr<const Rotation> make_rotation(uint64_t base,
                                                       const std::vector<uint32_t>& weights) {
    return std::make_shared<const Rotation>(Rotation{base, std::make_shared<SmoothCycle>(weights)});
  }

  // Servers that are not up get weight 0 and leave the cycle until they
  // return: picks then only pass over servers that are momentarily full.
  std::vector<uint32_t> weights_in_force() const {
    std::vector<uint32_t> weights;
    weights.reserve(servers_.size());
    for (const auto& s : servers_) {
      const bool up = s.state->status() == ServerStatus::up;
      weights.push_back(up ? s.state->weight() : 0);
    }
    return weights;
  }

  void publish(std::shared_ptr<const Rotation> next) {
    current_ = next;
    rotation_.publish(std::move(next));
  }

  std::vector<SchedServer> servers_;
  std::shared_ptr<const Rotation> current_;  // main thread's copy of the latest one
  Published<Rotation> rotation_;
  std::atomic<uint64_t> cursor_{0};
};

}  // namespace

std::unique_ptr<Scheduler> make_wrr_scheduler(std::vector<SchedServer> servers, unsigned workers) {
  return std::make_unique<WeightedRoundRobin>(std::move(servers), workers);
}

}  // namespace fulcrum
