// The daemon's lifecycle on the main thread: start-up, serving a reload's or
// discovery's snapshot, signals and the graceful stop (the class:
// daemon_class.hpp; binary upgrades: daemon_upgrade.cpp; systemd's fd
// store: daemon_fd_store.cpp).
#include "daemon.hpp"

#include "daemon_class.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <memory>
#include <vector>

#include "fulcrum/admin.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/open_files.hpp"
#include "fulcrum/preflight.hpp"
#include "fulcrum/privileges.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/version.hpp"

namespace fulcrum {

namespace {

// How often the control plane moves the weights of servers in slow start
// and forgets removed servers whose last session ended.
constexpr std::chrono::milliseconds kControlPlaneTick{500};
// How often the stats sampler copies the counters (one ring slot each).
constexpr std::chrono::seconds kSamplerTick{1};

}  // namespace

int Daemon::run(Config config) {
  if (const int code = start(std::move(config)); code != kExitOk) {
    announcer_.remove();
    kernel_plane_.remove();
    return code;
  }
  event_base_loop(base_.get(), EVLOOP_NO_EXIT_ON_EMPTY);

  for (auto& worker : workers_) worker->join();
  admission_->set_waker(nullptr);
  workers_.clear();
  health_.reset();
  reloader_.reset();
  announcer_.remove();
  kernel_plane_.remove();
  stats_.reset();
  log_info("stopped");
  return kExitOk;
}

// Everything up to READY=1: bind every address and the stats port, read the
// token, drop privileges, then start the workers and the health checks.
// Returns kExitOk or the exit code of the failure (logged).
int Daemon::start(Config config) {
  Log::set_level(config.global.log_level);
  open_file_limit_ = raise_open_file_limit();
  const std::string config_path = config.path;
  config_path_ = config_path;
  // First, so that a stop or reload signal during start-up waits for the
  // loop instead of killing the process.
  signals_ = std::make_unique<SignalEvents>(base_.get(), [this](int signal) { on_signal(signal); });

  Preflight checked = preflight(config, nullptr);
  for (const ConfigWarning& warning : checked.warnings)
    log_warn("configuration warning", {{"warning", warning.to_string()}});
  for (const ConfigError& e : checked.errors) log_error("cannot start", {{"error", e.to_string()}});
  if (!checked.errors.empty()) return kExitStartup;

  std::vector<SocketAddress> carried_addresses;
  if (carried_) {
    started_ = SteadyTime(std::chrono::duration_cast<SteadyTime::duration>(
        std::chrono::nanoseconds(carried_->started_ns)));
    started_wall_ = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::nanoseconds(carried_->started_wall_ns)));
    upgrade_status_.upgrades = carried_->upgrades;
    carried_listeners_ = take_carried_listeners(carried_->listeners, config);
    join_missing_workers(carried_listeners_, config);
    for (const CarriedListener& listener : carried_listeners_)
      carried_addresses.push_back(listener.address);
  }
  for (const CarriedListener& listener : take_stored_listeners(config)) {
    carried_listeners_.push_back(listener);
    carried_addresses.push_back(listener.address);
  }
  std::string error;
  auto addresses = bind_new_addresses(config, nullptr, workers_count_, error, carried_addresses);
  if (!addresses) return kExitStartup;
  control_.add_data_plane(scheduler_plane_);
  control_.add_data_plane(server_down_plane_);
  control_.add_data_plane(kernel_plane_);
  control_.add_data_plane(announcer_);
  control_.add_data_plane(conntrack_plane_);
  if (carried_) control_.adopt(*carried_);
  control_.install(std::move(config), std::chrono::steady_clock::now());
  if (!kernel_plane_.error().empty()) {
    log_error("cannot start", {{"error", "kernel rules not applied: " + kernel_plane_.error()}});
    return kExitStartup;
  }
  if (!announcer_.error().empty()) {
    log_error("cannot start", {{"error", "VIPs not announced: " + announcer_.error()}});
    return kExitStartup;
  }
  sampler_.follow(snapshot());
  admission_ = std::make_unique<Admission>(snapshot().config.global.max_connections, 0);
  reloader_ = std::make_unique<Reloader>(base_.get(), config_path, workers_count_, control_, *this);
  if (carried_) reloader_->carry_counts(carried_->reloads_succeeded, carried_->reloads_failed);
  if (!open_stats(std::move(checked.admin_token)) || !drop_privileges_as_configured())
    return kExitStartup;
  // Again in the privileges the daemon keeps serving with, with a socket:
  // what the kernel says is the last word.
  if (error = check_transparent_capability(snapshot().config); !error.empty()) {
    log_error("cannot start", {{"error", error}});
    return kExitStartup;
  }

  create_events();
  keep_in_fd_store(*addresses);
  start_workers(std::move(*addresses));
  const int64_t budget = hand_out_fd_budget();
  if (budget < 0) return kExitStartup;
  if (carried_) adopt_carried_sessions();
  for (auto& worker : workers_) worker->start();
  health_ = make_health_checker(control_.snapshot());
  if (carried_) health_->adopt_streaks(*carried_);
  health_->start();
  control_.on_rebuilt(
      [this](const std::shared_ptr<const Snapshot>& next) { serve_discovered(next); });
  discovery_.configure(snapshot().config);
  log_started(config_path, budget);
  if (carried_) {
    log_info("upgraded", {{"from", carried_->from_version},
                          {"version", version()},
                          {"upgrades", upgrade_status_.upgrades},
                          {"sessions", admission_->active_sessions()},
                          {"generation", snapshot().generation}});
    carried_.reset();
  }
  tell_ready();
  return kExitOk;
}

