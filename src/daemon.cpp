#include "fulcrum/daemon.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <memory>
#include <vector>

#include "fulcrum/admin.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/health.hpp"
#include "fulcrum/limits.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/notify.hpp"
#include "fulcrum/privileges.hpp"
#include "fulcrum/snapshot.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/stats.hpp"
#include "fulcrum/worker.hpp"

namespace fulcrum {

namespace {

// Descriptors kept out of the session budget for what opens them later
// (health checks, stats clients): 1/8 of the limit, between 8 and 64.
int64_t reserved_fds(int64_t open_file_limit) {
  return std::clamp<int64_t>(open_file_limit / 8, 8, 64);
}
constexpr int kListenBacklog = 65535;  // the kernel caps it at net.core.somaxconn
// How often weights ramping under slow start are re-published.
constexpr std::chrono::milliseconds kSlowStartTick{500};

unsigned available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
}

const char* signal_name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    default: return "signal";
  }
}

bool any_transparent(const Config& config) {
  return std::any_of(config.services.begin(), config.services.end(), [](const ServiceConfig& s) {
    return s.address_mode == AddressMode::transparent;
  });
}

// Transparent services need IP_TRANSPARENT for each address family of their
// servers. Tried up front, so a missing capability stops the start (or the
// reload) with a clear reason instead of failing every session. Returns an
// empty string or the reason.
std::string check_transparent_capability(const Config& config) {
  for (const ServiceConfig& service : config.services) {
    if (service.address_mode != AddressMode::transparent) continue;
    for (const ServerConfig& server : service.servers) {
      const int family = server.address.family();
      if (int e = check_transparent_allowed(family); e != 0) {
        return "service " + service.name +
               ": address_mode transparent needs CAP_NET_RAW or CAP_NET_ADMIN (" +
               (family == AF_INET6 ? "IPV6_TRANSPARENT: " : "IP_TRANSPARENT: ") + errno_string(e) +
               ")";
      }
    }
  }
  return "";
}

class Daemon {
 public:
  explicit Daemon(Config config) : config_(std::move(config)) {}
  int run();

 private:
  bool open_listeners();
  std::unique_ptr<HealthChecker> make_health_checker();
  const ReloadStatus& reload(const std::string& asked_by);
  bool apply_reload(Config config, std::string& error);
  void on_signal(int signal);
  void begin_stop(int signal);
  void on_worker_exit();

  static void on_signal_cb(evutil_socket_t signal, short, void* arg);
  static void on_shutdown_timeout_cb(evutil_socket_t, short, void* arg);
  static void on_worker_exit_cb(evutil_socket_t, short, void* arg);
  static void on_slow_start_tick_cb(evutil_socket_t, short, void* arg);
  static void on_passive_failure_cb(evutil_socket_t, short, void* arg);
  static void on_watchdog_cb(evutil_socket_t, short, void* arg);
  std::string status_line() const;
  void on_slow_start_tick();

  Config config_;
  unsigned worker_count_ = 1;
  StateRegistry registry_;
  std::shared_ptr<const Snapshot> snapshot_;
  // One listening socket per (service, address, worker), opened before any
  // worker starts so that a bind error stops start-up with exit code 3.
  struct PendingListener {
    const ServiceRuntime* service;
    SocketAddress address;
    std::vector<Fd> per_worker;
  };
  std::vector<PendingListener> listeners_;
  std::unique_ptr<Admission> admission_;
  EventBasePtr base_;
  std::vector<EventPtr> signal_events_;
  EventPtr shutdown_timer_;
  EventPtr worker_exit_event_;
  EventPtr slow_start_timer_;
  EventPtr passive_failure_event_;  // a worker saw a failed connect (health)
  EventPtr watchdog_timer_;
  Notifier notifier_;
  std::string config_path_;
  ReloadStatus reload_status_;
  std::unique_ptr<HealthChecker> health_;
  std::unique_ptr<StatsServer> stats_;
  std::vector<bool> ramping_;  // per service: some server was in slow start at the last tick
  std::atomic<unsigned> workers_exited_{0};
  std::vector<std::unique_ptr<Worker>> workers_;
  bool stopping_ = false;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  const std::chrono::system_clock::time_point started_wall_ = std::chrono::system_clock::now();
};

bool Daemon::open_listeners() {
  for (const auto& service : snapshot_->services) {
    for (const auto& address : service.config->listen) {
      PendingListener pending{&service, address, {}};
      for (unsigned w = 0; w < worker_count_; ++w) {
        Fd fd;
        if (int error = open_listener(address, kListenBacklog, fd); error != 0) {
          log_error("cannot listen", {{"service", service.config->name},
                                      {"address", address.to_string()},
                                      {"error", errno_string(error)}});
          return false;
        }
        pending.per_worker.push_back(std::move(fd));
      }
      listeners_.push_back(std::move(pending));
    }
  }
  return true;
}

