// `on_server_down: close` for the proxy: a data plane that tells the
// workers which servers were just marked down in services asking for it,
// so that they reset those servers' sessions (HAProxy's on-marked-down
// shutdown-sessions). Sessions of other services cost nothing.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <vector>

#include "fulcrum/data_plane.hpp"

namespace fulcrum {

class ServerDownPlane final : public DataPlane {
 public:
  // `close_sessions_of` hands the servers newly down to every worker
  // (Worker::request_close_sessions_of); main thread.
  using CloseRequest = std::function<void(const std::vector<const ServerState*>&)>;
  explicit ServerDownPlane(CloseRequest close_sessions_of)
      : close_sessions_of_(std::move(close_sessions_of)) {}

  // Compares the servers whose status is down in services with
  // on_server_down: close against those seen at the last change, and asks
  // for the sessions of the new ones to be closed. Only `down` counts:
  // drain and maint keep their sessions.
  void apply(const ChangeSet& changes) override;

 private:
  CloseRequest close_sessions_of_;
  // Down at the last change. Held, so that an address is never taken for
  // a new server's state while it is remembered here.
  std::set<std::shared_ptr<const ServerState>> down_;
};

}  // namespace fulcrum
