// The Daemon class, shared by the files that implement it: daemon.cpp (the
// lifecycle: start-up, serving, signals, the graceful stop),
// daemon_upgrade.cpp (binary upgrades in place and taking over what an
// earlier process left) and daemon_fd_store.cpp (systemd's fd store).
// Nothing else includes it: the daemon's interface is daemon.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon.hpp"
#include "fulcrum/admission.hpp"
#include "fulcrum/announcer.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/discovery.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/fd_store.hpp"
#include "fulcrum/health.hpp"
#include "fulcrum/kernel_plane.hpp"
#include "fulcrum/listeners.hpp"
#include "fulcrum/notify.hpp"
#include "fulcrum/reload.hpp"
#include "fulcrum/sampler.hpp"
#include "fulcrum/scheduler_plane.hpp"
#include "fulcrum/server_down_plane.hpp"
#include "fulcrum/signals.hpp"
#include "fulcrum/stats.hpp"
#include "fulcrum/upgrade.hpp"
#include "fulcrum/worker.hpp"

namespace fulcrum {

// How long the main loop waits for the log to be written before it tells
// systemd something (READY=1, STOPPING=1, RELOADING=1 before an upgrade).
inline constexpr std::chrono::milliseconds kLogBeforeNotify{100};

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

}  // namespace fulcrum
