#include "fulcrum/flow_counter.hpp"

#include <algorithm>
#include <ctime>

namespace fulcrum {

namespace {

// Never more than 1 % of a CPU, never more often than once a second.
constexpr int kDutyCycle = 100;
constexpr std::chrono::seconds kShortestInterval{1};

// This thread's CPU time: what a count costs, the kernel's part included,
// however long a busy machine kept it waiting for a CPU.
std::chrono::nanoseconds thread_cpu_time() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
}

}  // namespace

void FlowCounter::start() {
  if (thread_.joinable()) return;
  thread_ = std::jthread([this](const std::stop_token& stop) { run(stop); });
}

std::optional<FlowCounts> FlowCounter::latest() const {
  std::lock_guard lock(mutex_);
  return latest_;
}

void FlowCounter::run(const std::stop_token& stop) {
  while (!stop.stop_requested()) {
    const auto started = std::chrono::steady_clock::now();
    const auto cpu_before = thread_cpu_time();
    FlowCounts counted = count_flows();
    const auto cost = thread_cpu_time() - cpu_before;
    std::unique_lock lock(mutex_);
    latest_ = std::move(counted);
    const auto interval =
        std::max<std::chrono::steady_clock::duration>(kShortestInterval, kDutyCycle * cost);
    wake_.wait_until(lock, stop, started + interval, [] { return false; });
  }
}

}  // namespace fulcrum
