// The proxy's data plane: each service's Scheduler, which the workers pick
// from lock free. It applies the control plane's changes by rebuilding the
// schedulers of the services that changed.
#pragma once

#include "fulcrum/data_plane.hpp"

namespace fulcrum {

class SchedulerPlane final : public DataPlane {
 public:
  // A new snapshot's schedulers first take over the rotation position of
  // the same service's previous ones (a reload does not restart every
  // rotation at the first server); then every changed service's scheduler
  // is rebuilt from the servers' status and weight.
  void apply(const ChangeSet& changes) override;
};

}  // namespace fulcrum
