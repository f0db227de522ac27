#include "fulcrum/server_down_plane.hpp"

namespace fulcrum {

void ServerDownPlane::apply(const ChangeSet& changes) {
  // The whole snapshot, not only the changed services: a few atomic loads
  // per server, a few times a minute, and a reload that turns close on for
  // a service whose server is already down closes its leftover sessions.
  std::set<std::shared_ptr<const ServerState>> down;
  std::vector<Down> newly_down;
  for (const ServiceRuntime& service : changes.snapshot->services) {
    if (service.config->on_server_down != OnServerDown::close || !watches(*service.config))
      continue;
    for (const ServerRuntime& server : service.servers) {
      if (server.state->status() != ServerStatus::down) continue;
      down.insert(server.state);
      if (!down_.contains(server.state)) newly_down.push_back({&service, &server});
    }
  }
  down_ = std::move(down);
  if (!newly_down.empty()) close_(newly_down);
}

// dsr needs nothing: its flow memory already sends a down server's flows
// to the scheduler again.
bool ServerDownPlane::watches(const ServiceConfig& service) const {
  switch (watch_) {
    case Watch::proxy: return service.forwarding == Forwarding::proxy;
    case Watch::nat:
      return service.forwarding == Forwarding::nat || service.forwarding == Forwarding::fullnat;
  }
  return false;
}

}  // namespace fulcrum
