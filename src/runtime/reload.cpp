#include "fulcrum/reload.hpp"

#include <utility>

#include "fulcrum/log.hpp"
#include "fulcrum/preflight.hpp"
#include "fulcrum/privileges.hpp"
#include "fulcrum/signals.hpp"

namespace fulcrum {

Reloader::Reloader(event_base* base, std::string config_path, unsigned workers,
                   ControlPlane& control, ReloadTarget& target)
    : config_path_(std::move(config_path)),
      workers_(workers),
      started_(control.snapshot()->config),
      control_(control),
      target_(target),
      resolver_(base) {
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
  status.errors = {status.error};
  status.warnings.clear();
  if (done) done(status);
}

// What cannot change without a restart: warned about, the rest applies.
std::vector<ConfigWarning> restart_warnings(const Config& config, const Config& started,
                                            unsigned workers) {
  std::vector<ConfigWarning> warnings;
  if (config.global.workers != 0 && config.global.workers != workers) {
    warnings.push_back(config_error(config, config.global.workers_at,
                                    "global.workers changes need a restart; " +
                                        std::to_string(workers) +
                                        (workers == 1 ? " worker keeps" : " workers keep") +
                                        " running, not " + std::to_string(config.global.workers)));
  }
  if (config.stats.enabled != started.stats.enabled ||
      !(config.stats.listen == started.stats.listen)) {
    const std::string now =
        started.stats.enabled ? "stays at " + started.stats.listen.to_string() : "stays off";
    warnings.push_back(
        config_error(config, config.stats.listen_at,
                     "stats.listen changes need a restart; the stats endpoint " + now));
  }
  return warnings;
}

void add(std::vector<std::string>& texts, const std::vector<ConfigError>& problems) {
  for (const ConfigError& problem : problems) texts.push_back(problem.to_string());
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
  busy_ = true;
  loader_ = thread_without_signals([this, path = config_path_] {
    Loaded loaded;
    ConfigLoad failed;
    if (std::optional<std::string> text = read_config_file(path, failed)) {
      loaded.names = config_names(*text, path);
      if (loaded.names.names.empty()) {
        loaded.load = load_config_text(*text, path);
      } else {
        loaded.text = std::move(*text);
      }
    } else {
      loaded.load = std::move(failed);
    }
    {
      std::lock_guard lock(loaded_mutex_);
      loaded_ = std::move(loaded);
    }
    event_active(loaded_event_.get(), EV_READ, 0);
  });
}

void Reloader::on_loaded_cb(evutil_socket_t, short, void* arg) {
  static_cast<Reloader*>(arg)->on_loaded();
}

void Reloader::on_loaded() {
  loader_.join();
  Loaded loaded;
  {
    std::lock_guard lock(loaded_mutex_);
    loaded = std::move(*loaded_);
    loaded_.reset();
  }
  if (stopped_) {
    busy_ = false;
    for (const Asker& asker : std::exchange(current_, {})) refuse(asker.done, status_);
    return;
  }
  if (!loaded.load) {
    // Its host names first, then the file again with their addresses.
    resolver_.resolve(loaded.names.names, loaded.names.resolvers,
                      [this, text = std::move(loaded.text)](HostResolver::Answers answers) {
                        loader_ = thread_without_signals(
                            [this, text, answers = std::move(answers), path = config_path_] {
                              Loaded done;
                              done.load = load_config_with_answers(text, path, answers);
                              {
                                std::lock_guard lock(loaded_mutex_);
                                loaded_ = std::move(done);
                              }
                              event_active(loaded_event_.get(), EV_READ, 0);
                            });
                      });
    return;
  }
  finish(apply(std::move(*loaded.load)));
  busy_ = false;
  if (!next_.empty()) {
    current_ = std::move(next_);
    next_.clear();
    start_loading();
  }
}

Reloader::Outcome Reloader::apply(ConfigLoad load) {
  Outcome outcome;
  add(outcome.errors, load.errors);
  if (!outcome.errors.empty()) return outcome;
  Config config = std::move(*load.config);
  const Snapshot& running = *control_.snapshot();

  Preflight checked = preflight(config, &started_);
  add(outcome.warnings, restart_warnings(config, started_, workers_));
  add(outcome.warnings, checked.warnings);
  add(outcome.errors, checked.errors);
  if (!outcome.errors.empty()) return outcome;
  // The kernel's own word, per address family, as start-up asks it once
  // privileges are dropped (preflight only reads the capability sets).
  if (std::string refused = check_transparent_capability(config); !refused.empty()) {
    outcome.errors.push_back(std::move(refused));
    return outcome;
  }
  // The data planes' word (the kernel's rules, in a dry run).
  if (std::string refused = control_.check(config, std::chrono::steady_clock::now());
      !refused.empty()) {
    outcome.errors.push_back(std::move(refused));
    return outcome;
  }
  // Bind what is new before touching anything.
  std::string error;
  auto added = bind_new_addresses(config, &running, workers_, error);
  if (!added) {
    outcome.errors.push_back(std::move(error));
    return outcome;
  }

  const auto previous = control_.snapshot();
  const auto next = control_.install(std::move(config), std::chrono::steady_clock::now());
  for (const BoundAddress& address : *added) {
    log_info("listening", {{"service", address.service}, {"address", address.address.to_string()}});
  }
  target_.serve(next, std::move(*added), std::move(checked.admin_token));
  log_config_changes(*previous, *next);
  return outcome;
}

void Reloader::finish(Outcome outcome) {
  status_.at = std::chrono::system_clock::now();
  const uint64_t generation = control_.snapshot()->generation;
  std::string by;
  for (const Asker& asker : current_) by += (by.empty() ? "" : ",") + asker.who;
  for (const std::string& w : outcome.warnings) log_warn("configuration warning", {{"warning", w}});
  if (outcome.errors.empty()) {
    status_.ok = true;
    status_.error.clear();
    ++status_.succeeded;
    log_info("reloaded", {{"generation", generation}, {"by", by}});
  } else {
    for (const std::string& e : outcome.errors) log_error("reload rejected", {{"error", e}});
    status_.ok = false;
    status_.error = outcome.errors.front();
    ++status_.failed;
    log_error("reload failed, the running configuration stays",
              {{"errors", outcome.errors.size()}, {"generation", generation}});
  }
  status_.errors = std::move(outcome.errors);
  status_.warnings = std::move(outcome.warnings);
  target_.reload_finished(status_);
  for (Asker& asker : std::exchange(current_, {})) {
    if (asker.done) asker.done(status_);
  }
}

}  // namespace fulcrum
