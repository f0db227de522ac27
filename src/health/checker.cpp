#include "fulcrum/health.hpp"
#include "fulcrum/http_probe.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/random.hpp"
#include "fulcrum/socket.hpp"
#include "probe.hpp"
#include "start_grid.hpp"
#include "tcp_probe.hpp"

namespace fulcrum {

namespace {

// The HTTP(S) check (`health_check.http`) as a Probe: one GET per start,
// to the server (or to its address on the check's `port`).
class HttpCheckProbe final : public Probe {
 public:
  // `config` and what `source` points to must outlive the probe.
  HttpCheckProbe(event_base* base, const SocketAddress& server, ConnectSource source,
                 const HealthCheckConfig& config, ProbeDone done)
      : base_(base),
        target_(config.port != 0 ? server.with_port(config.port) : server),
        source_(source),
        config_(config),
        done_(std::move(done)) {}

  void start() override {
    const int setup_error = http_.start(base_, target_, source_.address, *config_.http,
                                        config_.timeout, [this](int error, std::string failure) {
                                          if (error != 0)
                                            done_(ProbeResult::from_error(error));
                                          else if (!failure.empty())
                                            done_(ProbeResult::failed(std::move(failure)));
                                          else
                                            done_(ProbeResult::passed());
                                        });
    if (setup_error != 0) done_(ProbeResult::from_error(setup_error));
  }

 private:
  event_base* base_;
  SocketAddress target_;
  ConnectSource source_;
  const HealthCheckConfig& config_;
  ProbeDone done_;
  HttpProbe http_;
};

}  // namespace

// The checks of one server of one service: a probe every interval (jittered
// +-10% so that checks of many servers drift apart), each given `timeout` to
// complete, fed with passive results into the rise/fall machine.
class HealthChecker::Check {
 public:
  Check(HealthChecker& owner, const ServiceRuntime& service, const ServerRuntime& server)
      : owner_(owner),
        service_(service),
        server_(server),
        config_(service.config->health_check),
        machine_(config_.rise, config_.fall, server.state->healthy()),
        probe_(make_probe()) {
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
    if (failures == 0) return;
    const std::string reason = failure_reason(server_.state->passive_error.load());
    while (failures-- > 0) record(false, reason, "passive");
  }

 private:
  static void on_timer_cb(evutil_socket_t, short, void* arg) {
    static_cast<Check*>(arg)->probe_->start();
  }

  // The probe this check's configuration asks for: HTTP(S) when
  // `health_check.http` is set, else TCP (connect, send/expect).
  std::unique_ptr<Probe> make_probe() {
    // Checks come from fulcrum's own (or the snat source) address, also in
    // transparent mode: there is no client to speak for.
    const ConnectSource source{service_.config->source ? &*service_.config->source : nullptr,
                               false};
    ProbeDone done = [this](ProbeResult result) { finish(std::move(result)); };
    if (config_.http)
      return std::make_unique<HttpCheckProbe>(owner_.base_, server_.config->address, source,
                                              config_, std::move(done));
    return std::make_unique<TcpProbe>(owner_.base_, server_.config->address, source, config_,
                                      std::move(done));
  }

  void schedule(Duration delay) { add_on_start_grid(timer_.get(), delay, config_.interval); }

  void finish(ProbeResult result) {
    if (result.outcome == ProbeResult::Outcome::local_error) {
      // fulcrum could not make the check (descriptors, memory, source
      // ports): that says nothing about the server, so it is no result for
      // the rise/fall machine, only a local error of the server.
      // Every checked server meets the same shortage: rate-limited.
      server_.state->local_errors.fetch_add(1, std::memory_order_relaxed);
      static LogRateLimit local_error_log(LogLevel::warn, "health check local error");
      local_error_log.write({{"service", service_.config->name},
                             {"server", server_.config->name},
                             {"address", server_.config->address.to_string()},
                             {"error", result.reason}});
    } else {
      record(result.outcome == ProbeResult::Outcome::passed, result.reason, "active");
    }
    const double jitter = thread_random_between(0.9, 1.1);
    schedule(
        Duration(static_cast<int64_t>(static_cast<double>(config_.interval.count()) * jitter)));
  }

  // `reason`: why it failed (unused for a success).
  void record(bool success, const std::string& reason, const char* kind) {
    if (!success) {
      server_.state->checks_failed.fetch_add(1, std::memory_order_relaxed);
      owner_.failure_(server_, reason);
    }
    const uint32_t streak = machine_.streak() + 1;
    const uint32_t needed = machine_.needed();
    if (!machine_.record(success)) return;
    const bool up = machine_.up();
    Log::write(up ? LogLevel::info : LogLevel::warn, up ? "server up" : "server down",
               {{"service", service_.config->name},
                {"server", server_.config->name},
                {"address", server_.config->address.to_string()},
                {"reason", up ? std::string("check passed") : reason},
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
  std::unique_ptr<Probe> probe_;
  EventPtr timer_;
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
