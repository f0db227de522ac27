#include "daemon.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <future>
#include <memory>
#include <vector>

#include "fulcrum/admin.hpp"
#include "fulcrum/admission.hpp"
#include "fulcrum/announcer.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/discovery.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/fd_store.hpp"
#include "fulcrum/health.hpp"
#include "fulcrum/kernel_plane.hpp"
#include "fulcrum/listeners.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/notify.hpp"
#include "fulcrum/open_files.hpp"
#include "fulcrum/preflight.hpp"
#include "fulcrum/privileges.hpp"
#include "fulcrum/reload.hpp"
#include "fulcrum/sampler.hpp"
#include "fulcrum/scheduler_plane.hpp"
#include "fulcrum/server_down_plane.hpp"
#include "fulcrum/signals.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/stats.hpp"
#include "fulcrum/upgrade.hpp"
#include "fulcrum/version.hpp"
#include "fulcrum/worker.hpp"

namespace fulcrum {

namespace {

// How often the control plane moves the weights of servers in slow start
// and forgets removed servers whose last session ended.
constexpr std::chrono::milliseconds kControlPlaneTick{500};
// How long the main loop waits for the log to be written before it tells
// systemd something (READY=1, STOPPING=1).
constexpr std::chrono::milliseconds kLogBeforeNotify{100};
// How often the stats sampler copies the counters (one ring slot each).
constexpr std::chrono::seconds kSamplerTick{1};
// How long the new binary's --check may take before the upgrade is refused.
constexpr std::chrono::seconds kBinaryCheckTimeout{30};
// The longest the hand-over waits for an upgrade request's answer to
// leave (the exec closes the stats port's clients): normally it goes on as
// soon as the answer is written.
constexpr std::chrono::seconds kAnswerBeforeExec{1};
// How long the workers may take to reach a safe point.
constexpr std::chrono::seconds kQuiesceTimeout{2};

// The daemon's lifecycle on the main thread: start-up (bind everything, then
// drop privileges, then start the workers), the loop, the graceful stop.
// Server state belongs to the ControlPlane; reloads to the Reloader, which
// calls back serve() to hand a new snapshot to the workers.
class Daemon final : public ReloadTarget {
 public:
  Daemon(unsigned workers, DaemonStart start)
      : workers_count_(workers),
        control_(workers),
        executable_(std::move(start.executable)),
        arguments_(std::move(start.arguments)),
        carried_(std::move(start.inherited.state)),
        stored_(std::move(start.stored)) {}
  int run(Config config);

  void reload_started() override { notifier_.reloading(); }
  void reload_finished(const ReloadStatus&) override { tell_ready(); }
  void serve(const std::shared_ptr<const Snapshot>& next, std::vector<BoundAddress> new_addresses,
             std::optional<std::string> admin_token) override;

 private:
  int start(Config config);
  bool open_stats(std::optional<std::string> admin_token);
  bool drop_privileges_as_configured();
  void create_events();
  void start_workers(std::vector<BoundAddress> addresses);
  int64_t hand_out_fd_budget();
  void log_started(const std::string& config_path, int64_t fd_budget) const;
  std::unique_ptr<HealthChecker> make_health_checker(std::shared_ptr<const Snapshot> snapshot);
  // Serves a snapshot built by DNS discovery (same configuration, other
  // servers).
  void serve_discovered(const std::shared_ptr<const Snapshot>& next);
  // What a reload's snapshot and a discovery's both change.
  void follow(const std::shared_ptr<const Snapshot>& next);
  // Binary upgrade: the request, the new binary's verdict, the hand-over.
  void request_upgrade(const std::string& by, UpgradeDone done);
  void on_binary_checked(const BinaryVerdict& verdict);
  void answer_sent();
  void hand_over();
  void upgrade_failed(const std::string& error);
  // Start-up after an upgrade: the carried listeners of addresses still
  // configured (the others closed), and the carried sessions handed to the
  // workers.
  std::vector<CarriedListener> take_carried_listeners(const std::vector<CarriedListener>& listeners,
                                                      const Config& config);
  // systemd's fd store (fd_store.hpp): on a start that is no upgrade, the
  // listeners it kept from the last process, taken up like an upgrade's;
  // then every listener and the stats port kept there, and a reload's
  // changes.
  std::vector<CarriedListener> take_stored_listeners(const Config& config);
  void join_missing_workers(std::vector<CarriedListener>& listeners, const Config& config);
  void keep_in_fd_store(const std::vector<BoundAddress>& addresses);
  void follow_in_fd_store(const Snapshot& next, const std::vector<BoundAddress>& new_addresses);
  void report_fd_store_full(size_t not_stored) const;
  void adopt_carried_sessions();
  void on_signal(int signal);
  void begin_stop(int signal);
  void stop_workers();
  std::string status_line() const;
  void tell_ready() const;
  const Snapshot& snapshot() const { return *control_.snapshot(); }

