// A worker thread: one event_base, its own SO_REUSEPORT listener per service
// address, its sessions and its pipe pool. Other threads talk to it only
// through the thread-safe request_*() and wake() calls.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "fulcrum/admission.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/pipe_pool.hpp"
#include "fulcrum/poller.hpp"
#include "fulcrum/snapshot.hpp"
#include "fulcrum/upgrade_state.hpp"

namespace fulcrum {

class Listener;
class Session;

// How many worker threads `global.workers` asks for: its number, or with
// `auto` (0) the CPUs this process may run on.
unsigned worker_count(const GlobalConfig& global);

class Worker {
 public:
  // `on_exit` runs on the worker thread once its loop has ended.
  Worker(unsigned index, Admission& admission, std::function<void()> on_exit);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Before start(), from the main thread.
  void set_snapshot(std::shared_ptr<const Snapshot> snapshot) { snapshot_ = std::move(snapshot); }
  // Called (from this worker's thread) after a session's connect failed on a
  // health-checked service: wakes the health checker on the main thread.
  void set_passive_failure_notifier(std::function<void()> notify) {
    notify_passive_failure_ = std::move(notify);
  }
  void add_listener(const ServiceRuntime& service, const SocketAddress& address, Fd fd);
  // A session carried over by a binary upgrade, resumed at once. Before
  // start(), from the main thread.
  void adopt_session(const ServiceRuntime& service, CarriedSession carried);
  void start();
  void join();

  // A new snapshot to serve, with the listening sockets of its new addresses
  // (one per address for this worker). Listeners whose address stays are
  // kept and retargeted, those whose address is gone are closed.
  struct Update {
    std::shared_ptr<const Snapshot> snapshot;
    struct NewListener {
      SocketAddress address;
      Fd fd;
    };
    std::vector<NewListener> listeners;
  };

  // Thread safe.
  void post_update(Update update);
  void request_stop();         // stop accepting; the loop ends with the last session
  void request_force_close();  // close every remaining session now
  void wake();                 // a session slot or descriptors were released
  // These servers were marked down in services with on_server_down: close:
  // reset the sessions relaying to them, move those connecting to them on.
  void request_close_sessions_of(std::vector<const ServerState*> servers);
  bool has_paused_listeners() const { return paused_listeners_.load() > 0; }

  // A binary upgrade (thread safe): at its next safe point, between two
  // callbacks, the worker writes down its listeners and sessions, hands
  // them to `deliver` (on the worker thread) and stands still, changing
  // nothing, until resume() — unless the exec ends the process first.
  // Bytes in flight wait in the kernel meanwhile.
  struct Carried {
    std::vector<CarriedListener> listeners;
    std::vector<CarriedSession> sessions;
  };
  void request_carry(std::function<void(Carried)> deliver);
  // The upgrade was given up (thread safe): go on serving.
  void resume();

  // Worker thread only.
  unsigned index() const { return index_; }
  event_base* base() const { return base_.get(); }
  PipePool& pipes() { return pipes_; }
  Poller& poller() { return poller_; }
  Admission& admission() { return admission_; }
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  // A listener stopped (or resumed) accepting for lack of a session slot or
  // descriptors; releases anywhere wake this worker while one is paused.
  void listener_paused();
  void listener_resumed();
  void notify_passive_failure() {
    if (notify_passive_failure_) notify_passive_failure_();
  }
  // Takes ownership of a new session and starts it.
  void start_session(std::unique_ptr<Session> session);
  // A session ended: it is destroyed once the current callback returns.
  void session_finished(Session* session);

 private:
  void run();
  void on_wake();
  void apply(Update update);
  void close_sessions_of(const std::vector<const ServerState*>& servers);
  void exit_if_idle();
  Carried carry() const;
  void stand_still();
  static void on_wake_cb(evutil_socket_t, short, void* arg);
  static void on_reap_cb(evutil_socket_t, short, void* arg);

  const unsigned index_;
  Admission& admission_;
  std::function<void()> on_exit_;
  std::function<void()> notify_passive_failure_;
  EventBasePtr base_;
  Poller poller_;  // the sessions' sockets
  EventPtr wake_event_;
  EventPtr reap_event_;  // destroys finished sessions outside their callbacks
  PipePool pipes_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::list<std::unique_ptr<Session>> sessions_;
  std::list<std::unique_ptr<Session>> finished_sessions_;
  std::atomic<int> paused_listeners_{0};
  std::mutex update_mutex_;
  std::vector<Update> pending_updates_;           // applied in order: each builds on the last
  std::vector<const ServerState*> servers_down_;  // under update_mutex_
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> force_requested_{false};
  std::function<void(Carried)> carry_delivery_;  // under update_mutex_
  std::mutex resume_mutex_;
  std::condition_variable resume_signal_;
  bool resume_ = false;  // under resume_mutex_
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace fulcrum
