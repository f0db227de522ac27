// The scheduler interface: picks a server of one service for a new session.
// One instance per service per snapshot, shared by all workers, so that
// distribution is exact whatever worker accepted the client.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/server_state.hpp"

namespace fulcrum {

// What a scheduler knows of one server. It reads the live state, it never
// owns or writes counters.
struct SchedServer {
  std::string name;
  uint32_t weight = 1;
  uint32_t max_connections = 0;
  const ServerState* state = nullptr;
};

struct PickContext {
  const SocketAddress& client;
  uint32_t attempt = 0;                 // 0 for the first try, then 1, 2, ... on retries
  std::optional<uint32_t> avoid;        // the server that just failed, skipped while another is usable
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Index of a usable server, or nullopt when none is. Called from any
  // worker thread concurrently; never blocks and takes no lock.
  virtual std::optional<uint32_t> pick(const PickContext& context) = 0;
};

// True when `server` may take a new session: up, weight > 0, below its
// max_connections.
bool is_usable(const SchedServer& server);

std::unique_ptr<Scheduler> make_rr_scheduler(std::vector<SchedServer> servers);
std::unique_ptr<Scheduler> make_wrr_scheduler(std::vector<SchedServer> servers);

// The scheduler the configuration names. Kinds the loader rejects as not
// supported yet never reach this function.
std::unique_ptr<Scheduler> make_scheduler(SchedulerKind kind, std::vector<SchedServer> servers);

// Smooth weighted round robin order (nginx's algorithm) for one full cycle
// of sum(weights) picks; weight-0 servers never appear. Exposed for tests.
std::vector<uint32_t> smooth_wrr_sequence(const std::vector<uint32_t>& weights);

}  // namespace fulcrum
