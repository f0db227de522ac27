#include "fulcrum/control_plane.hpp"

#include <utility>

namespace fulcrum {

uint32_t slow_start_weight(uint32_t weight, Duration slow_start,
                           std::optional<std::chrono::nanoseconds> since_up) {
  if (weight == 0 || slow_start.count() == 0 || !since_up || *since_up >= slow_start) return weight;
  if (since_up->count() <= 0) return 1;
  const double fraction = static_cast<double>(since_up->count()) /
                          static_cast<double>(std::chrono::nanoseconds(slow_start).count());
  const auto ramped = static_cast<uint32_t>(static_cast<double>(weight) * fraction);
  return ramped == 0 ? 1 : ramped;
}

bool ControlPlane::settle(const ServerRuntime& server, SteadyTime now) {
  ServerState& state = *server.state;
  ServerStateWriter writer(state);
  // An operator's maint or drain, then a weight of 0 (a drain by weight, as
  // in SPEC.md), win over health; health decides the rest.
  ServerStatus status = state.healthy() ? ServerStatus::up : ServerStatus::down;
  if (state.assigned_weight() == 0) status = ServerStatus::drain;
  if (state.admin() == AdminState::drain) status = ServerStatus::drain;
  if (state.admin() == AdminState::maint) status = ServerStatus::maint;
  bool changed = writer.set_status(status, now);

  // The weight in force for new sessions: none unless up, ramped during
  // slow start.
  std::optional<std::chrono::nanoseconds> since_up;
  if (const int64_t up_since = state.up_since_ns(); up_since != 0)
    since_up = now.time_since_epoch() - std::chrono::nanoseconds(up_since);
  const uint32_t weight =
      status != ServerStatus::up
          ? 0
          : slow_start_weight(state.assigned_weight(), server.config->slow_start, since_up);
  changed |= writer.set_weight(weight);
  return changed;
}

std::shared_ptr<const Snapshot> ControlPlane::install(Config config, SteadyTime now) {
  const uint64_t generation = snapshot_ ? snapshot_->generation + 1 : 1;
  auto next = build_snapshot(std::move(config), generation, registry_, workers_);
  registry_.retire_absent(next->config);
  ChangeSet changes{next, snapshot_, true, {}};
  for (const ServiceRuntime& service : next->services) {
    for (const ServerRuntime& server : service.servers) {
      ServerStateWriter writer(*server.state);
      // A server new to the configuration starts its state's clock now.
      writer.mark_configured(now);
      writer.set_assigned_weight(server.config->weight);
      // Nothing would ever report this server healthy again otherwise.
      if (!service.config->health_check.enabled) writer.set_healthy(true);
      settle(server, now);
    }
    changes.services.push_back(&service);
  }
  snapshot_ = next;
  for (DataPlane* plane : planes_) plane->apply(changes);
  return next;
}

void ControlPlane::report_health(const ServiceRuntime& service, const ServerRuntime& server,
                                 bool healthy, SteadyTime now) {
  if (server.state->healthy() == healthy) return;
  ServerStateWriter(*server.state).set_healthy(healthy);
  if (settle(server, now)) publish({&service});
}

void ControlPlane::report_check_failure(const ServerRuntime& server, std::string reason,
                                        SteadyTime now) {
  ServerStateWriter(*server.state).set_last_error(std::move(reason), now);
}

void ControlPlane::operator_request(const ServiceRuntime& service, const ServerRuntime& server,
                                    std::optional<AdminState> state, std::optional<uint32_t> weight,
                                    SteadyTime now) {
  ServerStateWriter writer(*server.state);
  if (state) writer.set_admin(*state);
  if (weight) {
    writer.set_assigned_weight(*weight);
  } else if (state == AdminState::ready && server.state->assigned_weight() == 0) {
    // `ready` takes the server back into service: a drain by an operator's
    // weight 0 ends too, back to the file's weight (which may itself be 0).
    writer.set_assigned_weight(server.config->weight);
  }
  if (settle(server, now)) publish({&service});
}

void ControlPlane::tick(SteadyTime now) {
  registry_.forget_idle();
  if (!snapshot_) return;
  std::vector<const ServiceRuntime*> moved;
  for (const ServiceRuntime& service : snapshot_->services) {
    bool changed = false;
    for (const ServerRuntime& server : service.servers) {
      if (server.config->slow_start.count() != 0) changed |= settle(server, now);
    }
    if (changed) moved.push_back(&service);
  }
  if (!moved.empty()) publish(std::move(moved));
}

void ControlPlane::publish(std::vector<const ServiceRuntime*> services) {
  const ChangeSet changes{snapshot_, nullptr, false, std::move(services)};
  for (DataPlane* plane : planes_) plane->apply(changes);
}

}  // namespace fulcrum
