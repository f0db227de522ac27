// The stats endpoint (SPEC.md "Stats endpoint"): an HTTP server on the main
// thread's loop, built on libevent's evhttp, that reads the live state of the
// running snapshot. It never touches the workers: slow or hostile stats
// clients cannot delay proxying.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "fulcrum/control_plane.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/quote.hpp"
#include "fulcrum/reload.hpp"
#include "fulcrum/snapshot.hpp"

struct evhttp;
struct evhttp_request;
struct evhttp_connection;

namespace fulcrum {

// Stats connections open at once, at most: 1/16 of the open-file limit,
// between 4 and 64. Further clients wait in the listening socket's backlog.
// Their descriptors are kept out of the session budget
// (fds_outside_sessions()).
size_t stats_connection_limit(int64_t open_file_limit);

// What the renderers need besides the snapshot.
struct StatsContext {
  std::shared_ptr<const Snapshot> snapshot;
  // Where the admin API's requests go: the stats module never writes server
  // state itself. Owned by the daemon.
  ControlPlane* control_plane = nullptr;
  std::optional<std::string> admin_token;  // none: the write API answers 403
  std::chrono::steady_clock::time_point started;
  std::chrono::system_clock::time_point started_wall;
  const ReloadStatus* reload = nullptr;  // the Reloader's, owned by the daemon
  // POST /api/v1/reload: asks for a reload on behalf of `peer`; `done` gets
  // the outcome later, on the main loop (the request waits for it).
  std::function<void(const std::string& peer, Reloader::Done done)> reload_action;
  size_t max_connections = 4;  // stats_connection_limit()
};

// `text` as a JSON string literal: quote() (fulcrum/quote.hpp), named for
// what the renderers build.
inline std::string json_string(std::string_view text) { return quote(text); }

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

  // Binds `address`; returns errno (0 on success).
  int listen(const SocketAddress& address);
  // After a reload: serve the new snapshot (and token).
  void update(std::shared_ptr<const Snapshot> snapshot, std::optional<std::string> admin_token) {
    context_.snapshot = std::move(snapshot);
    context_.admin_token = std::move(admin_token);
  }

 private:
  void handle(evhttp_request* request);
  void handle_admin(evhttp_request* request, const std::string& path);
  void change_server(evhttp_request* request, const ServiceRuntime& service,
                     const ServerRuntime& server);
  void track(evhttp_connection* connection);
  void untrack(evhttp_connection* connection);
  void update_accepting();
  static void on_request_cb(evhttp_request* request, void* arg);
  static void on_close_cb(evhttp_connection* connection, void* arg);

  StatsContext context_;
  evhttp* http_ = nullptr;
  struct evhttp_bound_socket* bound_ = nullptr;
  std::set<evhttp_connection*> connections_;
  bool accepting_ = true;
};

}  // namespace fulcrum
