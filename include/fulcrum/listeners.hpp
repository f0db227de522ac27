// Binding the services' listening sockets, at start-up and on reload: one
// SO_REUSEPORT socket per worker and address, bound before anything serves
// them, so that a failure changes nothing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/fd.hpp"
#include "fulcrum/snapshot.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/upgrade_state.hpp"

namespace fulcrum {

// The kernel caps it at net.core.somaxconn.
constexpr int kListenBacklog = 65535;

// One address's listening sockets, `per_worker[w]` for worker w.
struct BoundAddress {
  std::string service;
  SocketAddress address;
  std::vector<Fd> per_worker;
};

// Binds every listen address of `config` that `running` (null at start-up)
// does not already listen on, nor a binary upgrade `carried` sockets for,
// `workers` sockets each. An address another
// process listens on is refused, even where SO_REUSEPORT would let us join
// it. On failure nothing stays bound, the reason is logged (`cannot listen`)
// and `error` names the address: returns nullopt.
std::optional<std::vector<BoundAddress>> bind_new_addresses(
    const Config& config, const Snapshot* running, unsigned workers, std::string& error,
    const std::vector<SocketAddress>& carried = {});

// Sockets for the workers that `listeners` (taken over from an earlier
// process) have none for, worker w taking those of number w % workers:
// with more workers than the process that bound them, each new one joins
// the address's SO_REUSEPORT group, so that every worker accepts on every
// address again. Returns 0, or the errno of the first socket that could
// not be bound (its worker then goes without; the others accept).
int add_worker_sockets(std::vector<CarriedListener>& listeners, unsigned workers, Binding binding);

}  // namespace fulcrum
