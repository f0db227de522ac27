// The algorithms behind make_scheduler(), one file each. Each one schedules
// the servers it is given; primaries and backups are split before.
#pragma once

#include <memory>
#include <vector>

#include "fulcrum/random.hpp"
#include "fulcrum/scheduler.hpp"

namespace fulcrum {

std::unique_ptr<Scheduler> make_algorithm(const SchedulerOptions& options,
                                          std::vector<SchedServer> servers);

std::unique_ptr<Scheduler> make_rr_scheduler(std::vector<SchedServer> servers);
std::unique_ptr<Scheduler> make_wrr_scheduler(std::vector<SchedServer> servers, unsigned workers);
// Least connections; `weighted` compares (active + 1) / weight (wlc).
// `index`: the service's (null: one of the scheduler's own).
std::unique_ptr<Scheduler> make_lc_scheduler(std::vector<SchedServer> servers, bool weighted,
                                             LoadIndex* index);
std::unique_ptr<Scheduler> make_maglev_scheduler(std::vector<SchedServer> servers, HashKey key,
                                                 unsigned workers);
std::unique_ptr<Scheduler> make_p2c_scheduler(std::vector<SchedServer> servers);

// (active + 1) / weight of `a` is below that of `b`, without division.
inline bool lighter(uint64_t active_a, uint64_t weight_a, uint64_t active_b, uint64_t weight_b) {
  return (active_a + 1) * weight_b < (active_b + 1) * weight_a;
}

}  // namespace fulcrum