void Daemon::on_slow_start_tick_cb(evutil_socket_t, short, void* arg) {
  static_cast<Daemon*>(arg)->on_slow_start_tick();
}

// While a server of a service ramps its weight after coming up, the service's
// scheduler is rebuilt every tick, and once more when the ramp has ended so
// that the full weight is in force.
void Daemon::on_slow_start_tick() {
  const auto now = std::chrono::steady_clock::now();
  for (size_t i = 0; i < snapshot_->services.size(); ++i) {
    const ServiceRuntime& service = snapshot_->services[i];
    const bool ramping = any_ramping(service.sched_servers, now);
    if (ramping || ramping_[i]) service.scheduler->rebuild(now);
    ramping_[i] = ramping;
  }
}

void Daemon::on_passive_failure_cb(evutil_socket_t, short, void* arg) {
  static_cast<Daemon*>(arg)->health_->account_passive_failures();
}

std::unique_ptr<HealthChecker> Daemon::make_health_checker() {
  auto checker =
      std::make_unique<HealthChecker>(base_.get(), snapshot_, [](const ServiceRuntime& service) {
        service.scheduler->rebuild(std::chrono::steady_clock::now());
      });
  return checker;
}

// Reloads the configuration file (SIGHUP or the admin API): the same
// loading and validation as --check; on any error the running
// configuration stays and the errors are logged and recorded.
void Daemon::on_watchdog_cb(evutil_socket_t, short, void* arg) {
  static_cast<Daemon*>(arg)->notifier_.watchdog();
}

// The one-line summary systemd shows (STATUS=).
std::string Daemon::status_line() const {
  return "serving " + std::to_string(snapshot_->services.size()) + " services, " +
         std::to_string(admission_->active_sessions()) + " sessions, configuration generation " +
         std::to_string(snapshot_->generation);
}

const ReloadStatus& Daemon::reload(const std::string& asked_by) {
  notifier_.reloading();
  // READY=1 follows whatever the outcome: the old or the new configuration
  // is serving.
  struct ReadyAgain {
    const Daemon& daemon;
    ~ReadyAgain() { daemon.notifier_.ready(daemon.status_line()); }
  } ready_again{*this};
  log_info("reloading", {{"config", config_path_}, {"by", asked_by}});
  ConfigLoad load = load_config_file(config_path_);
  std::vector<std::string> errors;
  for (const ConfigError& e : load.errors) errors.push_back(e.to_string());
  if (errors.empty()) {
    std::string error;
    if (!apply_reload(std::move(*load.config), error)) errors.push_back(error);
  }
  reload_status_.at = std::chrono::system_clock::now();
  if (!errors.empty()) {
    for (const std::string& e : errors) log_error("reload rejected", {{"error", e}});
    reload_status_.ok = false;
    reload_status_.error = errors.front();
    ++reload_status_.failed;
    log_error("reload failed, the running configuration stays",
              {{"errors", errors.size()}, {"generation", snapshot_->generation}});
    return reload_status_;
  }
  reload_status_.ok = true;
  reload_status_.error.clear();
  ++reload_status_.succeeded;
  log_info("reloaded", {{"generation", snapshot_->generation}, {"by", asked_by}});
  return reload_status_;
}