// The main loop's own events: worker exits, the stop's deadline, the
// control plane's tick, passive health failures, watchdog pings.
void Daemon::create_events() {
  worker_exit_event_.reset(event_new(base_.get(), -1, 0, on_worker_exit_cb, this));
  shutdown_timer_.reset(evtimer_new(base_.get(), on_shutdown_timeout_cb, this));
  announce_grace_timer_.reset(evtimer_new(base_.get(), on_announce_grace_cb, this));
  control_plane_timer_.reset(
      event_new(base_.get(), -1, EV_PERSIST, on_control_plane_tick_cb, this));
  add_with_timeout(control_plane_timer_.get(), kControlPlaneTick);
  passive_failure_event_.reset(event_new(base_.get(), -1, 0, on_passive_failure_cb, this));
  sampler_timer_.reset(event_new(base_.get(), -1, EV_PERSIST, on_sampler_tick_cb, this));
  add_with_timeout(sampler_timer_.get(), kSamplerTick);
  if (const auto interval = notifier_.watchdog_interval()) {
    // From the main loop: if it hangs, the pings stop and systemd acts.
    watchdog_timer_.reset(event_new(base_.get(), -1, EV_PERSIST, on_watchdog_cb, this));
    add_with_timeout(watchdog_timer_.get(), *interval);
  }
}

void Daemon::log_started(const std::string& config_path, int64_t fd_budget) const {
  for (const auto& service : snapshot().services) {
    const ServiceConfig& config = *service.config;
    for (const auto& address : config.listen) {
      if (in_kernel(config.forwarding)) {
        log_info("forwarding", {{"service", config.name},
                                {"address", address.to_string()},
                                {"forwarding", to_string(config.forwarding)},
                                {"protocol", to_string(config.protocol)}});
      } else {
        log_info("listening", {{"service", config.name}, {"address", address.to_string()}});
      }
    }
  }
  if (stats_)
    log_info("stats listening", {{"address", snapshot().config.stats.listen.to_string()}});
  log_info("started", {{"version", version()},
                       {"config", config_path},
                       {"workers", workers_count_},
                       {"services", snapshot().services.size()},
                       {"max_connections", snapshot().config.global.max_connections},
                       {"fd_limit", open_file_limit_},
                       {"fd_budget", fd_budget}});
}

