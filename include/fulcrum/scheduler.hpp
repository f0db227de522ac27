// The scheduler interface: picks a server of one service for a new session.
// One instance per service per snapshot, shared by all workers, so that
// distribution is exact whatever worker accepted the client.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/server_state.hpp"

namespace fulcrum {

// What a scheduler knows of one server. Status and weight come from the live
// state, which the control plane decides; a scheduler never writes it.
struct SchedServer {
  std::string name;  // Maglev's key: the same name maps the same clients
  bool backup = false;
  const ServerState* state = nullptr;
};

struct PickContext {
  const SocketAddress& client;
  uint32_t attempt = 0;  // 0 for the first try, then 1, 2, ... on retries
  std::span<const uint32_t>
      failed;           // servers this session already failed on: skipped while another is usable
  unsigned worker = 0;  // calling worker, < SchedulerOptions::workers

  bool avoids(uint32_t index) const {
    return std::find(failed.begin(), failed.end(), index) != failed.end();
  }
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Index of a usable server, or nullopt when none is. Called from any
  // worker thread concurrently; never blocks. The only lock it may take is
  // Published's, once per worker after each rebuild.
  virtual std::optional<uint32_t> pick(const PickContext& context) = 0;
  // Main thread, called by the proxy's data plane when the control plane
  // changed a server's status or weight (slow start included). Rebuilds what
  // depends on them (the Maglev table, the WRR cycle, which of primaries and
  // backups serve) off the hot path and publishes it; concurrent picks see
  // the old or the new version, never a mix.
  virtual void rebuild() = 0;
  // Main thread, on reload, before publishing: carry over the rotation
  // position of the same service's previous scheduler when it is of the
  // same kind, so that a reload does not restart every rotation at the
  // first server. Stateless schedulers have nothing to carry.
  virtual void continue_from(const Scheduler& /*previous*/) {}
  // Main thread. Maglev: a checksum of the table in force (the server name
  // in each slot), equal on every node whose servers have the same names,
  // weights and states, whatever their order in the configuration; 0 when
  // no server takes sessions. Other schedulers: none.
  virtual std::optional<uint64_t> table_checksum() const { return std::nullopt; }
};

struct SchedulerOptions {
  SchedulerKind kind = SchedulerKind::wrr;
  HashKey hash_key = HashKey::source_ip;
  unsigned workers = 1;  // picks come with a worker index below this
  // lc and wlc: the service's index of servers by load
  // (ServiceState::load_index); null: the scheduler keeps one of its own.
  LoadIndex* load_index = nullptr;
};

// The scheduler `options.kind` names, over `servers` (indices returned are
// into this vector). Backup servers are only picked while no primary is up.
std::unique_ptr<Scheduler> make_scheduler(const SchedulerOptions& options,
                                          std::vector<SchedServer> servers);

// True when the server counts as up for the primary/backup decision: status
// up and weight > 0 (HAProxy's rule: a drained server is not up). The
// control plane never leaves an up server at weight 0 (that is drain); the
// weight test keeps schedulers right for any state they are handed (tests).
inline bool is_up(const SchedServer& server) {
  return server.state->status() == ServerStatus::up && server.state->weight() > 0;
}

// True when `server` may take a new session: up, weight > 0, below its
// max_connections in force (the agent may change it). Inline: schedulers
// call it for every server they look at.
inline bool is_usable(const SchedServer& server) {
  if (!is_up(server)) return false;
  const uint32_t limit = server.state->max_connections();
  return limit == 0 || server.state->active.load(std::memory_order_relaxed) < limit;
}

// Smooth weighted round robin order (src/sched/smooth_cycle.hpp: WF2Q's
// rule; every server within 1 of its share at every prefix) for one cycle of
// sum(weights)/gcd picks; weight-0 servers never appear. Exposed for tests:
// the scheduler computes the cycle chunk by chunk, never all at once.
std::vector<uint32_t> smooth_wrr_sequence(const std::vector<uint32_t>& weights);

// The Maglev lookup table (Maglev paper, section 3.4): `size` slots (prime)
// each holding an index into `names`, filled by each server's permutation
// (offset and skip from hashes of its name) in turns proportional to
// `weights`. Weight-0 servers get no slot; empty when every weight is 0.
std::vector<uint32_t> build_maglev_table(const std::vector<std::string>& names,
                                         const std::vector<uint32_t>& weights,
                                         uint32_t size = 65537);
// The checksum of a Maglev table (Scheduler::table_checksum): a stable
// hash of the name of each slot's server, in slot order; 0 for an empty
// table.
uint64_t maglev_table_checksum(const std::vector<std::string>& names,
                               const std::vector<uint32_t>& table);
// Stable 64-bit hash (FNV-1a, then a splitmix64 finaliser): the same in every
// process and build, so Maglev maps clients the same way everywhere.
uint64_t stable_hash(const void* data, size_t length, uint64_t seed);
// Maglev's table size, and the seed of the client hash: both part of the
// mapping (every node and both proxy and kernel modes must agree).
inline constexpr uint32_t kMaglevTableSize = 65537;
inline constexpr uint32_t kMaglevClientSeed = 0x6d676c76;  // "mglv"
// The client's slot in the Maglev table: what nftables computes for
// `jhash ip saddr [. th sport] mod 65537 seed kMaglevClientSeed`.
uint32_t maglev_slot(const SocketAddress& client, HashKey key);

}  // namespace fulcrum
