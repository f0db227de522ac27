// Round robin: servers in configuration order, one shared atomic cursor.
#include <atomic>

#include "fulcrum/scheduler.hpp"

namespace fulcrum {

namespace {

class RoundRobin final : public Scheduler {
 public:
  explicit RoundRobin(std::vector<SchedServer> servers) : servers_(std::move(servers)) {}

  // Takes the next cursor position and walks forward from it to the first
  // usable server; a retry walks past the server that just failed.
  std::optional<uint32_t> pick(const PickContext& context) override {
    const size_t n = servers_.size();
    if (n == 0) return std::nullopt;
    const uint64_t start = cursor_.fetch_add(1, std::memory_order_relaxed);
    std::optional<uint32_t> fallback;
    for (size_t step = 0; step < n; ++step) {
      const auto index = static_cast<uint32_t>((start + step) % n);
      if (!is_usable(servers_[index])) continue;
      if (context.avoid == index) {
        fallback = index;
        continue;
      }
      return index;
    }
    return fallback;
  }

 private:
  std::vector<SchedServer> servers_;
  std::atomic<uint64_t> cursor_{0};
};

}  // namespace

std::unique_ptr<Scheduler> make_rr_scheduler(std::vector<SchedServer> servers) {
  return std::make_unique<RoundRobin>(std::move(servers));
}

}  // namespace fulcrum
