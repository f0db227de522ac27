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

// When a probe runs: once every `interval`, jittered +-10% so that the
// checks of many servers drift apart, the first at a random point of the
// first interval so that they never start together; each start on the
// next point of the start grid (start_grid.hpp), so that the checks due
// within one step share one wake-up of the loop.
class ProbeSchedule {
 public:
  // `probe` must outlive the schedule.
  ProbeSchedule(event_base* base, Duration interval, Probe& probe)
      : interval_(interval), probe_(probe) {
    timer_.reset(evtimer_new(base, on_timer_cb, this));
  }

  void start() { after(thread_random_between(0, 1)); }
  // The probe reported its result: the next one in about an interval.
  void next() { after(thread_random_between(0.9, 1.1)); }

 private:
  static void on_timer_cb(evutil_socket_t, short, void* arg) {
    static_cast<ProbeSchedule*>(arg)->probe_.start();
  }
  void after(double intervals) {
    const Duration delay(static_cast<int64_t>(intervals * static_cast<double>(interval_.count())));
    add_on_start_grid(timer_.get(), delay, interval_);
  }

  Duration interval_;
  Probe& probe_;
  EventPtr timer_;
};

// Checks come from fulcrum's own (or the snat source) address, also in
// transparent mode: there is no client to speak for.
ConnectSource check_source(const ServiceConfig& service) {
  return ConnectSource{service.source ? &*service.source : nullptr, false};
}

// fulcrum could not make a check (descriptors, memory, source ports): that
// says nothing about the server, so it is only a local error of the server.
// Every checked server meets the same shortage: rate-limited.
void count_local_error(const ServiceRuntime& service, const ServerRuntime& server,
                       const std::string& error) {
  server.state->local_errors.fetch_add(1, std::memory_order_relaxed);
  static LogRateLimit local_error_log(LogLevel::warn, "health check local error");
  local_error_log.write({{"service", service.config->name},
                         {"server", server.config->name},
                         {"address", server.config->address.to_string()},
                         {"error", error}});
}

// The agent's line as parsed and kept for the operator (/stats, logs): its
// protocol is ASCII, and anything else an agent sends is shown as `?`
// rather than passed into JSON and log lines as bytes no reader expects. A
// tab becomes a space, which separates words just as well.
std::string printable(std::string line) {
  for (char& c : line) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\t')
      c = ' ';
    else if (byte < 0x20 || byte >= 0x7f)
      c = '?';
  }
  return line;
}

}  // namespace

// The checks of one server of one service: a probe every interval, each
// given `timeout` to complete, fed with passive results into the rise/fall
// machine.
class HealthChecker::Check {
 public:
  Check(HealthChecker& owner, const ServiceRuntime& service, const ServerRuntime& server)
      : owner_(owner),
        service_(service),
        server_(server),
        config_(service.config->health_check),
        machine_(config_.rise, config_.fall, server.state->healthy()),
        probe_(make_probe()),
        schedule_(owner_.base_, config_.interval, *probe_) {}

  void start() { schedule_.start(); }
  const std::string& service_name() const { return service_.config->name; }
  const std::string& server_name() const { return server_.config->name; }
  uint32_t streak() const { return machine_.streak(); }
  void resume_streak(uint32_t streak) { machine_.resume_streak(streak); }

  // Failed connects of sessions since the last look, each a failed check.
  void drain_passive() {
    uint32_t failures = server_.state->passive_failures.exchange(0);
    if (failures == 0) return;
    const std::string reason = failure_reason(server_.state->passive_error.load());
    while (failures-- > 0) record(false, reason, "passive");
  }

 private:
  // The probe this check's configuration asks for: HTTP(S) when
  // `health_check.http` is set, else TCP (connect, send/expect).
  std::unique_ptr<Probe> make_probe() {
    const ConnectSource source = check_source(*service_.config);
    ProbeDone done = [this](const ProbeResult& result) { finish(result); };
    if (config_.http)
      return std::make_unique<HttpCheckProbe>(owner_.base_, server_.config->address, source,
                                              config_, std::move(done));
    return std::make_unique<TcpProbe>(owner_.base_, server_.config->address, source,
                                      TcpExchange::check(config_), std::move(done));
  }

