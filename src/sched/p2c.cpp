// Power of two choices: two distinct usable servers drawn at random, the
// lighter by (active + 1) / weight wins. O(1) per pick at any server count,
// and no herd: workers deciding at the same time rarely pick the same one.
#include "algorithms.hpp"

namespace fulcrum {

namespace {

// Random draws per choice before falling back to a full scan (when most
// servers are unusable, random probing would mostly miss).
constexpr int kDraws = 8;

class PowerOfTwoChoices final : public Scheduler {
 public:
  explicit PowerOfTwoChoices(std::vector<SchedServer> servers) : servers_(std::move(servers)) {}

  std::optional<uint32_t> pick(const PickContext& context) override {
    const size_t n = servers_.size();
    if (n == 0) return std::nullopt;
    const auto first = draw(context, std::nullopt);
    if (!first) return scan(context);
    const auto second = draw(context, first);
    if (!second) return first;
    const SchedServer& a = servers_[*first];
    const SchedServer& b = servers_[*second];
    return lighter(b.state->active.load(std::memory_order_relaxed), b.state->weight(),
                   a.state->active.load(std::memory_order_relaxed), a.state->weight())
               ? second
               : first;
  }

  void rebuild() override {}

 private:
  // A random usable server other than `other` and those avoided.
  std::optional<uint32_t> draw(const PickContext& context, std::optional<uint32_t> other) const {
    for (int i = 0; i < kDraws; ++i) {
      const auto index = static_cast<uint32_t>(thread_random() % servers_.size());
      if (index == other || context.avoids(index) || !is_usable(servers_[index])) continue;
      return index;
    }
    return std::nullopt;
  }

  // The lightest usable server by a full scan; an avoided one only if there
  // is no other.
  std::optional<uint32_t> scan(const PickContext& context) const {
    std::optional<uint32_t> best;
    std::optional<uint32_t> fallback;
    for (uint32_t i = 0; i < servers_.size(); ++i) {
      const SchedServer& server = servers_[i];
      if (!is_usable(server)) continue;
      if (context.avoids(i)) {
        if (!fallback) fallback = i;
        continue;
      }
      if (!best ||
          lighter(server.state->active.load(std::memory_order_relaxed), server.state->weight(),
                  servers_[*best].state->active.load(std::memory_order_relaxed),
                  servers_[*best].state->weight())) {
        best = i;
      }
    }
    return best ? best : fallback;
  }

  std::vector<SchedServer> servers_;
};

}  // namespace

std::unique_ptr<Scheduler> make_p2c_scheduler(std::vector<SchedServer> servers) {
  return std::make_unique<PowerOfTwoChoices>(std::move(servers));
}

}  // namespace fulcrum