// Builds and publishes the next snapshot. Listening sockets of addresses that
// stay are kept (never closed: no client refused); new addresses are bound
// first, so that a bind error leaves everything as it was.
bool Daemon::apply_reload(Config config, std::string& error) {
  if (config.global.workers != 0 && config.global.workers != worker_count_) {
    log_warn("global.workers changes need a restart; keeping the running count",
             {{"workers", worker_count_}, {"configured", config.global.workers}});
  }
  error = check_transparent_capability(config);
  if (!error.empty()) return false;
  std::optional<std::string> token;
  if (config.stats.enabled && !config.stats.admin_token_file.empty()) {
    token = read_admin_token(config.stats.admin_token_file, error);
    if (!token) return false;
  }
  if (config.stats.enabled != snapshot_->config.stats.enabled ||
      !(config.stats.listen == snapshot_->config.stats.listen)) {
    log_warn("stats.listen changes need a restart; the stats endpoint stays as it is");
  }

  // Bind what is new before touching anything.
  std::vector<std::pair<SocketAddress, std::vector<Fd>>> added;
  for (const auto& service : config.services) {
    for (const auto& address : service.listen) {
      if (snapshot_->service_listening_on(address) != nullptr) continue;
      std::vector<Fd> per_worker;
      for (unsigned w = 0; w < worker_count_; ++w) {
        Fd fd;
        if (int e = open_listener(address, kListenBacklog, fd); e != 0) {
          error = "cannot listen on " + address.to_string() + ": " + errno_string(e);
          log_error("cannot listen", {{"service", service.name},
                                      {"address", address.to_string()},
                                      {"error", errno_string(e)}});
          return false;
        }
        per_worker.push_back(std::move(fd));
      }
      added.emplace_back(address, std::move(per_worker));
    }
  }

  // Weights set through the admin API last until a reload (SPEC.md).
  registry_.for_each_server([](ServerState& state) { state.weight_override.store(-1); });
  const auto previous = snapshot_;
  snapshot_ = build_snapshot(std::move(config), previous->generation + 1, registry_, worker_count_);
  const auto now = std::chrono::steady_clock::now();
  for (const auto& service : snapshot_->services) {
    for (const auto& server : service.servers) server.state->update_status(now);
    for (const auto& old : previous->services) {
      if (old.config->name == service.config->name)
        service.scheduler->continue_from(*old.scheduler);
    }
    service.scheduler->rebuild(now);
  }
  for (const auto& [address, fds] : added) {
    log_info("listening", {{"service", snapshot_->service_listening_on(address)->config->name},
                           {"address", address.to_string()}});
  }
  for (unsigned w = 0; w < worker_count_; ++w) {
    Worker::Update update{snapshot_, {}};
    for (auto& [address, fds] : added) update.listeners.push_back({address, std::move(fds[w])});
    workers_[w]->post_update(std::move(update));
  }
  admission_->set_max_sessions(snapshot_->config.global.max_connections);
  Log::set_level(snapshot_->config.global.log_level);
  health_ = make_health_checker();
  health_->start();
  if (stats_) stats_->update(snapshot_, std::move(token));
  ramping_.assign(snapshot_->services.size(), false);
  log_config_changes(*previous, *snapshot_);
  return true;
}

int Daemon::run() {
  Log::set_level(config_.global.log_level);
  const int64_t open_file_limit = raise_open_file_limit();
  worker_count_ = config_.global.workers == 0 ? available_cpus() : config_.global.workers;
  const uint64_t max_connections = config_.global.max_connections;
  const std::string config_path = config_.path;
  config_path_ = config_path;
  reload_status_.at = started_wall_;
  snapshot_ = build_snapshot(std::move(config_), 1, registry_, worker_count_);
  if (!open_listeners()) return kExitStartup;

  // The descriptor budget is handed over once every base, listener and
  // worker exists, so that it counts exactly what is left.
  admission_ = std::make_unique<Admission>(max_connections, 0);

  base_.reset(event_base_new());
  worker_exit_event_.reset(event_new(base_.get(), -1, 0, on_worker_exit_cb, this));
  for (int signal : {SIGTERM, SIGINT, SIGHUP}) {
    signal_events_.emplace_back(evsignal_new(base_.get(), signal, on_signal_cb, this));
    event_add(signal_events_.back().get(), nullptr);
  }
  shutdown_timer_.reset(evtimer_new(base_.get(), on_shutdown_timeout_cb, this));
  slow_start_timer_.reset(event_new(base_.get(), -1, EV_PERSIST, on_slow_start_tick_cb, this));
  add_with_timeout(slow_start_timer_.get(), kSlowStartTick);
  ramping_.assign(snapshot_->services.size(), false);
  if (snapshot_->config.stats.enabled) {
    StatsContext context{snapshot_,
                         std::nullopt,
                         started_,
                         started_wall_,
                         &reload_status_,
                         [this](const std::string& peer) -> const ReloadStatus& { return reload(peer); }};
    if (const std::string& path = snapshot_->config.stats.admin_token_file; !path.empty()) {
      std::string error;
      context.admin_token = read_admin_token(path, error);
      if (!context.admin_token) {
        log_error("cannot start the admin API", {{"error", error}});
        return kExitStartup;
      }
    }
    stats_ = std::make_unique<StatsServer>(base_.get(), std::move(context));
    if (int error = stats_->listen(snapshot_->config.stats.listen); error != 0) {
      log_error("cannot listen", {{"service", "stats"},
                                  {"address", snapshot_->config.stats.listen.to_string()},
                                  {"error", errno_string(error)}});
      return kExitStartup;
    }
  }
  // Everything privileged is done: listeners and the stats port are bound,
  // the token is read. Drop root before any worker thread exists.
  if (const auto& global = snapshot_->config.global; !global.user.empty()) {
    const bool keep_net_raw = any_transparent(snapshot_->config);
    if (const std::string error = drop_privileges(global.user, global.group, keep_net_raw);
        !error.empty()) {
      log_error("cannot drop privileges, refusing to run",
                {{"user", global.user}, {"error", error}});
      return kExitStartup;
    }
    log_info("privileges dropped",
             {{"user", global.user}, {"uid", ::getuid()}, {"gid", ::getgid()}});
  }
  // In the privileges the daemon keeps serving with.
  if (const std::string error = check_transparent_capability(snapshot_->config); !error.empty()) {
    log_error("cannot start", {{"error", error}});
    return kExitStartup;
  }
  passive_failure_event_.reset(event_new(base_.get(), -1, 0, on_passive_failure_cb, this));
  health_ = make_health_checker();

  for (unsigned w = 0; w < worker_count_; ++w) {
    auto worker = std::make_unique<Worker>(w, *admission_, [this] {
      workers_exited_.fetch_add(1);
      event_active(worker_exit_event_.get(), EV_READ, 0);
    });
    worker->set_snapshot(snapshot_);
    worker->set_passive_failure_notifier(
        [this] { event_active(passive_failure_event_.get(), EV_READ, 0); });
    for (auto& pending : listeners_) {
      worker->add_listener(*pending.service, pending.address, std::move(pending.per_worker[w]));
    }
    workers_.push_back(std::move(worker));
  }
  listeners_.clear();
  const int64_t fd_budget = open_file_limit - count_open_fds() - reserved_fds(open_file_limit);
  if (fd_budget < 4) {
    log_error("too few file descriptors", {{"limit", open_file_limit}, {"budget", fd_budget}});
    return kExitStartup;
  }
  admission_->give_fds(fd_budget);
  admission_->set_waker([this] {
    for (auto& worker : workers_) {
      if (worker->has_paused_listeners()) worker->wake();
    }
  });
  for (auto& worker : workers_) worker->start();
  health_->start();
  if (const auto interval = notifier_.watchdog_interval()) {
    // From the main loop: if it hangs, the pings stop and systemd acts.
    watchdog_timer_.reset(event_new(base_.get(), -1, EV_PERSIST, on_watchdog_cb, this));
    add_with_timeout(watchdog_timer_.get(), *interval);
  }

  for (const auto& service : snapshot_->services) {
    for (const auto& address : service.config->listen) {
      log_info("listening", {{"service", service.config->name}, {"address", address.to_string()}});
    }
  }
  if (stats_)
    log_info("stats listening", {{"address", snapshot_->config.stats.listen.to_string()}});
  log_info("started", {{"version", FULCRUM_VERSION},
                       {"config", config_path},
                       {"workers", worker_count_},
                       {"services", snapshot_->services.size()},
                       {"max_connections", max_connections},
                       {"fd_limit", open_file_limit},
                       {"fd_budget", fd_budget}});
  notifier_.ready(status_line());

  event_base_loop(base_.get(), EVLOOP_NO_EXIT_ON_EMPTY);

  for (auto& worker : workers_) worker->join();
  admission_->set_waker(nullptr);
  workers_.clear();
  health_.reset();
  stats_.reset();
  log_info("stopped");
  return kExitOk;
}

