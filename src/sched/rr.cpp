// Round robin: servers in configuration order, one shared atomic cursor.
#include <atomic>

#include "algorithms.hpp"
#include "cursor.hpp"

namespace fulcrum {

namespace {

class RoundRobin final : public Scheduler {
 public:
  explicit RoundRobin(std::vector<SchedServer> servers) : servers_(std::move(servers)) {
    for (uint32_t i = 0; i < servers_.size(); ++i) order_.push_back(i);
  }

  std::optional<uint32_t> pick(const PickContext& context) override {
    return claim_next(cursor_, order_, servers_, context);
  }

  // Status and weight are read at pick time: nothing to rebuild.
  void continue_from(const Scheduler& previous) override {
    if (const auto* same = dynamic_cast<const RoundRobin*>(&previous)) {
      cursor_.store(same->cursor_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
  }

  void rebuild() override {}

 private:
  std::vector<SchedServer> servers_;
  std::vector<uint32_t> order_;  // 0, 1, ..., n-1
  std::atomic<uint64_t> cursor_{0};
};

}  // namespace

std::unique_ptr<Scheduler> make_rr_scheduler(std::vector<SchedServer> servers) {
  return std::make_unique<RoundRobin>(std::move(servers));
}

}  // namespace fulcrum
