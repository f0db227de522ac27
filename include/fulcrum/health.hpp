// Health checking: the rise/fall state machine, and the active TCP connect
// checks run on the main thread's loop, which also counts the failed connects
// of real sessions (passive detection) reported by the workers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fulcrum/agent_reply.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/snapshot.hpp"
#include "fulcrum/upgrade_state.hpp"

namespace fulcrum {

// Consecutive results decide: `fall` failures in a row take an up server
// down, `rise` successes in a row bring a down server up. A result of the
// other kind restarts the count.
class RiseFall {
 public:
  RiseFall(uint32_t rise, uint32_t fall, bool up = true) : rise_(rise), fall_(fall), up_(up) {}

  // Records one result; true when it flips the state.
  bool record(bool success);
  bool up() const { return up_; }
  // Results in a row counting towards the next flip.
  uint32_t streak() const { return streak_; }
  uint32_t needed() const { return up_ ? fall_ : rise_; }
  // A binary upgrade carries a streak over: taken up where it stood (one
  // short of a flip at most: a full streak would have flipped already).
  void resume_streak(uint32_t streak) { streak_ = std::min(streak, needed() - 1); }

 private:
  uint32_t rise_;
  uint32_t fall_;
  bool up_;
  uint32_t streak_ = 0;
};

// The checks' verdict on a server, once rise/fall flipped it: reported to the
// control plane, which decides what it means for the server's status.
using HealthVerdict =
    std::function<void(const ServiceRuntime& service, const ServerRuntime& server, bool healthy)>;
// Each failed check, active or passive, with its reason (`connect refused`,
// `connect timeout`, ...): reported to the control plane, which keeps it
// for the operator.
using HealthFailure = std::function<void(const ServerRuntime& server, std::string reason)>;
// The agent check's reply, parsed, with its line as the agent wrote it.
using AgentAnswer = std::function<void(const ServiceRuntime& service, const ServerRuntime& server,
                                       const AgentReply& reply, std::string line)>;

// Where the checks report: the control plane, through the daemon.
struct HealthReports {
  HealthVerdict verdict;
  HealthFailure failure;
  AgentAnswer agent;
  // An agent check that got no reply it understood, and why.
  HealthFailure agent_failure;
};

class HealthChecker {
 public:
  // Checks the servers of `snapshot`'s services that have a health check
  // (and asks their agents, where one is configured); each machine starts
  // from the server's current verdict.
  HealthChecker(event_base* base, std::shared_ptr<const Snapshot> snapshot, HealthReports reports);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts the active checks (first ones spread over one interval).
  void start();
  // Counts the failed session connects the workers recorded in
  // ServerState::passive_failures as failed checks. Main thread, when a
  // worker signalled one.
  void account_passive_failures();
  // A binary upgrade: each check's streak into its server's entry of
  // `state` (old image), and back into the checks before start() (new).
  void carry_streaks(UpgradeState& state) const;
  void adopt_streaks(const UpgradeState& state);

 private:
  class Check;
  class AgentCheck;

  event_base* base_;
  std::shared_ptr<const Snapshot> snapshot_;
  HealthReports reports_;
  std::vector<std::unique_ptr<Check>> checks_;
  std::vector<std::unique_ptr<AgentCheck>> agents_;
};

}  // namespace fulcrum
