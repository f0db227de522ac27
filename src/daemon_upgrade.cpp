// Binary upgrades in place (SPEC.md "Upgrading the binary",
// docs/architecture.md "Binary upgrade"): the request, the new binary's
// check, the hand-over, and in the new image taking over the listeners and
// sessions the old one carried.
#include <unistd.h>

#include <algorithm>
#include <future>

#include "daemon_class.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/version.hpp"

namespace fulcrum {

namespace {

// How long the new binary's --check may take before the upgrade is refused.
constexpr std::chrono::seconds kBinaryCheckTimeout{30};
// The longest the hand-over waits for an upgrade request's answer to
// leave (the exec closes the stats port's clients): normally it goes on as
// soon as the answer is written.
constexpr std::chrono::seconds kAnswerBeforeExec{1};
// How long the workers may take to reach a safe point.
constexpr std::chrono::seconds kQuiesceTimeout{2};

}  // namespace

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

}  // namespace fulcrum
