#include "fulcrum/scheduler_plane.hpp"

namespace fulcrum {

void SchedulerPlane::apply(const ChangeSet& changes) {
  if (changes.is_new && changes.previous) {
    for (const ServiceRuntime& service : changes.snapshot->services) {
      for (const ServiceRuntime& old : changes.previous->services) {
        if (old.config->name == service.config->name)
          service.scheduler->continue_from(*old.scheduler);
      }
    }
  }
  for (const ServiceRuntime* service : changes.services) service->scheduler->rebuild();
}

}  // namespace fulcrum
