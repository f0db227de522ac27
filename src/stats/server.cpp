#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "connections.hpp"
#include "dashboard.hpp"
#include "fulcrum/admin.hpp"
#include "fulcrum/explain.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/nearest_name.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/stats.hpp"

namespace fulcrum {

namespace {

// What one stats request may cost besides its time and connection
// (include/fulcrum/stats.hpp): a request line and headers of at most 8 KiB,
// a body of at most 64 KiB.
constexpr ev_ssize_t kMaxHeaders = 8 * 1024;
constexpr ev_ssize_t kMaxBody = 64 * 1024;
// Lines for failed admin authentications: at most this many a second (the
// rest summed up in one `log lines suppressed` line): someone guessing
// tokens must not flood the log.
constexpr uint32_t kAuthFailureLinesPerSecond = 5;

void reply(evhttp_request* request, int code, const char* reason, const char* content_type,
           const std::string& body) {
  evkeyvalq* headers = evhttp_request_get_output_headers(request);
  evhttp_add_header(headers, "Content-Type", content_type);
  evhttp_add_header(headers, "Cache-Control", "no-store");
  evbuffer* buffer = evbuffer_new();
  if (evhttp_request_get_command(request) != EVHTTP_REQ_HEAD)
    evbuffer_add(buffer, body.data(), body.size());
  evhttp_send_reply(request, code, reason, buffer);
  evbuffer_free(buffer);
}

std::string uri_decode(const std::string& segment) {
  char* decoded = evhttp_uridecode(segment.c_str(), 0, nullptr);
  if (decoded == nullptr) return segment;
  std::string out(decoded);
  std::free(decoded);
  return out;
}

std::string peer_of(evhttp_request* request) {
  char* host = nullptr;
  ev_uint16_t port = 0;
  evhttp_connection_get_peer(evhttp_request_get_connection(request), &host, &port);
  return std::string(host ? host : "?") + ":" + std::to_string(port);
}

// The address the client connected to: the listen address, or with a
// wildcard listen address the one of the interface it came in on.
SocketAddress local_address_of(evhttp_request* request, const SocketAddress& listen_address) {
  const int fd =
      bufferevent_getfd(evhttp_connection_get_bufferevent(evhttp_request_get_connection(request)));
  SocketAddress local;
  local.length = sizeof local.storage;
  if (fd < 0 || ::getsockname(fd, local.sockaddr_ptr(), &local.length) != 0) return listen_address;
  return local;
}

// `; did you mean "NAME"?` for the known name nearest to `name`, if any.
std::string suggestion(std::string_view name, const std::vector<std::string>& known) {
  const std::optional<std::string> nearest = nearest_name(name, known);
  return nearest ? "; did you mean " + quote(*nearest) + "?" : "";
}

void not_found(evhttp_request* request, const std::string& message) {
  reply(request, 404, "Not Found", "text/plain; charset=utf-8", message + "\n");
}

}  // namespace

StatsServer::StatsServer(event_base* base, StatsContext context)
    : context_(std::move(context)),
      auth_failure_log_(LogLevel::warn, "admin authentication failed", kAuthFailureLinesPerSecond) {
  http_ = evhttp_new(base);
  evhttp_set_max_headers_size(http_, kMaxHeaders);
  evhttp_set_max_body_size(http_, kMaxBody);
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
  evhttp_set_gencb(http_, on_request_cb, this);
  connections_ = std::make_unique<StatsConnections>(base, http_);
}

StatsServer::~StatsServer() {
  connections_.reset();
  evhttp_free(http_);
}

int StatsServer::listening_fd() const { return connections_->listening_fd(); }

int StatsServer::listen(const SocketAddress& address, Fd carried) {
  Fd fd = std::move(carried);
  if (!fd) {
    if (int error = open_listener(address, 128, PortSharing::exclusive, fd); error != 0)
      return error;
  }
  if (!connections_->listen(std::move(fd), address)) return EINVAL;
  listen_address_ = address;
  if (!loopback_only(address) && !context_.admin_token) {
    log_warn("stats endpoint reachable from other hosts, without an admin token",
             {{"address", address.to_string()}});
  }
  return 0;
}

void StatsServer::on_request_cb(evhttp_request* request, void* arg) {
  static_cast<StatsServer*>(arg)->handle(request);
}

void StatsServer::handle(evhttp_request* request) {
  connections_->request_read(request);
  // Without a Host header (HTTP/1.0) no browser is involved.
  if (const char* host = evhttp_find_header(evhttp_request_get_input_headers(request), "Host");
      host != nullptr && !host_allowed(host, local_address_of(request, listen_address_))) {
    reply(request, 421, "Misdirected Request", "text/plain; charset=utf-8",
          "Host must be the stats listen address or localhost\n");
    return;
  }
  const char* uri = evhttp_request_get_uri(request);
  evhttp_uri* parsed = evhttp_uri_parse(uri);
  const std::string path =
      parsed != nullptr && evhttp_uri_get_path(parsed) ? evhttp_uri_get_path(parsed) : "";
  const std::string query =
      parsed != nullptr && evhttp_uri_get_query(parsed) ? evhttp_uri_get_query(parsed) : "";
  if (parsed != nullptr) evhttp_uri_free(parsed);
  const auto method = evhttp_request_get_command(request);
  const bool read_only = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;

  if (path == "/" || path == "/stats" || path == "/metrics" || path == "/healthz" ||
      path == "/explain") {
    if (!read_only) {
      evhttp_add_header(evhttp_request_get_output_headers(request), "Allow", "GET, HEAD");
      reply(request, 405, "Method Not Allowed", "text/plain; charset=utf-8",
            "method not allowed\n");
      return;
    }
    if (path == "/") {
      // Everything the page needs is inline; it may only talk back to us.
      evhttp_add_header(
          evhttp_request_get_output_headers(request), "Content-Security-Policy",
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
          "img-src data:; connect-src 'self'");
      reply(request, 200, "OK", "text/html; charset=utf-8", std::string(kDashboardHtml));
    } else if (path == "/stats") {
      reply(request, 200, "OK", "application/json", render_stats_json(context_));
    } else if (path == "/explain") {
      explain(request, query);
    } else if (path == "/metrics") {
      reply(request, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(context_));
    } else if (stopping_) {
      reply(request, 503, "Service Unavailable", "text/plain; charset=utf-8", "stopping\n");
    } else {
      reply(request, 200, "OK", "text/plain; charset=utf-8", "ok\n");
    }
    return;
  }
  if (path.starts_with("/api/")) {
    handle_admin(request, path);
    return;
  }
  reply(request, 404, "Not Found", "text/plain; charset=utf-8", "not found\n");
}

// The write API: POST only, Bearer token against admin_token_file (403
// without one configured, 401 for a missing or wrong token), then the
// route.
void StatsServer::handle_admin(evhttp_request* request, const std::string& path) {
  if (evhttp_request_get_command(request) != EVHTTP_REQ_POST) {
    evhttp_add_header(evhttp_request_get_output_headers(request), "Allow", "POST");
    reply(request, 405, "Method Not Allowed", "text/plain; charset=utf-8", "method not allowed\n");
    return;
  }
  if (!context_.admin_token) {
    reply(request, 403, "Forbidden", "text/plain; charset=utf-8", "no admin token configured\n");
    return;
  }
  const char* authorization =
      evhttp_find_header(evhttp_request_get_input_headers(request), "Authorization");
  if (authorization == nullptr || !bearer_matches(authorization, *context_.admin_token)) {
    authentication_failed(request, path, authorization == nullptr ? "no token" : "wrong token");
    evhttp_add_header(evhttp_request_get_output_headers(request), "WWW-Authenticate", "Bearer");
    reply(request, 401, "Unauthorized", "text/plain; charset=utf-8", "missing or wrong token\n");
    return;
  }
  if (path == "/api/v1/reload") {
    if (stopping_) {
      reply(request, 503, "Service Unavailable", "text/plain; charset=utf-8", "stopping\n");
      return;
    }
    // Answered when the reload is done; the loop serves others meanwhile. A
    // client gone by then is no problem: evhttp frees an orphaned request
    // when it is answered.
    connections_->hold(request);
    context_.reload_action(peer_of(request), [this, request](const ReloadStatus& status) {
      const std::string body = render_reload_json(status, context_.snapshot->generation) + "\n";
      if (status.ok) {
        reply(request, 200, "OK", "application/json", body);
      } else {
        reply(request, 422, "Unprocessable Entity", "application/json", body);
      }
    });
    return;
  }
  if (path == "/api/v1/upgrade") {
    upgrade(request);
    return;
  }
  // /api/v1/services/SERVICE/servers/SERVER
  constexpr std::string_view kPrefix = "/api/v1/services/";
  if (path.starts_with(kPrefix)) {
    const std::string rest = path.substr(kPrefix.size());
    const size_t middle = rest.find("/servers/");
    if (middle != std::string::npos) {
      // Names may hold characters a path must encode (`[::1]:80`).
      const std::string service_name = uri_decode(rest.substr(0, middle));
      const std::string server_name = uri_decode(rest.substr(middle + std::strlen("/servers/")));
      route_server(request, service_name, server_name);
      return;
    }
  }
  reply(request, 404, "Not Found", "text/plain; charset=utf-8", "not found\n");
}

// POST /api/v1/upgrade: answered once the new binary's check is over: 202
// and its version (the hand-over follows, closing this connection), 422
// with the reason it was refused, 409 while an upgrade or a reload is under
// way, 503 once a stop has begun. The outcome shows in /stats: `upgrades`,
// `upgrade.last_failure`.
void StatsServer::upgrade(evhttp_request* request) {
  if (!context_.upgrade_action) {
    reply(request, 404, "Not Found", "text/plain; charset=utf-8", "not found\n");
    return;
  }
  connections_->hold(request);
  const uint64_t before = context_.upgrade != nullptr ? context_.upgrade->upgrades : 0;
  context_.upgrade_action(peer_of(request), [this, request, before](const UpgradeAnswer& answer) {
    std::string body = "{\"ok\":" + std::string(answer.error.empty() ? "true" : "false") +
                       ",\"binary\":" + json_string(answer.binary);
    if (answer.error.empty()) {
      body += ",\"version\":" + json_string(answer.version) +
              ",\"upgrades\":" + std::to_string(before) + "}\n";
      // The exec waits until the answer is written (evhttp calls this once
      // the request is done).
      upgrade_answer_sent_ = answer.sent;
      evhttp_request_set_on_complete_cb(request, on_upgrade_answered_cb, this);
      reply(request, 202, "Accepted", "application/json", body);
      return;
    }
    body += ",\"error\":" + json_string(answer.error) + "}\n";
    switch (answer.outcome) {
      case UpgradeAnswer::Outcome::busy:
        reply(request, 409, "Conflict", "application/json", body);
        break;
      case UpgradeAnswer::Outcome::stopping:
        reply(request, 503, "Service Unavailable", "application/json", body);
        break;
      default: reply(request, 422, "Unprocessable Entity", "application/json", body);
    }
  });
}

void StatsServer::on_upgrade_answered_cb(evhttp_request*, void* arg) {
  auto* self = static_cast<StatsServer*>(arg);
  if (auto sent = std::exchange(self->upgrade_answer_sent_, {})) sent();
}

// GET /explain?service=NAME&client=ADDR[:PORT] (explain.hpp).
void StatsServer::explain(evhttp_request* request, const std::string& query) {
  evkeyvalq parameters{};
  if (evhttp_parse_query_str(query.c_str(), &parameters) != 0) {
    reply(request, 400, "Bad Request", "text/plain; charset=utf-8", "malformed query\n");
    return;
  }
  const char* service = evhttp_find_header(&parameters, "service");
  const char* client = evhttp_find_header(&parameters, "client");
  ExplainReply answer;
  if (service == nullptr || client == nullptr) {
    answer = {400, "give service=NAME and client=ADDR[:PORT]"};
  } else {
    answer = explain_client(*context_.snapshot, service, client);
  }
  evhttp_clear_headers(&parameters);
  if (answer.status == 200) {
    reply(request, 200, "OK", "application/json", answer.body + "\n");
  } else {
    reply(request, answer.status, answer.status == 404 ? "Not Found" : "Bad Request",
          "text/plain; charset=utf-8", answer.body + "\n");
  }
}

// The server named in the path, or a 404 that says which name is unknown
// and the nearest known one.
void StatsServer::route_server(evhttp_request* request, const std::string& service_name,
                               const std::string& server_name) {
  const std::vector<ServiceRuntime>& services = context_.snapshot->services;
  const auto service = std::find_if(services.begin(), services.end(), [&](const ServiceRuntime& s) {
    return s.config->name == service_name;
  });
  std::vector<std::string> names;
  if (service == services.end()) {
    for (const ServiceRuntime& s : services) names.push_back(s.config->name);
    not_found(request, "no such service " + quote(service_name) + suggestion(service_name, names));
    return;
  }
  for (const ServerRuntime& server : service->servers) {
    if (server.config->name == server_name) {
      change_server(request, *service, server);
      return;
    }
    names.push_back(server.config->name);
  }
  not_found(request, "no such server " + quote(server_name) + " in service " + quote(service_name) +
                         suggestion(server_name, names));
}

void StatsServer::change_server(evhttp_request* request, const ServiceRuntime& service,
                                const ServerRuntime& server) {
  evbuffer* input = evhttp_request_get_input_buffer(request);
  std::string request_body(evbuffer_get_length(input), '\0');
  evbuffer_copyout(input, request_body.data(), request_body.size());
  std::string error;
  const std::optional<AdminChange> change = parse_admin_change(request_body, error);
  if (!change) {
    reply(request, 400, "Bad Request", "text/plain; charset=utf-8", error + "\n");
    return;
  }
  const ServerState& state = *server.state;
  const ServerStatus state_before = state.status();
  const uint32_t weight_before = state.weight();
  context_.control_plane->operator_request(service, server, change->state, change->weight,
                                           std::chrono::steady_clock::now());

  log_info("admin change",
           {{"service", service.config->name},
            {"server", server.config->name},
            {"request_state", change->state ? to_string(*change->state) : "-"},
            {"request_weight", change->weight ? std::to_string(*change->weight) : std::string("-")},
            {"old_state", to_string(state_before)},
            {"new_state", to_string(state.status())},
            {"old_weight", weight_before},
            {"new_weight", state.weight()},
            {"peer", peer_of(request)}});
  std::string body = render_server_json(service, server, context_);
  // `ready` that leaves the server out of service says why, so that an
  // operator does not take the 200 for "it takes traffic now".
  if (change->state == AdminState::ready && state.status() != ServerStatus::up) {
    std::string note = "still " + std::string(to_string(state.status())) + ": ";
    if (state.status() == ServerStatus::down) {
      note += "its health checks fail";
    } else {
      note += change->weight ? "weight 0 drains it" : "its configured weight is 0";
    }
    body.insert(body.size() - 1, ",\"note\":" + json_string(note));
  }
  reply(request, 200, "OK", "application/json", body + "\n");
}

void StatsServer::authentication_failed(evhttp_request* request, const std::string& path,
                                        std::string_view reason) {
  auth_failure_log_.write({{"peer", peer_of(request)}, {"path", path}, {"reason", reason}});
}

}  // namespace fulcrum