void Daemon::on_signal_cb(evutil_socket_t signal, short, void* arg) {
  static_cast<Daemon*>(arg)->on_signal(static_cast<int>(signal));
}

void Daemon::on_signal(int signal) {
  if (signal == SIGHUP) {
    if (!stopping_) reload("SIGHUP");
    return;
  }
  if (stopping_) {
    log_info("second stop signal, closing remaining sessions", {{"signal", signal_name(signal)}});
    for (auto& worker : workers_) worker->request_force_close();
    return;
  }
  begin_stop(signal);
}

// Stops accepting everywhere and lets sessions finish for shutdown_timeout.
void Daemon::begin_stop(int signal) {
  stopping_ = true;
  notifier_.stopping();
  if (stats_) stats_->set_stopping();
  log_info("stopping",
           {{"signal", signal_name(signal)},
            {"sessions", admission_->active_sessions()},
            {"shutdown_timeout", format_duration(snapshot_->config.global.shutdown_timeout)}});
  for (auto& worker : workers_) worker->request_stop();
  add_with_timeout(shutdown_timer_.get(), snapshot_->config.global.shutdown_timeout);
}

void Daemon::on_shutdown_timeout_cb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Daemon*>(arg);
  log_info("shutdown timeout reached, closing remaining sessions",
           {{"sessions", self->admission_->active_sessions()}});
  for (auto& worker : self->workers_) worker->request_force_close();
}

void Daemon::on_worker_exit_cb(evutil_socket_t, short, void* arg) {
  static_cast<Daemon*>(arg)->on_worker_exit();
}

void Daemon::on_worker_exit() {
  if (workers_exited_.load() == workers_.size()) event_base_loopbreak(base_.get());
}

}  // namespace

int run_daemon(Config config) {
  // A splice to a peer that reset must return EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  Daemon daemon(std::move(config));
  return daemon.run();
}

}  // namespace fulcrum
