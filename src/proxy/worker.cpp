#include "fulcrum/worker.hpp"

#include <sched.h>

#include <algorithm>

#include "fulcrum/log.hpp"
#include "fulcrum/signals.hpp"
#include "listener.hpp"
#include "session.hpp"

namespace fulcrum {

namespace {

// 256 KiB pipes: four times the default, so one splice moves more per
// system call on bulk transfers; pages are only allocated while bytes sit in
// the pipe.
constexpr size_t kPipeSize = 256 * 1024;
// Idle pipes kept per worker: enough to absorb bursts of new transfers
// without pipe2() calls, few enough not to hoard descriptors.
constexpr size_t kMaxIdlePipes = 16;

}  // namespace

unsigned worker_count(const GlobalConfig& global) {
  if (global.workers != 0) return global.workers;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
}

Worker::Worker(unsigned index, Admission& admission, std::function<void()> on_exit)
    : index_(index),
      admission_(admission),
      on_exit_(std::move(on_exit)),
      base_(event_base_new()),
      poller_(base_.get()),
      pipes_(admission, kPipeSize, kMaxIdlePipes) {
  // A persistent event with no descriptor, activated from other threads.
  wake_event_.reset(event_new(base_.get(), -1, EV_PERSIST, on_wake_cb, this));
  event_add(wake_event_.get(), nullptr);
  reap_event_.reset(event_new(base_.get(), -1, 0, on_reap_cb, this));
}

Worker::~Worker() {
  join();
  // Sessions and listeners hold events of this base: free them first.
  sessions_.clear();
  finished_sessions_.clear();
  listeners_.clear();
  reap_event_.reset();
  wake_event_.reset();
}

void Worker::add_listener(const ServiceRuntime& service, const SocketAddress& address, Fd fd) {
  listeners_.push_back(std::make_unique<Listener>(*this, service, address, std::move(fd)));
}

void Worker::adopt_session(const ServiceRuntime& service, CarriedSession carried) {
  admission_.admit_carried(*service.state);
  auto session = std::make_unique<Session>(*this, snapshot_, service, std::move(carried));
  Session* raw = session.get();
  sessions_.push_front(std::move(session));
  raw->self = sessions_.begin();
  raw->resume();
}

void Worker::start() {
  thread_ = thread_without_signals([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::run() {
  for (auto& listener : listeners_) listener->enable();
  // The wake event has no descriptor: keep looping even when it is the only
  // event left, until exit_if_idle() breaks the loop.
  event_base_loop(base_.get(), EVLOOP_NO_EXIT_ON_EMPTY);
  finished_sessions_.clear();
  on_exit_();
}

void Worker::request_stop() {
  stop_requested_.store(true);
  wake();
}

void Worker::request_force_close() {
  force_requested_.store(true);
  wake();
}

void Worker::wake() { event_active(wake_event_.get(), EV_READ, 0); }

void Worker::post_update(Update update) {
  {
    std::lock_guard lock(update_mutex_);
    pending_updates_.push_back(std::move(update));
  }
  wake();
}

void Worker::request_carry(std::function<void(Carried)> deliver) {
  {
    std::lock_guard lock(update_mutex_);
    carry_delivery_ = std::move(deliver);
  }
  wake();
}

void Worker::resume() {
  {
    std::lock_guard lock(resume_mutex_);
    resume_ = true;
  }
  resume_signal_.notify_one();
}

Worker::Carried Worker::carry() const {
  Carried carried;
  for (const auto& listener : listeners_)
    carried.listeners.push_back(CarriedListener{listener->address(), index_, listener->fd()});
  for (const auto& session : sessions_) {
    carried.sessions.push_back(session->carry());
    carried.sessions.back().worker = index_;
  }
  return carried;
}

// Blocks the worker's thread: no callback runs, so every session stays as
// carry() wrote it down, until resume() (or the exec).
void Worker::stand_still() {
  std::unique_lock lock(resume_mutex_);
  resume_signal_.wait(lock, [this] { return resume_; });
  resume_ = false;
}

void Worker::request_close_sessions_of(std::vector<const ServerState*> servers) {
  {
    std::lock_guard lock(update_mutex_);
    servers_down_.insert(servers_down_.end(), servers.begin(), servers.end());
  }
  wake();
}

// One pass over this worker's sessions, only when a server went down in a
// service that asks for it: sessions cost nothing for this meanwhile.
void Worker::close_sessions_of(const std::vector<const ServerState*>& servers) {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    // The session may finish (leaving the list) or move to another server:
    // step past it first, so that it is not met again.
    Session& session = **it;
    ++it;
    const ServerState* state = session.server_state();
    // Pointers compared only; the status is read from the session's own
    // state, which its lease keeps alive. A server back up since the
    // request keeps its sessions.
    if (std::find(servers.begin(), servers.end(), state) != servers.end() &&
        state->status() == ServerStatus::down)
      session.server_marked_down();
  }
}

void Worker::apply(Update update) {
  snapshot_ = std::move(update.snapshot);
  if (stopping_) return;  // listeners are gone already; sockets in `update` close
  std::erase_if(listeners_, [this](const std::unique_ptr<Listener>& listener) {
    const ServiceRuntime* service = snapshot_->service_listening_on(listener->address());
    if (service == nullptr) return true;  // address removed: close it
    listener->retarget(*service);
    return false;
  });
  for (auto& added : update.listeners) {
    const ServiceRuntime* service = snapshot_->service_listening_on(added.address);
    if (service == nullptr) continue;
    listeners_.push_back(
        std::make_unique<Listener>(*this, *service, added.address, std::move(added.fd)));
    listeners_.back()->enable();
  }
}

void Worker::on_wake_cb(evutil_socket_t, short, void* arg) { static_cast<Worker*>(arg)->on_wake(); }

void Worker::on_wake() {
  std::vector<Update> updates;
  std::vector<const ServerState*> servers_down;
  std::function<void(Carried)> carry_delivery;
  {
    std::lock_guard lock(update_mutex_);
    updates.swap(pending_updates_);
    servers_down.swap(servers_down_);
    carry_delivery.swap(carry_delivery_);
  }
  for (auto& update : updates) apply(std::move(update));
  if (!servers_down.empty()) close_sessions_of(servers_down);
  if (carry_delivery) {
    // A safe point: no callback is half done, every pipe's count is exact.
    carry_delivery(carry());
    stand_still();
  }
  if (stop_requested_.load() && !stopping_) {
    stopping_ = true;
    listeners_.clear();  // closes the sockets: new clients are refused by the kernel
  }
  if (force_requested_.load()) {
    // Each close moves the session off `sessions_`.
    while (!sessions_.empty()) sessions_.front()->close_for_shutdown();
  }
  if (stopping_) {
    exit_if_idle();
    return;
  }
  if (admission_.free_fds() < 2) pipes_.trim();
  for (auto& listener : listeners_) listener->resume_if_admissible();
}

void Worker::listener_paused() {
  paused_listeners_.fetch_add(1);
  admission_.add_paused();
}

void Worker::listener_resumed() {
  paused_listeners_.fetch_sub(1);
  admission_.remove_paused();
}

void Worker::start_session(std::unique_ptr<Session> session) {
  Session* raw = session.get();
  sessions_.push_front(std::move(session));
  raw->self = sessions_.begin();
  raw->start();
}

void Worker::session_finished(Session* session) {
  finished_sessions_.splice(finished_sessions_.end(), sessions_, session->self);
  event_active(reap_event_.get(), EV_READ, 0);
  if (stopping_) exit_if_idle();
}

void Worker::on_reap_cb(evutil_socket_t, short, void* arg) {
  static_cast<Worker*>(arg)->finished_sessions_.clear();
}

void Worker::exit_if_idle() {
  if (sessions_.empty()) event_base_loopbreak(base_.get());
}

}  // namespace fulcrum
