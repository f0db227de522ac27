// Announcing VIPs to routers (SPEC.md "Announcing VIPs to routers"): a data
// plane that keeps each service's virtual address on `global.announce.
// interface` while the service has a usable server, for a routing daemon
// (BIRD, FRR) to export by BGP; fulcrum never speaks BGP itself. The
// interface is fulcrum's: created at start (a dummy, or a bridge without
// ports where the kernel has no dummy driver), deleted at stop.
//
// An address is announced while any service listening on it has a server
// that is up with a weight (drained, in maintenance or down servers do not
// count; backups do). Wildcard and loopback listen addresses are never
// announced: routers cannot reach them.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/data_plane.hpp"

namespace fulcrum {

class Announcer final : public DataPlane {
 public:
  // A virtual address and what the announcer did with it.
  struct Vip {
    SocketAddress address;  // port 0
    std::vector<std::string> services;
    bool usable = false;     // a service on it has a usable server
    bool announced = false;  // on the interface now
  };

  ~Announcer() override;
  // Creates the interface when the snapshot names one (deleting the one a
  // reload replaced), then puts on it exactly the usable VIPs. Failures
  // are logged and kept in error(); the next change set tries again.
  void apply(const ChangeSet& changes) override;
  // Stop, first step: removes every address (routers withdraw the routes)
  // and announces nothing from now on. Returns whether any was announced.
  bool withdraw_all();
  // Stop, last step: deletes the interface.
  void remove();

  const std::string& error() const { return error_; }
  // Empty when announcing is off.
  const std::string& interface() const { return interface_; }
  const std::string& kind() const { return kind_; }
  const std::vector<Vip>& vips() const { return vips_; }

 private:
  void set_interface(const std::string& name);
  void reconcile();

  std::string interface_;
  std::string kind_;
  std::vector<Vip> vips_;  // in the order of first listen
  bool withdrawn_ = false;
  std::string error_;
};

// The VIPs of `snapshot` and whether each has a usable server (pure; the
// announcer's decision, exposed for tests).
std::vector<Announcer::Vip> announce_plan(const Snapshot& snapshot);

}  // namespace fulcrum
