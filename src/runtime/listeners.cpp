#include "fulcrum/listeners.hpp"

#include <algorithm>
#include <set>
#include <utility>

#include "fulcrum/log.hpp"
#include "fulcrum/socket.hpp"

namespace fulcrum {

namespace {

// `workers` sockets on `address`, after checking nobody else listens there.
int bind_address(const SocketAddress& address, unsigned workers, Binding binding,
                 std::vector<Fd>& out) {
  if (int e = check_address_free(address, binding)) return e;
  for (unsigned w = 0; w < workers; ++w) {
    Fd fd;
    if (int e = open_listener(address, kListenBacklog, PortSharing::workers, fd, binding)) return e;
    out.push_back(std::move(fd));
  }
  return 0;
}

}  // namespace

std::optional<std::vector<BoundAddress>> bind_new_addresses(
    const Config& config, const Snapshot* running, unsigned workers, std::string& error,
    const std::vector<SocketAddress>& carried) {
  std::vector<BoundAddress> bound;
  // Announced VIPs are on the interface only while they have a usable
  // server, and only after the listeners are bound.
  const Binding binding = config.global.announce ? Binding::freebind : Binding::local;
  for (const ServiceConfig& service : config.services) {
    if (in_kernel(service.forwarding)) continue;  // the kernel matches its packets
    for (const SocketAddress& address : service.listen) {
      if (running != nullptr && running->service_listening_on(address) != nullptr) continue;
      if (std::find(carried.begin(), carried.end(), address) != carried.end()) continue;
      BoundAddress next{service.name, address, {}};
      if (int e = bind_address(address, workers, binding, next.per_worker)) {
        error = "cannot listen on " + address.to_string() + ": " + errno_string(e);
        log_error("cannot listen", {{"service", service.name},
                                    {"address", address.to_string()},
                                    {"error", errno_string(e)}});
        return std::nullopt;
      }
      bound.push_back(std::move(next));
    }
  }
  return bound;
}

int add_worker_sockets(std::vector<CarriedListener>& listeners, unsigned workers, Binding binding) {
  // Each address, and the workers that have a socket of it.
  std::vector<std::pair<SocketAddress, std::set<unsigned>>> served;
  for (const CarriedListener& listener : listeners) {
    auto it = std::find_if(served.begin(), served.end(),
                           [&](const auto& entry) { return entry.first == listener.address; });
    if (it == served.end()) it = served.insert(served.end(), {listener.address, {}});
    it->second.insert(listener.worker % workers);
  }
  int first_error = 0;
  for (const auto& [address, covered] : served) {
    for (unsigned w = 0; w < workers; ++w) {
      if (covered.contains(w)) continue;
      Fd fd;
      if (const int e = open_listener(address, kListenBacklog, PortSharing::workers, fd, binding)) {
        if (first_error == 0) first_error = e;
        continue;
      }
      listeners.push_back(CarriedListener{address, w, fd.release()});
    }
  }
  return first_error;
}

}  // namespace fulcrum
