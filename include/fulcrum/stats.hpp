// The stats endpoint (SPEC.md "Stats endpoint"): an HTTP server on the main
// thread's loop, built on libevent's evhttp, that reads the live state of the
// running snapshot. It never touches the workers: slow or hostile stats
// clients cannot delay proxying.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/admin.hpp"
#include "fulcrum/announcer.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/quote.hpp"
#include "fulcrum/reload.hpp"
#include "fulcrum/sampler.hpp"
#include "fulcrum/snapshot.hpp"
#include "fulcrum/upgrade.hpp"

struct evhttp;
struct evhttp_request;

namespace fulcrum {

// What stats clients may hold (docs/operations.md, "Stats endpoint").
// Connections to the stats port at once: beyond them clients wait in the
// listening socket's backlog, which costs no descriptor. Descriptors the
// daemon keeps out of its session budget for this many stats connections
// are thus never taken from sessions.
inline constexpr size_t kMaxStatsConnections = 16;
// Each request's time, however slowly its bytes come: from the accept (on a
// kept-alive connection from the end of the previous answer) to the end of
// its answer.
inline constexpr std::chrono::seconds kStatsRequestDeadline{5};

// Whether a request's Host header names the stats endpoint the client
// reached at `local`: `IP:PORT` of that address (`[IPv6]:PORT`, however the
// address is spelt), `localhost` or `localhost:PORT`; a bare IP (HTTP's
// default port) only where PORT is 80. Refusing any other name keeps a web
// page whose name was rebound to this address (DNS rebinding) from reading
// the endpoint, or writing to it, through a browser.
bool host_allowed(std::string_view host, const SocketAddress& local);
// Whether only this host can reach `address` (127.0.0.0/8, ::1, and
// 127.0.0.0/8 mapped into IPv6).
bool loopback_only(const SocketAddress& address);

class StatsConnections;

// What the renderers need besides the snapshot.
struct StatsContext {
  std::shared_ptr<const Snapshot> snapshot;
  // Where the admin API's requests go: the stats module never writes server
  // state itself. Owned by the daemon.
  ControlPlane* control_plane = nullptr;
  // The recent figures (rates, failures of the last minute); owned by the
  // daemon.
  const StatsSampler* sampler = nullptr;
  std::optional<std::string> admin_token;  // none: the write API answers 403
  std::chrono::steady_clock::time_point started;
  std::chrono::system_clock::time_point started_wall;
  const ReloadStatus* reload = nullptr;  // the Reloader's, owned by the daemon
  // POST /api/v1/reload: asks for a reload on behalf of `peer`; `done` gets
  // the outcome later, on the main loop (the request waits for it).
  std::function<void(const std::string& peer, Reloader::Done done)> reload_action;
  // The VIPs on global.announce.interface; owned by the daemon, null in
  // tests that do not announce.
  const Announcer* announcer = nullptr;
  const UpgradeStatus* upgrade = nullptr;  // owned by the daemon; null in tests
  // POST /api/v1/upgrade: asks for a binary upgrade on behalf of `peer`;
  // `done` gets the answer once the new binary's check is over.
  std::function<void(const std::string& peer, UpgradeDone done)> upgrade_action{};
};

// `text` as a JSON string literal: quote() (fulcrum/quote.hpp), named for
// what the renderers build.
inline std::string json_string(std::string_view text) { return quote(text); }

// `texts` as a JSON array of strings.
std::string json_strings(const std::vector<std::string>& texts);

// POST /api/v1/reload's answer: `{"ok":B,"generation":N,"errors":[...],
// "warnings":[...]}`, with `"error"`, the first error, when not ok.
std::string render_reload_json(const ReloadStatus& status, uint64_t generation);

// One element of a service's "servers" in /stats; also the write API's reply.
// `now` is the instant of the whole answer, so that no server's
// last_change_seconds exceeds the uptime_seconds beside it.
std::string render_server_json(
    const ServiceRuntime& service, const ServerRuntime& server, const StatsContext& context,
    std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());
// GET /stats: the JSON document of SPEC.md.
std::string render_stats_json(const StatsContext& context);
// GET /metrics: Prometheus text exposition format 0.0.4.
std::string render_metrics(const StatsContext& context);

class StatsServer {
 public:
  StatsServer(event_base* base, StatsContext context);
  ~StatsServer();
  StatsServer(const StatsServer&) = delete;
  StatsServer& operator=(const StatsServer&) = delete;

  // Binds `address`; returns errno (0 on success). Warns when other hosts
  // can reach it and the write API has no token.
  // `carried`: the socket a binary upgrade brought, bound there already.
  int listen(const SocketAddress& address, Fd carried = Fd());
  // The listening socket, for a binary upgrade (-1: none).
  int listening_fd() const;
  // After a reload: serve the new snapshot (and token).
  void update(std::shared_ptr<const Snapshot> snapshot, std::optional<std::string> admin_token) {
    context_.snapshot = std::move(snapshot);
    context_.admin_token = std::move(admin_token);
  }
  // A snapshot of the same configuration (DNS discovery changed servers).
  void follow(std::shared_ptr<const Snapshot> snapshot) { context_.snapshot = std::move(snapshot); }
  // A stop has begun: /healthz answers 503 and reloads are refused (503).
  void set_stopping() { stopping_ = true; }

 private:
  void handle(evhttp_request* request);
  void handle_admin(evhttp_request* request, const std::string& path);
  void explain(evhttp_request* request, const std::string& query);
  void upgrade(evhttp_request* request);
  void route_server(evhttp_request* request, const std::string& service_name,
                    const std::string& server_name);
  void change_server(evhttp_request* request, const ServiceRuntime& service,
                     const ServerRuntime& server);
  void authentication_failed(evhttp_request* request, const std::string& path,
                             std::string_view reason);
  static void on_request_cb(evhttp_request* request, void* arg);
  static void on_upgrade_answered_cb(evhttp_request* request, void* arg);

  StatsContext context_;
  evhttp* http_ = nullptr;
  std::unique_ptr<StatsConnections> connections_;
  SocketAddress listen_address_;
  bool stopping_ = false;
  LogRateLimit auth_failure_log_;
  std::function<void()> upgrade_answer_sent_;  // UpgradeAnswer::sent, until the 202 is written
};

}  // namespace fulcrum
