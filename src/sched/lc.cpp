// Least connections (lc) and weighted least connections (wlc): the usable
// server with the fewest active sessions, or the lowest (active + 1) / weight.
// The +1 counts the session being placed, so with no load the heavier server
// wins, as in HAProxy's leastconn. Ties are broken by starting the scan at a
// per-thread random position, so tied servers share new sessions evenly.
#include "algorithms.hpp"

namespace fulcrum {

namespace {

class LeastConnections final : public Scheduler {
 public:
  LeastConnections(std::vector<SchedServer> servers, bool weighted)
      : servers_(std::move(servers)), weighted_(weighted) {}

  std::optional<uint32_t> pick(const PickContext& context) override {
    const size_t n = servers_.size();
    if (n == 0) return std::nullopt;
    const size_t start = thread_random() % n;
    std::optional<uint32_t> best;
    uint64_t best_active = 0;
    uint64_t best_weight = 1;
    std::optional<uint32_t> fallback;  // an avoided server, if nothing else is usable
    for (size_t step = 0; step < n; ++step) {
      size_t i = start + step;
      if (i >= n) i -= n;
      const SchedServer& server = servers_[i];
      if (!is_usable(server)) continue;
      const auto index = static_cast<uint32_t>(i);
      if (context.avoids(index)) {
        if (!fallback) fallback = index;
        continue;
      }
      const uint64_t active = server.state->active.load(std::memory_order_relaxed);
      const uint64_t weight = weighted_ ? server.state->weight() : 1;
      if (!best || lighter(active, weight, best_active, best_weight)) {
        best = index;
        best_active = active;
        best_weight = weight;
      }
    }
    return best ? best : fallback;
  }

  // Loads, status and weights are read at pick time: nothing to rebuild.
  void rebuild() override {}

 private:
  std::vector<SchedServer> servers_;
  bool weighted_;
};

}  // namespace

std::unique_ptr<Scheduler> make_lc_scheduler(std::vector<SchedServer> servers, bool weighted) {
  return std::make_unique<LeastConnections>(std::move(servers), weighted);
}

}  // namespace fulcrum
