#include "fulcrum/server_down_plane.hpp"

namespace fulcrum {

void ServerDownPlane::apply(const ChangeSet& changes) {
  // The whole snapshot, not only the changed services: a few atomic loads
  // per server, a few times a minute, and a reload that turns close on for
  // a service whose server is already down closes its leftover sessions.
  std::set<std::shared_ptr<const ServerState>> down;
  std::vector<const ServerState*> newly_down;
  for (const ServiceRuntime& service : changes.snapshot->services) {
    if (service.config->on_server_down != OnServerDown::close) continue;
    for (const ServerRuntime& server : service.servers) {
      if (server.state->status() != ServerStatus::down) continue;
      down.insert(server.state);
      if (!down_.contains(server.state)) newly_down.push_back(server.state.get());
    }
  }
  down_ = std::move(down);
  if (!newly_down.empty()) close_sessions_of_(newly_down);
}

}  // namespace fulcrum
