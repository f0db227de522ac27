#include <cctype>
#include <cerrno>

#include "fulcrum/health.hpp"
#include "fulcrum/http_probe.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/random.hpp"
#include "fulcrum/socket.hpp"

namespace fulcrum {

namespace {

std::string failure_reason(int error) {
  if (error == ECONNREFUSED) return "connect refused";
  if (error == ETIMEDOUT) return "connect timeout";
  std::string text = errno_string(error);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

}  // namespace

// The checks of one server of one service: a TCP connect every interval
// (jittered +-10% so that checks of many servers drift apart), each given
// `timeout` to complete, fed with passive results into the rise/fall machine.
class HealthChecker::Check {
 public:
  Check(HealthChecker& owner, const ServiceRuntime& service, const ServerRuntime& server)
      : owner_(owner),
        service_(service),
        server_(server),
        config_(service.config->health_check),
        machine_(config_.rise, config_.fall, server.state->healthy()) {
    timer_.reset(evtimer_new(owner_.base_, on_timer_cb, this));
  }

  // The first check comes at a random point of the first interval.
  void start() {
    const double first =
        thread_random_between(0, 1) * static_cast<double>(config_.interval.count());
    schedule(Duration(static_cast<int64_t>(first)));
  }

  // Failed connects of sessions since the last look, each a failed check.
  void drain_passive() {
    uint32_t failures = server_.state->passive_failures.exchange(0);
    const int error = server_.state->passive_error.load();
    while (failures-- > 0) record(false, failure_reason(error), "passive");
  }

 private:
  static void on_timer_cb(evutil_socket_t, short, void* arg) { static_cast<Check*>(arg)->run(); }
  static void on_connect_cb(evutil_socket_t, short what, void* arg) {
    static_cast<Check*>(arg)->connected(what);
  }

  void schedule(Duration delay) { add_with_timeout(timer_.get(), delay); }

  void run() {
    // Checks come from fulcrum's own (or the snat source) address, also in
    // transparent mode: there is no client to speak for.
    const ConnectSource source{service_.config->source ? &*service_.config->source : nullptr,
                               false};
    if (config_.http) {
      const SocketAddress address =
          config_.port ? server_.config->address.with_port(config_.port) : server_.config->address;
      const int error =
          http_.start(owner_.base_, address, source.address, *config_.http, config_.timeout,
                      [this](int error, const std::string& failure) { finish(error, failure); });
      if (error != 0) finish(error);
      return;
    }
    if (int error = start_connect(server_.config->address, source, socket_); error != 0) {
      finish(error);
      return;
    }
    connect_event_.reset(event_new(owner_.base_, socket_.get(), EV_WRITE, on_connect_cb, this));
    add_with_timeout(connect_event_.get(), config_.timeout);
  }

  void connected(short what) {
    finish((what & EV_TIMEOUT) ? ETIMEDOUT : pending_socket_error(socket_.get()));
  }

  // `failure`: why a connected check failed (the HTTP probe's reasons).
  void finish(int error, const std::string& failure = {}) {
    connect_event_.reset();
    socket_.reset();
    if (is_local_error(error)) {
      // fulcrum could not make the check (descriptors, memory, source
      // ports): that says nothing about the server, so it is no result for
      // the rise/fall machine, only a local error of the server.
      // Every checked server meets the same shortage: rate-limited.
      server_.state->local_errors.fetch_add(1, std::memory_order_relaxed);
      static LogRateLimit local_error_log(LogLevel::warn, "health check local error");
      local_error_log.write({{"service", service_.config->name},
                             {"server", server_.config->name},
                             {"address", server_.config->address.to_string()},
                             {"error", errno_string(error)}});
    } else {
      record(error == 0 && failure.empty(), error != 0 ? failure_reason(error) : failure, "active");
    }
    const double jitter = thread_random_between(0.9, 1.1);
    schedule(
        Duration(static_cast<int64_t>(static_cast<double>(config_.interval.count()) * jitter)));
  }

  void record(bool success, const std::string& failure, const char* kind) {
    if (!success) {
      server_.state->checks_failed.fetch_add(1, std::memory_order_relaxed);
      owner_.failure_(server_, failure);
    }
    const uint32_t streak = machine_.streak() + 1;
    const uint32_t needed = machine_.needed();
    if (!machine_.record(success)) return;
    const bool up = machine_.up();
    const std::string reason = up ? "check passed" : failure;
    Log::write(up ? LogLevel::info : LogLevel::warn, up ? "server up" : "server down",
               {{"service", service_.config->name},
                {"server", server_.config->name},
                {"address", server_.config->address.to_string()},
                {"reason", reason},
                {"check", kind},
                {"streak", streak},
                {"needed", needed}});
    owner_.verdict_(service_, server_, up);
  }

  HealthChecker& owner_;
  const ServiceRuntime& service_;
  const ServerRuntime& server_;
  const HealthCheckConfig& config_;
  RiseFall machine_;
  Fd socket_;
  HttpProbe http_;
  EventPtr timer_;
  EventPtr connect_event_;
};

HealthChecker::HealthChecker(event_base* base, std::shared_ptr<const Snapshot> snapshot,
                             HealthVerdict verdict, HealthFailure failure)
    : base_(base),
      snapshot_(std::move(snapshot)),
      verdict_(std::move(verdict)),
      failure_(std::move(failure)) {
  for (const auto& service : snapshot_->services) {
    if (!service.config->health_check.enabled) continue;
    for (const auto& server : service.servers)
      checks_.push_back(std::make_unique<Check>(*this, service, server));
  }
}

HealthChecker::~HealthChecker() = default;

void HealthChecker::start() {
  for (auto& check : checks_) check->start();
}

void HealthChecker::account_passive_failures() {
  for (auto& check : checks_) check->drain_passive();
}

}  // namespace fulcrum