// The stats endpoint, with the admin token preflight() read while still
// privileged.
bool Daemon::open_stats(std::optional<std::string> admin_token) {
  const StatsConfig& config = snapshot().config.stats;
  // The stats port an upgrade carried, if it is still the configured one.
  Fd carried;
  if (carried_ && carried_->stats_fd >= 0) {
    carried.reset(carried_->stats_fd);
    SocketAddress bound;
    bound.length = sizeof bound.storage;
    if (!config.enabled || ::getsockname(carried.get(), bound.sockaddr_ptr(), &bound.length) != 0 ||
        !(bound == config.listen))
      carried.reset();
  }
  // Or the one systemd's fd store kept, if it is still the configured one
  // (take_stored_fds checked what it is bound to).
  if (stored_.stats) {
    Fd stored(std::exchange(stored_.stats->fd, -1));
    if (!carried && config.enabled && stored_.stats->address == config.listen) {
      carried = std::move(stored);
      stats_from_store_ = true;
    }
  }
  if (!config.enabled) return true;
  StatsContext context{control_.snapshot(),
                       &control_,
                       &sampler_,
                       std::nullopt,
                       started_,
                       started_wall_,
                       &reloader_->status(),
                       [this](const std::string& peer, Reloader::Done done) {
                         reloader_->request(peer, std::move(done));
                       }};
  context.admin_token = std::move(admin_token);
  context.announcer = &announcer_;
  context.upgrade = &upgrade_status_;
  context.upgrade_action = [this](const std::string& peer, UpgradeDone done) {
    request_upgrade(peer, std::move(done));
  };
  stats_ = std::make_unique<StatsServer>(base_.get(), std::move(context));
  if (int error = stats_->listen(config.listen, std::move(carried)); error != 0) {
    log_error("cannot listen", {{"service", "stats"},
                                {"address", config.listen.to_string()},
                                {"error", errno_string(error)}});
    return false;
  }
  return true;
}

// Everything privileged is done (listeners and the stats port bound, the
// token read): drop root before any worker thread exists.
bool Daemon::drop_privileges_as_configured() {
  const GlobalConfig& global = snapshot().config.global;
  if (global.user.empty()) return true;
  // An upgraded image runs as the old one did: dropped already.
  if (carried_ && ::geteuid() != 0) return true;
  if (const std::string error =
          drop_privileges(global.user, global.group, capabilities_to_keep(snapshot().config));
      !error.empty()) {
    log_error("cannot drop privileges, refusing to run", {{"user", global.user}, {"error", error}});
    return false;
  }
  log_info("privileges dropped", {{"user", global.user}, {"uid", ::getuid()}, {"gid", ::getgid()}});
  return true;
}

void Daemon::start_workers(std::vector<BoundAddress> addresses) {
  for (unsigned w = 0; w < workers_count_; ++w) {
    auto worker = std::make_unique<Worker>(w, *admission_, [this] {
      workers_exited_.fetch_add(1);
      event_active(worker_exit_event_.get(), EV_READ, 0);
    });
    worker->set_snapshot(control_.snapshot());
    worker->set_passive_failure_notifier(
        [this] { event_active(passive_failure_event_.get(), EV_READ, 0); });
    for (BoundAddress& address : addresses) {
      worker->add_listener(*snapshot().service_listening_on(address.address), address.address,
                           std::move(address.per_worker[w]));
    }
    workers_.push_back(std::move(worker));
  }
  // Each carried socket to the worker of its number: with as many workers
  // as before, each its own again; with fewer, some take two; with more,
  // some take none of that address (SO_REUSEPORT spreads over the others).
  for (const CarriedListener& listener : carried_listeners_) {
    workers_[listener.worker % workers_count_]->add_listener(
        *snapshot().service_listening_on(listener.address), listener.address, Fd(listener.fd));
  }
  carried_listeners_.clear();
}

