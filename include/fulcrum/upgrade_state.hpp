// What a binary upgrade hands from the running fulcrum to the binary it
// execs (SPEC.md "Upgrading the binary"): the listening sockets, every
// established session, the live server state and the counters, as plain
// data with the numbers of the descriptors that survive the exec. Encoded
// into a versioned blob; the new binary refuses a version it does not read
// (and the old one asks it first, with `--check --state-version`).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/discovered.hpp"
#include "fulcrum/server_state.hpp"

namespace fulcrum {

// The layout this build writes and reads. Any change to what is encoded
// changes it.
constexpr uint32_t kUpgradeStateVersion = 1;

// One worker's listening socket of one address.
struct CarriedListener {
  SocketAddress address;
  uint32_t worker = 0;
  int fd = -1;
};

// One direction of a relaying session (Session::Direction).
struct CarriedDirection {
  int pipe_read = -1;  // -1: no pipe (an empty one is not carried)
  int pipe_write = -1;
  uint64_t pipe_capacity = 0;
  uint64_t pipe_bytes = 0;  // bytes in the pipe, not yet delivered
  bool eof = false;
  bool done = false;
  bool splicing = false;
  bool watching_sink = false;
  uint64_t bytes = 0;  // delivered to the sink
};

// Where a session stood when the workers stopped.
enum class CarriedPhase : uint8_t {
  proxy_header,  // reading the client's PROXY header
  hello,         // reading the ClientHello for sni_routes
  connecting,    // a connect to `server` in flight
  relaying,
};

struct CarriedSession {
  uint32_t worker = 0;
  std::string service;
  std::string server;  // empty before a server was picked
  CarriedPhase phase = CarriedPhase::relaying;
  int client_fd = -1;
  int server_fd = -1;
  SocketAddress client_address;
  std::optional<SocketAddress> peer_address;
  bool source_counted = false;
  uint32_t group = 0;
  std::string pending;  // PROXY header bytes consumed so far, or the hello read so far
  // steady clock (CLOCK_MONOTONIC, the same in the new image), nanoseconds
  int64_t started_ns = 0;
  int64_t last_activity_ns = 0;
  int64_t connect_started_ns = 0;
  int64_t lifetime_end_ns = 0;  // 0: no max_lifetime
  int64_t last_publish_ns = 0;
  int64_t deadline_ns = 0;  // the PROXY header's or the hello's deadline
  uint64_t published_in = 0;
  uint64_t published_out = 0;
  std::vector<std::string> failed_servers;
  uint32_t attempt = 0;
  uint8_t last_failure = 0;  // SessionEnd
  std::optional<uint8_t> first_close;
  CarriedDirection c2s;
  CarriedDirection s2c;
};

struct CarriedService {
  std::string name;
  uint64_t total = 0, rejected = 0, proxy_header_errors = 0, denied = 0, limited = 0;
  uint64_t bytes_in = 0, bytes_out = 0, local_errors = 0;
  uint64_t packets_in = 0, packets_out = 0, packets_not_remembered = 0;
};

struct CarriedServer {
  std::string service;
  std::string name;
  ServerStatus status = ServerStatus::up;
  AdminState admin = AdminState::ready;
  bool healthy = true;
  uint32_t assigned_weight = 1;
  bool weight_by_operator = false;
  int64_t up_since_ns = 0;
  int64_t last_change_ns = 0;
  std::string last_error;
  int64_t last_error_ns = 0;
  uint32_t health_streak = 0;  // checks in a row towards the next flip
  AgentView agent;             // the agent check's last word
  uint64_t total = 0, connect_failures = 0, connects = 0, connect_time_us = 0;
  uint64_t bytes_in = 0, bytes_out = 0, checks_failed = 0, local_errors = 0;
  uint64_t closed_on_down = 0, packets_in = 0, packets_out = 0;
};

struct CarriedDiscovery {
  std::string service;
  DiscoveryStatus status;
};

struct UpgradeState {
  std::string from_version;  // the build that wrote it
  uint64_t generation = 0;   // of the configuration in force
  uint64_t upgrades = 0;     // this one included
  int64_t started_ns = 0;    // when the process (the PID) started, steady clock
  int64_t started_wall_ns = 0;
  uint64_t reloads_succeeded = 0;
  uint64_t reloads_failed = 0;
  int stats_fd = -1;  // the stats port's listening socket (-1: none)
  std::vector<CarriedListener> listeners;
  std::vector<CarriedService> services;
  std::vector<CarriedServer> servers;
  std::vector<CarriedDiscovery> discoveries;
  std::vector<CarriedSession> sessions;
};

std::string encode_upgrade_state(const UpgradeState& state);

struct UpgradeStateRead {
  std::optional<UpgradeState> state;
  std::string error;  // why not, when `state` is empty
};
// Strict: a wrong magic or version, a truncated field, a value out of range
// or trailing bytes are refused with the reason.
UpgradeStateRead decode_upgrade_state(std::string_view blob);

// Every descriptor `state` names, in no particular order.
std::vector<int> carried_descriptors(const UpgradeState& state);

}  // namespace fulcrum
