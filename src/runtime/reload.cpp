#include "fulcrum/reload.hpp"

#include <utility>

#include "fulcrum/admin.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/privileges.hpp"

namespace fulcrum {

Reloader::Reloader(event_base* base, std::string config_path, unsigned workers,
                   ControlPlane& control, ReloadTarget& target)
    : config_path_(std::move(config_path)), workers_(workers), control_(control), target_(target) {
  status_.at = std::chrono::system_clock::now();
  loaded_event_.reset(event_new(base, -1, 0, on_loaded_cb, this));
}

Reloader::~Reloader() {
  if (loader_.joinable()) loader_.join();
}

namespace {

// What an asker hears when the daemon stops before its reload is applied.
void refuse(const Reloader::Done& done, ReloadStatus status) {
  status.ok = false;
  status.error = "stopping";
  if (done) done(status);
}

}  // namespace

void Reloader::request(std::string asked_by, Done done) {
  if (stopped_) {
    refuse(done, status_);
    return;
  }
  Asker asker{std::move(asked_by), std::move(done)};
  if (running()) {
    next_.push_back(std::move(asker));
    return;
  }
  current_.push_back(std::move(asker));
  start_loading();
}

void Reloader::stop() {
  stopped_ = true;
  // The run in flight, if any, is answered when its file is in.
  for (const Asker& asker : std::exchange(next_, {})) refuse(asker.done, status_);
}

void Reloader::start_loading() {
  target_.reload_started();
  std::string by;
  for (const Asker& asker : current_) by += (by.empty() ? "" : ",") + asker.who;
  log_info("reloading", {{"config", config_path_}, {"by", by}});
  loader_ = std::thread([this, path = config_path_] {
    ConfigLoad load = load_config_file(path);
    {
      std::lock_guard lock(loaded_mutex_);
      loaded_ = std::move(load);
    }
    event_active(loaded_event_.get(), EV_READ, 0);
  });
}

void Reloader::on_loaded_cb(evutil_socket_t, short, void* arg) {
  static_cast<Reloader*>(arg)->on_loaded();
}

void Reloader::on_loaded() {
  loader_.join();
  ConfigLoad load;
  {
    std::lock_guard lock(loaded_mutex_);
    load = std::move(*loaded_);
    loaded_.reset();
  }
  if (stopped_) {
    for (const Asker& asker : std::exchange(current_, {})) refuse(asker.done, status_);
    return;
  }
  finish(apply(std::move(load)));
  if (!next_.empty()) {
    current_ = std::move(next_);
    next_.clear();
    start_loading();
  }
}

std::vector<std::string> Reloader::apply(ConfigLoad load) {
  std::vector<std::string> errors;
  for (const ConfigError& e : load.errors) errors.push_back(e.to_string());
  if (!errors.empty()) return errors;
  Config config = std::move(*load.config);
  const Snapshot& running = *control_.snapshot();

  if (config.global.workers != 0 && config.global.workers != workers_) {
    log_warn("global.workers changes need a restart; keeping the running count",
             {{"workers", workers_}, {"configured", config.global.workers}});
  }
  if (std::string error = check_transparent_capability(config); !error.empty()) return {error};
  std::optional<std::string> token;
  if (config.stats.enabled && !config.stats.admin_token_file.empty()) {
    std::string error;
    token = read_admin_token(config.stats.admin_token_file, error);
    if (!token) return {error};
  }
  if (config.stats.enabled != running.config.stats.enabled ||
      !(config.stats.listen == running.config.stats.listen)) {
    log_warn("stats.listen changes need a restart; the stats endpoint stays as it is");
  }
  // Bind what is new before touching anything.
  std::string error;
  auto added = bind_new_addresses(config, &running, workers_, error);
  if (!added) return {error};

  const auto previous = control_.snapshot();
  const auto next = control_.install(std::move(config), std::chrono::steady_clock::now());
  for (const BoundAddress& address : *added) {
    log_info("listening", {{"service", address.service}, {"address", address.address.to_string()}});
  }
  target_.serve(next, std::move(*added), std::move(token));
  log_config_changes(*previous, *next);
  return {};
}

void Reloader::finish(std::vector<std::string> errors) {
  status_.at = std::chrono::system_clock::now();
  const uint64_t generation = control_.snapshot()->generation;
  std::string by;
  for (const Asker& asker : current_) by += (by.empty() ? "" : ",") + asker.who;
  if (errors.empty()) {
    status_.ok = true;
    status_.error.clear();
    ++status_.succeeded;
    log_info("reloaded", {{"generation", generation}, {"by", by}});
  } else {
    for (const std::string& e : errors) log_error("reload rejected", {{"error", e}});
    status_.ok = false;
    status_.error = errors.front();
    ++status_.failed;
    log_error("reload failed, the running configuration stays",
              {{"errors", errors.size()}, {"generation", generation}});
  }
  target_.reload_finished(status_);
  for (Asker& asker : std::exchange(current_, {})) {
    if (asker.done) asker.done(status_);
  }
}

}  // namespace fulcrum