// The session budget: what the limit leaves once every base, listener and
// worker exists, minus what is kept for descriptors outside sessions.
// Returns it, or -1 (logged) when it is too small to serve.
int64_t Daemon::hand_out_fd_budget() {
  // Sessions carried by an upgrade hold descriptors already: they take
  // them from the budget as they are adopted, like admitted ones.
  int64_t carried_session_fds = 0;
  if (carried_) {
    const int64_t all = static_cast<int64_t>(carried_descriptors(*carried_).size());
    carried_session_fds =
        all - static_cast<int64_t>(carried_->listeners.size()) - (carried_->stats_fd >= 0 ? 1 : 0);
  }
  const int64_t held = count_open_fds() - listening_fds(snapshot().config, workers_count_) -
                       extra_listener_fds_ - carried_session_fds;
  fds_outside_sessions_ = fds_outside_sessions(snapshot().config, workers_count_);
  const int64_t budget = open_file_limit_ - held - fds_outside_sessions_;
  if (budget < 4) {
    log_error("too few file descriptors", {{"limit", open_file_limit_}, {"budget", budget}});
    return -1;
  }
  admission_->give_fds(budget);
  admission_->set_waker([this] {
    for (auto& worker : workers_) {
      if (worker->has_paused_listeners()) worker->wake();
    }
  });
  return budget;
}

std::unique_ptr<HealthChecker> Daemon::make_health_checker(
    std::shared_ptr<const Snapshot> snapshot) {
  HealthReports reports;
  reports.verdict = [this](const ServiceRuntime& service, const ServerRuntime& server,
                           bool healthy) {
    control_.report_health(service, server, healthy, std::chrono::steady_clock::now());
  };
  reports.failure = [this](const ServerRuntime& server, std::string reason) {
    control_.report_check_failure(server, std::move(reason), std::chrono::steady_clock::now());
  };
  reports.agent = [this](const ServiceRuntime& service, const ServerRuntime& server,
                         const AgentReply& reply, std::string line) {
    control_.report_agent(service, server, reply, std::move(line),
                          std::chrono::steady_clock::now());
  };
  reports.agent_failure = [this](const ServerRuntime& server, std::string reason) {
    control_.report_agent_failure(server, std::move(reason));
  };
  return std::make_unique<HealthChecker>(base_.get(), std::move(snapshot), std::move(reports));
}

void Daemon::serve(const std::shared_ptr<const Snapshot>& next,
                   std::vector<BoundAddress> new_addresses,
                   std::optional<std::string> admin_token) {
  follow_in_fd_store(*next, new_addresses);
  for (unsigned w = 0; w < workers_count_; ++w) {
    Worker::Update update{next, {}};
    for (BoundAddress& address : new_addresses)
      update.listeners.push_back({address.address, std::move(address.per_worker[w])});
    workers_[w]->post_update(std::move(update));
  }
  admission_->set_max_sessions(next->config.global.max_connections);
  Log::set_level(next->config.global.log_level);
  follow(next);
  if (stats_) stats_->update(next, std::move(admin_token));
  discovery_.configure(next->config);
}

void Daemon::serve_discovered(const std::shared_ptr<const Snapshot>& next) {
  for (auto& worker : workers_) worker->post_update(Worker::Update{next, {}});
  follow(next);
  if (stats_) stats_->follow(next);
}

void Daemon::follow(const std::shared_ptr<const Snapshot>& next) {
  sampler_.follow(*next);
  const int64_t outside = fds_outside_sessions(next->config, workers_count_);
  admission_->reserve_fds(outside - fds_outside_sessions_);
  fds_outside_sessions_ = outside;
  health_ = make_health_checker(next);
  health_->start();
}

// READY=1, after the log lines that led to it (`started`, `reloaded`), so
// that the journal tells the story in order; a stalled log reader delays it
// by kLogBeforeNotify at most.
void Daemon::tell_ready() const {
  Log::flush(kLogBeforeNotify);
  notifier_.ready(status_line());
}