  void finish(const ProbeResult& result) {
    if (result.outcome == ProbeResult::Outcome::local_error)
      count_local_error(service_, server_, result.reason);  // no result for rise/fall
    else
      record(result.outcome == ProbeResult::Outcome::passed, result.reason, "active");
    schedule_.next();
  }

  // `reason`: why it failed (unused for a success).
  void record(bool success, const std::string& reason, const char* kind) {
    if (!success) {
      server_.state->checks_failed.fetch_add(1, std::memory_order_relaxed);
      owner_.reports_.failure(server_, reason);
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
    owner_.reports_.verdict(service_, server_, up);
  }

  HealthChecker& owner_;
  const ServiceRuntime& service_;
  const ServerRuntime& server_;
  const HealthCheckConfig& config_;
  RiseFall machine_;
  std::unique_ptr<Probe> probe_;
  ProbeSchedule schedule_;
};

// The agent of one server (`health_check.agent`): its line read every agent
// interval on the agent's port, parsed and reported as it is. No rise/fall:
// the agent's word takes effect at once, as in HAProxy.
class HealthChecker::AgentCheck {
 public:
  AgentCheck(HealthChecker& owner, const ServiceRuntime& service, const ServerRuntime& server)
      : owner_(owner),
        service_(service),
        server_(server),
        probe_(owner.base_, server.config->address, check_source(*service.config),
               TcpExchange::agent(*service.config->health_check.agent,
                                  service.config->health_check.timeout),
               [this](ProbeResult result) { finish(std::move(result)); }),
        schedule_(owner.base_, service.config->health_check.agent->interval, probe_) {}

  void start() { schedule_.start(); }

 private:
  void finish(ProbeResult result) {
    switch (result.outcome) {
      case ProbeResult::Outcome::local_error:
        count_local_error(service_, server_, result.reason);
        break;
      case ProbeResult::Outcome::failed:
        owner_.reports_.agent_failure(server_, "agent: " + result.reason);
        break;
      case ProbeResult::Outcome::passed: {
        std::string error;
        const std::string line = printable(std::move(result.reply));
        if (const std::optional<AgentReply> reply = parse_agent_reply(line, error))
          owner_.reports_.agent(service_, server_, *reply, line);
        else
          owner_.reports_.agent_failure(server_, std::move(error));
        break;
      }
    }
    schedule_.next();
  }

  HealthChecker& owner_;
  const ServiceRuntime& service_;
  const ServerRuntime& server_;
  TcpProbe probe_;
  ProbeSchedule schedule_;
};

HealthChecker::HealthChecker(event_base* base, std::shared_ptr<const Snapshot> snapshot,
                             HealthReports reports)
    : base_(base), snapshot_(std::move(snapshot)), reports_(std::move(reports)) {
  for (const auto& service : snapshot_->services) {
    if (!service.config->health_check.enabled) continue;
    for (const auto& server : service.servers) {
      checks_.push_back(std::make_unique<Check>(*this, service, server));
      if (service.config->health_check.agent)
        agents_.push_back(std::make_unique<AgentCheck>(*this, service, server));
    }
  }
}

HealthChecker::~HealthChecker() = default;

void HealthChecker::start() {
  for (auto& check : checks_) check->start();
  for (auto& agent : agents_) agent->start();
}

void HealthChecker::carry_streaks(UpgradeState& state) const {
  for (const auto& check : checks_) {
    for (CarriedServer& server : state.servers) {
      if (server.service == check->service_name() && server.name == check->server_name())
        server.health_streak = check->streak();
    }
  }
}

void HealthChecker::adopt_streaks(const UpgradeState& state) {
  for (auto& check : checks_) {
    for (const CarriedServer& server : state.servers) {
      if (server.service == check->service_name() && server.name == check->server_name())
        check->resume_streak(server.health_streak);
    }
  }
}

void HealthChecker::account_passive_failures() {
  for (auto& check : checks_) check->drain_passive();
}

}  // namespace fulcrum
