// Least connections (lc) and weighted least connections (wlc): the usable
// server with the fewest active sessions, or the lowest (active + 1) / weight.
// The +1 counts the session being placed, so with no load the heavier server
// wins, as in HAProxy's leastconn. Servers of equal load take new sessions in
// turn. The order is the service's LoadIndex, which sessions keep up to date
// as they start and end: a pick reads the top of this scheduler's heap.
#include <memory>

#include "algorithms.hpp"
#include "fulcrum/load_index.hpp"

namespace fulcrum {

namespace {

class LeastConnections final : public Scheduler {
 public:
  LeastConnections(std::vector<SchedServer> servers, bool weighted, LoadIndex* index)
      : servers_(std::move(servers)),
        weighted_(weighted),
        own_index_(index == nullptr ? std::make_unique<LoadIndex>() : nullptr),
        index_(index == nullptr ? *own_index_ : *index),
        heap_(index_.add_heap()) {
    rebuild();
  }

  ~LeastConnections() override { index_.remove_heap(heap_); }
  LeastConnections(const LeastConnections&) = delete;
  LeastConnections& operator=(const LeastConnections&) = delete;

  std::optional<uint32_t> pick(const PickContext& context) override {
    return index_.pick(heap_, context);
  }

  // The servers up (with a weight) now, and wlc's weights.
  void rebuild() override {
    std::vector<LoadIndex::Member> members;
    for (uint32_t i = 0; i < servers_.size(); ++i) {
      const SchedServer& server = servers_[i];
      if (is_up(server))
        members.push_back({server.state, weighted_ ? server.state->weight() : 1U, i});
    }
    index_.set_members(heap_, members);
  }

 private:
  std::vector<SchedServer> servers_;
  bool weighted_;
  std::unique_ptr<LoadIndex> own_index_;  // without the service's
  LoadIndex& index_;
  uint32_t heap_;
};

}  // namespace

std::unique_ptr<Scheduler> make_lc_scheduler(std::vector<SchedServer> servers, bool weighted,
                                             LoadIndex* index) {
  return std::make_unique<LeastConnections>(std::move(servers), weighted, index);
}

}  // namespace fulcrum