std::string Daemon::status_line() const {
  return "serving " + std::to_string(snapshot().services.size()) + " services, " +
         std::to_string(admission_->active_sessions()) + " sessions, configuration generation " +
         std::to_string(snapshot().generation);
}

void Daemon::on_signal(int signal) {
  if (signal == SIGHUP) {
    if (!stopping_) reloader_->request("SIGHUP");
    return;
  }
  if (signal == SIGUSR2) {
    request_upgrade("SIGUSR2", {});
    return;
  }
  if (stopping_) {
    log_info("second stop signal, closing remaining sessions", {{"signal", signal_name(signal)}});
    if (evtimer_pending(announce_grace_timer_.get(), nullptr)) {
      event_del(announce_grace_timer_.get());
      stop_workers();
    }
    for (auto& worker : workers_) worker->request_force_close();
    return;
  }
  begin_stop(signal);
}

// Withdraws the VIPs first; after announce.grace, in which everything
// keeps serving (new sessions and flows included) while routers withdraw
// the routes, stops accepting everywhere and lets sessions finish for
// shutdown_timeout.
void Daemon::begin_stop(int signal) {
  stopping_ = true;
  reloader_->stop();
  discovery_.stop();
  if (stats_) stats_->set_stopping();
  // A stop closes the listeners, so new clients are refused at once; the
  // stop of a restart (SIGQUIT, the unit's RestartKillSignal=) leaves them
  // in systemd's store, where they wait for the next process.
  if (signal != SIGQUIT) fd_store_.remove_all();
  const GlobalConfig& global = snapshot().config.global;
  const bool withdrew = announcer_.withdraw_all();
  const Duration grace = withdrew ? global.announce->grace : Duration(0);
  log_info("stopping", {{"signal", signal_name(signal)},
                        {"sessions", admission_->active_sessions()},
                        {"announce_grace", format_duration(grace)},
                        {"shutdown_timeout", format_duration(global.shutdown_timeout)}});
  Log::flush(kLogBeforeNotify);
  notifier_.stopping();
  if (grace > Duration(0)) {
    add_with_timeout(announce_grace_timer_.get(), grace);
    return;
  }
  stop_workers();
}

void Daemon::stop_workers() {
  for (auto& worker : workers_) worker->request_stop();
  add_with_timeout(shutdown_timer_.get(), snapshot().config.global.shutdown_timeout);
}

void Daemon::on_announce_grace_cb(evutil_socket_t, short, void* arg) {
  static_cast<Daemon*>(arg)->stop_workers();
}

void Daemon::on_control_plane_tick_cb(evutil_socket_t, short, void* arg) {
  static_cast<Daemon*>(arg)->control_.tick(std::chrono::steady_clock::now());
}

void Daemon::on_sampler_tick_cb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Daemon*>(arg);
  self->kernel_plane_.read_counters(self->snapshot());
  self->sampler_.tick(std::chrono::steady_clock::now());
}

void Daemon::on_passive_failure_cb(evutil_socket_t, short, void* arg) {
  static_cast<Daemon*>(arg)->health_->account_passive_failures();
}

void Daemon::on_watchdog_cb(evutil_socket_t, short, void* arg) {
  static_cast<Daemon*>(arg)->notifier_.watchdog();
}

void Daemon::on_shutdown_timeout_cb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Daemon*>(arg);
  log_info("shutdown timeout reached, closing remaining sessions",
           {{"sessions", self->admission_->active_sessions()}});
  for (auto& worker : self->workers_) worker->request_force_close();
}

void Daemon::on_worker_exit_cb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Daemon*>(arg);
  if (self->workers_exited_.load() == self->workers_.size())
    event_base_loopbreak(self->base_.get());
}

int run_daemon(Config config, DaemonStart start) {
  // A splice to a peer that reset must return EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  const unsigned workers = worker_count(config.global);
  Daemon daemon(workers, std::move(start));
  return daemon.run(std::move(config));
}

}  // namespace fulcrum
