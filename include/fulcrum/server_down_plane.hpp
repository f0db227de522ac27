// `on_server_down: close`: a data plane that tells which servers were just
// marked down in services asking for it. One instance watches the proxy's
// services, and the workers reset those servers' sessions (HAProxy's
// on-marked-down shutdown-sessions); another watches nat and fullnat
// services, and their conntrack entries are forgotten (conntrack.hpp).
// Sessions of other services cost nothing.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <vector>

#include "fulcrum/data_plane.hpp"

namespace fulcrum {

class ServerDownPlane final : public DataPlane {
 public:
  struct Down {
    const ServiceRuntime* service;
    const ServerRuntime* server;
  };
  // `close` gets the servers newly down, with their services; main thread.
  using CloseRequest = std::function<void(const std::vector<Down>&)>;
  enum class Watch { proxy, nat };  // nat: nat and fullnat services
  ServerDownPlane(Watch watch, CloseRequest close) : watch_(watch), close_(std::move(close)) {}

  // Compares the servers whose status is down in services with
  // on_server_down: close against those seen at the last change, and asks
  // for the sessions of the new ones to be closed. Only `down` counts:
  // drain and maint keep their sessions.
  void apply(const ChangeSet& changes) override;

 private:
  bool watches(const ServiceConfig& service) const;

  Watch watch_;
  CloseRequest close_;
  // Down at the last change. Held, so that an address is never taken for
  // a new server's state while it is remembered here.
  std::set<std::shared_ptr<const ServerState>> down_;
};

}  // namespace fulcrum
