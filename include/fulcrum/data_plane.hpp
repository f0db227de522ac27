// What carries sessions or packets to servers, seen from the control plane:
// each data plane only applies the decisions the ControlPlane publishes
// (DESIGN.md "Control plane and data planes"). The proxy's schedulers are
// one; the kernel's nftables maps will be another.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "fulcrum/snapshot.hpp"

namespace fulcrum {

// One publication of the control plane.
struct ChangeSet {
  // The snapshot in force from now on.
  std::shared_ptr<const Snapshot> snapshot;
  // The snapshot it replaces (a reload), or null: start-up (then `snapshot`
  // is new and `previous` has nothing to hand over) or the same snapshot
  // with changed servers. `is_new` tells the two apart.
  std::shared_ptr<const Snapshot> previous;
  bool is_new = false;
  // Services of `snapshot` where a server's status or weight changed; every
  // service when the snapshot is new.
  std::vector<const ServiceRuntime*> services;
};

class DataPlane {
 public:
  virtual ~DataPlane() = default;
  // Main thread. Brings this data plane in line with `changes`. Must not
  // block: it runs on the main loop.
  virtual void apply(const ChangeSet& changes) = 0;
  // Main thread, before a reload's snapshot is installed: empty when this
  // data plane can apply `changes` (a new snapshot with every server up),
  // else why not; the reload is then rejected and nothing changes.
  virtual std::string check(const ChangeSet& /*changes*/) { return ""; }
};

}  // namespace fulcrum