  static void on_shutdown_timeout_cb(evutil_socket_t, short, void* arg);
  static void on_announce_grace_cb(evutil_socket_t, short, void* arg);
  static void on_worker_exit_cb(evutil_socket_t, short, void* arg);
  static void on_control_plane_tick_cb(evutil_socket_t, short, void* arg);
  static void on_passive_failure_cb(evutil_socket_t, short, void* arg);
  static void on_sampler_tick_cb(evutil_socket_t, short, void* arg);
  static void on_watchdog_cb(evutil_socket_t, short, void* arg);
  static void on_hand_over_cb(evutil_socket_t, short, void* arg);

  const unsigned workers_count_;
  EventBasePtr base_{new_precise_event_base()};
  SchedulerPlane scheduler_plane_;
  // After the schedulers: a session moved off a down server picks from a
  // scheduler that no longer has it.
  ServerDownPlane server_down_plane_{ServerDownPlane::Watch::proxy,
                                     [this](const std::vector<ServerDownPlane::Down>& down) {
                                       std::vector<const ServerState*> servers;
                                       servers.reserve(down.size());
                                       for (const auto& entry : down)
                                         servers.push_back(entry.server->state.get());
                                       for (auto& worker : workers_)
                                         worker->request_close_sessions_of(servers);
                                     }};
  // After the kernel's rules: a forgotten flow's next packet is scheduled
  // by rules that no longer have its server.
  ServerDownPlane conntrack_plane_{ServerDownPlane::Watch::nat,
                                   [this](const std::vector<ServerDownPlane::Down>& down) {
                                     kernel_plane_.forget_flows_of(down);
                                   }};
  // nat, fullnat and dsr services: fulcrum's nftables tables.
  KernelPlane kernel_plane_;
  // After the kernel's rules: a VIP is announced once its rules are in.
  Announcer announcer_;
  ControlPlane control_;
  Discovery discovery_{base_.get(), control_};
  std::unique_ptr<SignalEvents> signals_;
  std::unique_ptr<Reloader> reloader_;
  std::unique_ptr<Admission> admission_;
  EventPtr shutdown_timer_;
  EventPtr announce_grace_timer_;  // on stop: VIPs withdrawn, still serving
  EventPtr worker_exit_event_;
  EventPtr control_plane_timer_;
  EventPtr passive_failure_event_;  // a worker saw a failed connect (health)
  EventPtr sampler_timer_;
  EventPtr watchdog_timer_;
  Notifier notifier_;
  FdStore fd_store_{notifier_, FdStore::capacity_from_environment()};
  std::unique_ptr<HealthChecker> health_;
  StatsSampler sampler_{std::chrono::steady_clock::now()};
  std::unique_ptr<StatsServer> stats_;
  int64_t open_file_limit_ = 0;       // the soft RLIMIT_NOFILE in force
  int64_t fds_outside_sessions_ = 0;  // kept out of the session budget now
  std::atomic<unsigned> workers_exited_{0};
  std::vector<std::unique_ptr<Worker>> workers_;
  bool stopping_ = false;
  // When the PID started: now, or what an upgrade carried.
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::system_clock::time_point started_wall_ = std::chrono::system_clock::now();
  // Binary upgrades.
  std::string config_path_;
  const std::string executable_;
  const std::vector<std::string> arguments_;
  std::optional<UpgradeState> carried_;             // from the old image, until start() took it up
  std::vector<CarriedListener> carried_listeners_;  // until the workers have them
  StoredFds stored_;  // what systemd's fd store passed, until start() took it up
  bool stats_from_store_ = false;
  // Listening sockets beyond one per worker and address (a store kept more
  // workers' than there are now): listeners, not descriptors held elsewhere.
  int64_t extra_listener_fds_ = 0;
  UpgradeStatus upgrade_status_;
  std::unique_ptr<BinaryCheck> binary_check_;
  std::vector<UpgradeDone> upgrade_waiters_;
  size_t answers_unsent_ = 0;  // answers the hand-over waits for
  std::string upgrade_to_version_;
  EventPtr hand_over_timer_;
};

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

// The carried listeners whose address `config` still serves in proxy mode;
// the others are closed (as a reload closes a removed address's).
std::vector<CarriedListener> Daemon::take_carried_listeners(
    const std::vector<CarriedListener>& listeners, const Config& config) {
  std::vector<CarriedListener> kept;
  for (const CarriedListener& listener : listeners) {
    bool served = false;
    for (const ServiceConfig& service : config.services) {
      if (in_kernel(service.forwarding)) continue;
      for (const SocketAddress& address : service.listen) served |= address == listener.address;
    }
    if (served) {
      kept.push_back(listener);
    } else {
      ::close(listener.fd);
    }
  }
  return kept;
}

// Listeners taken over from an earlier process or image, which may have had
// fewer workers: sockets joined for the workers they lack (an address that
// cannot be bound for one, e.g. below 1024 without the privilege, still has
// its sockets: SO_REUSEPORT spreads its clients over the other workers),
// and those beyond one per worker and address counted as listeners for the
// descriptor budget.
void Daemon::join_missing_workers(std::vector<CarriedListener>& listeners, const Config& config) {
  add_worker_sockets(listeners, workers_count_,
                     config.global.announce ? Binding::freebind : Binding::local);
  std::vector<SocketAddress> addresses;
  for (const CarriedListener& listener : listeners) {
    if (std::find(addresses.begin(), addresses.end(), listener.address) == addresses.end())
      addresses.push_back(listener.address);
  }
  extra_listener_fds_ = static_cast<int64_t>(listeners.size()) -
                        static_cast<int64_t>(addresses.size()) * workers_count_;
}

// The listeners systemd's fd store kept from the last process (fd_store.hpp),
// those of addresses still configured, with sockets joined for workers
// they lack; after an upgrade, none: the old image's are the ones in use.
std::vector<CarriedListener> Daemon::take_stored_listeners(const Config& config) {
  std::vector<CarriedListener> stored = std::exchange(stored_.listeners, {});
  if (carried_ || stored.empty()) {
    for (const CarriedListener& listener : stored) ::close(listener.fd);
    if (carried_ && stored_.stats) ::close(std::exchange(stored_.stats->fd, -1));
    return {};
  }
  std::vector<CarriedListener> kept = take_carried_listeners(stored, config);
  const size_t taken = kept.size();
  join_missing_workers(kept, config);
  log_info("listeners taken from the fd store",
           {{"listeners", taken},
            {"added", kept.size() - taken},
            {"closed", stored.size() - taken + stored_.discarded.size()}});
  return kept;
}

// Every listener and the stats port in systemd's fd store, each address's
// first worker's socket before any second one (a store too small for all
// still keeps every address open across a restart); whatever else the
// store held is removed. Before the workers take the listeners.
void Daemon::keep_in_fd_store(const std::vector<BoundAddress>& addresses) {
  if (!fd_store_.enabled()) return;
  std::vector<std::string> stale = stored_.names;
  std::vector<StoreEntry> entries;
  const auto in_store = [this](const std::string& name) {
    return std::find(stored_.names.begin(), stored_.names.end(), name) != stored_.names.end();
  };
  if (stats_) {
    const std::string name = stats_fd_name(snapshot().config.stats.listen);
    entries.push_back({name, stats_->listening_fd(), stats_from_store_});
    // After an upgrade the old image may have stored it under this name.
    if (carried_) stale.push_back(name);
  }
  if (carried_) {
    for (const CarriedListener& listener : carried_->listeners)
      stale.push_back(listener_fd_name(listener.address, listener.worker));
  }
  for (unsigned w = 0; w < workers_count_; ++w) {
    for (const BoundAddress& address : addresses)
      entries.push_back({listener_fd_name(address.address, w), address.per_worker[w].get(), false});
    // Under the number of the worker that takes it (start_workers), which
    // a store of more workers than now renames.
    for (const CarriedListener& listener : carried_listeners_) {
      if (listener.worker % workers_count_ != w) continue;
      const std::string name = listener_fd_name(listener.address, w);
      entries.push_back({name, listener.fd, !carried_ && listener.worker == w && in_store(name)});
    }
  }
  report_fd_store_full(fd_store_.begin(entries, stale, stored_.discarded));
  stored_.names.clear();
  stored_.discarded.clear();
}

// A reload: the listeners of addresses no longer served leave the store,
// the new ones join it.
void Daemon::follow_in_fd_store(const Snapshot& next,
                                const std::vector<BoundAddress>& new_addresses) {
  if (!fd_store_.enabled()) return;
  fd_store_.remove_if([&next](const StoredName& name) {
    return name.kind == StoredName::Kind::listener &&
           next.service_listening_on(name.address) == nullptr;
  });
  std::vector<StoreEntry> entries;
  for (unsigned w = 0; w < workers_count_; ++w) {
    for (const BoundAddress& address : new_addresses)
      entries.push_back({listener_fd_name(address.address, w), address.per_worker[w].get(), false});
  }
  report_fd_store_full(fd_store_.add(entries));
}

void Daemon::report_fd_store_full(size_t not_stored) const {
  if (not_stored == 0) return;
  log_warn("fd store full", {{"capacity", fd_store_.capacity()},
                             {"stored", fd_store_.size()},
                             {"not_stored", not_stored}});
}

// Each carried session goes to the worker of the same number (the old
// image's count, folded onto this one's). A session whose service is gone
// (the file changed between the images) is closed with a reset on both
// sides: its stream cannot go on.
void Daemon::adopt_carried_sessions() {
  uint64_t closed = 0;
  for (CarriedSession& session : carried_->sessions) {
    const ServiceRuntime* service = nullptr;
    for (const ServiceRuntime& candidate : snapshot().services) {
      if (candidate.config->name == session.service && !in_kernel(candidate.config->forwarding))
        service = &candidate;
    }
    if (service != nullptr) {
      Worker& worker = *workers_[session.worker % workers_count_];
      worker.adopt_session(*service, std::move(session));
      continue;
    }
    ++closed;
    for (int fd : {session.client_fd, session.server_fd}) {
      if (fd >= 0) set_linger_reset(fd);
    }
    for (int fd : {session.client_fd, session.server_fd, session.c2s.pipe_read,
                   session.c2s.pipe_write, session.s2c.pipe_read, session.s2c.pipe_write}) {
      if (fd >= 0) ::close(fd);
    }
  }
  if (closed > 0)
    log_warn("carried sessions closed, their service is gone", {{"sessions", closed}});
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

// Step 1 of an upgrade: the binary at our own path checks our
// configuration and says which state it reads, on a thread of its own.
void Daemon::request_upgrade(const std::string& by, UpgradeDone done) {
  UpgradeAnswer answer;
  answer.binary = executable_;
  if (stopping_) {
    answer.outcome = UpgradeAnswer::Outcome::stopping;
    answer.error = "stopping";
  } else if (upgrade_status_.in_progress || reloader_->running()) {
    answer.outcome = UpgradeAnswer::Outcome::busy;
    answer.error =
        upgrade_status_.in_progress ? "an upgrade is under way" : "a reload is under way";
  } else if (executable_.empty()) {
    answer.outcome = UpgradeAnswer::Outcome::refused;
    answer.error = "the executable's path is unknown (/proc/self/exe)";
  } else {
    upgrade_status_.in_progress = true;
    if (done) upgrade_waiters_.push_back(std::move(done));
    log_info("upgrade requested", {{"by", by}, {"binary", executable_}});
    if (!binary_check_) {
      binary_check_ = std::make_unique<BinaryCheck>(
          base_.get(), [this](const BinaryVerdict& verdict) { on_binary_checked(verdict); });
    }
    binary_check_->start(executable_, config_path_, kBinaryCheckTimeout);
    return;
  }
  log_warn("upgrade refused", {{"by", by}, {"error", answer.error}});
  if (done) done(answer);
}

// Step 2: the new binary passed; the answer goes out, and the hand-over
// follows once it has left.
void Daemon::on_binary_checked(const BinaryVerdict& verdict) {
  if (!verdict.error.empty()) {
    upgrade_failed(verdict.error);
    return;
  }
  upgrade_to_version_ = verdict.version;
  UpgradeAnswer answer{UpgradeAnswer::Outcome::started, {}, executable_, verdict.version, {}};
  // Answers to send (POST /api/v1/upgrade) leave first: the hand-over
  // follows the last one written, or kAnswerBeforeExec. A signal waits for
  // nothing.
  answers_unsent_ = upgrade_waiters_.size();
  answer.sent = [this] { answer_sent(); };
  if (!hand_over_timer_) hand_over_timer_.reset(evtimer_new(base_.get(), on_hand_over_cb, this));
  add_with_timeout(hand_over_timer_.get(), answers_unsent_ > 0
                                               ? std::chrono::milliseconds(kAnswerBeforeExec)
                                               : std::chrono::milliseconds(0));
  for (auto& done : std::exchange(upgrade_waiters_, {})) done(answer);
}

// An answer of the upgrade left (or its client went away): once none is
// left to send, the hand-over runs on the loop's next turn, not inside the
// stats server's callback.
void Daemon::answer_sent() {
  if (answers_unsent_ == 0 || --answers_unsent_ > 0) return;
  event_del(hand_over_timer_.get());
  event_active(hand_over_timer_.get(), EV_TIMEOUT, 0);
}

void Daemon::on_hand_over_cb(evutil_socket_t, short, void* arg) {
  static_cast<Daemon*>(arg)->hand_over();
}

// Step 3: the workers stop at a safe point and write down their listeners
// and sessions; with the control plane's state that becomes the blob the
// binary is exec'd with. Returns only if the exec failed: then everything
// goes on as before.
void Daemon::hand_over() {
  answers_unsent_ = 0;
  if (stopping_ || reloader_->running()) {
    upgrade_failed(stopping_ ? "a stop began meanwhile" : "a reload began meanwhile");
    return;
  }
  notifier_.reloading();
  std::vector<std::future<Worker::Carried>> parts;
  for (auto& worker : workers_) {
    auto promise = std::make_shared<std::promise<Worker::Carried>>();
    parts.push_back(promise->get_future());
    worker->request_carry(
        [promise](Worker::Carried carried) { promise->set_value(std::move(carried)); });
  }
  const auto deadline = std::chrono::steady_clock::now() + kQuiesceTimeout;
  UpgradeState state;
  state.from_version = version();
  for (auto& part : parts) {
    if (part.wait_until(deadline) != std::future_status::ready) {
      for (auto& worker : workers_) worker->resume();
      upgrade_failed("the workers did not reach a safe point within 2s");
      tell_ready();
      return;
    }
    Worker::Carried carried = part.get();
    std::move(carried.listeners.begin(), carried.listeners.end(),
              std::back_inserter(state.listeners));
    std::move(carried.sessions.begin(), carried.sessions.end(), std::back_inserter(state.sessions));
  }
  control_.carry(state);
  health_->carry_streaks(state);
  state.upgrades = upgrade_status_.upgrades + 1;
  state.started_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(started_.time_since_epoch()).count();
  state.started_wall_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(started_wall_.time_since_epoch())
          .count();
  state.reloads_succeeded = reloader_->status().succeeded;
  state.reloads_failed = reloader_->status().failed;
  state.stats_fd = stats_ ? stats_->listening_fd() : -1;
  log_info("upgrading", {{"binary", executable_},
                         {"version", upgrade_to_version_},
                         {"sessions", state.sessions.size()},
                         {"listeners", state.listeners.size()}});
  Log::flush(kLogBeforeNotify);
  const std::string error = exec_with_state(executable_, arguments_, state);
  for (auto& worker : workers_) worker->resume();
  upgrade_failed(error);
  tell_ready();
}

void Daemon::upgrade_failed(const std::string& error) {
  log_error("upgrade failed, still serving", {{"binary", executable_}, {"error", error}});
  upgrade_status_.in_progress = false;
  upgrade_status_.last_failure_at = std::chrono::system_clock::now();
  upgrade_status_.last_error = error;
  UpgradeAnswer answer{UpgradeAnswer::Outcome::refused, error, executable_, {}, {}};
  for (auto& done : std::exchange(upgrade_waiters_, {})) done(answer);
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

}  // namespace

int run_daemon(Config config, DaemonStart start) {
  // A splice to a peer that reset must return EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  const unsigned workers = worker_count(config.global);
  Daemon daemon(workers, std::move(start));
  return daemon.run(std::move(config));
}

}  // namespace fulcrum
