#include "fulcrum/scheduler_plane.hpp"

#include <algorithm>

namespace fulcrum {

void SchedulerPlane::apply(const ChangeSet& changes) {
  if (changes.is_new && changes.previous) {
    for (const ServiceRuntime& service : changes.snapshot->services) {
      for (const ServiceRuntime& old : changes.previous->services) {
        if (old.config->name != service.config->name) continue;
        // Groups by position: the service's own, then each route's.
        for (size_t g = 0; g < std::min(old.groups.size(), service.groups.size()); ++g)
          service.groups[g].scheduler->continue_from(*old.groups[g].scheduler);
      }
    }
  }
  for (const ServiceRuntime* service : changes.services) {
    for (const ServerGroup& group : service->groups) group.scheduler->rebuild();
  }
}

}  // namespace fulcrum
