// Counts fulcrum's active nat and fullnat flows in conntrack on a thread of
// its own. A conntrack dump costs the kernel over a microsecond per entry
// of fulcrum's, TIME_WAIT included (docs/forwarding.md, "Counting active
// flows"): 100,000 entries take a sixth of a second, and 10,000 new flows
// a second leave over a million for TIME_WAIT's 120 s. On the main thread
// that would stall health checks and the stats port; here it stalls
// nothing. Each count starts
// 100 times the CPU time of the one before after it (at least a second),
// so counting never takes more than 1 % of a CPU: a big table's counts
// are simply older.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "fulcrum/conntrack.hpp"

namespace fulcrum {

class FlowCounter {
 public:
  FlowCounter() = default;
  FlowCounter(const FlowCounter&) = delete;
  FlowCounter& operator=(const FlowCounter&) = delete;

  // Starts the thread on first call; later calls do nothing.
  void start();
  // The last count (or its failure), none before the first one is done.
  std::optional<FlowCounts> latest() const;

 private:
  void run(const std::stop_token& stop);

  mutable std::mutex mutex_;
  std::condition_variable_any wake_;  // woken only by the stop (jthread's destructor)
  std::optional<FlowCounts> latest_;
  std::jthread thread_;  // last: stopped and joined before the rest goes
};

}  // namespace fulcrum
