#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "dashboard.hpp"
#include "fulcrum/admin.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/stats.hpp"

namespace fulcrum {

namespace {

// What a stats client may cost: a request line and headers of at most 8 KiB,
// a body of at most 64 KiB, 5 s of silence, and at most 64 connections with
// requests in flight at once (then the listening socket is not read until
// one closes; further clients wait in its backlog).
constexpr ev_ssize_t kMaxHeaders = 8 * 1024;
constexpr ev_ssize_t kMaxBody = 64 * 1024;
constexpr int kTimeoutSeconds = 5;

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

}  // namespace

size_t stats_connection_limit(int64_t open_file_limit) {
  return static_cast<size_t>(std::clamp<int64_t>(open_file_limit / 16, 4, 64));
}

StatsServer::StatsServer(event_base* base, StatsContext context) : context_(std::move(context)) {
  http_ = evhttp_new(base);
  evhttp_set_max_headers_size(http_, kMaxHeaders);
  evhttp_set_max_body_size(http_, kMaxBody);
  evhttp_set_timeout(http_, kTimeoutSeconds);
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
  evhttp_set_gencb(http_, on_request_cb, this);
}

StatsServer::~StatsServer() {
  for (evhttp_connection* connection : connections_)
    evhttp_connection_set_closecb(connection, nullptr, nullptr);
  evhttp_free(http_);
}

int StatsServer::listen(const SocketAddress& address) {
  Fd fd;
  if (int error = open_listener(address, 128, PortSharing::exclusive, fd); error != 0) return error;
  bound_ = evhttp_accept_socket_with_handle(http_, fd.get());
  if (bound_ == nullptr) return EINVAL;
  fd.release();  // evhttp owns it now
  return 0;
}

void StatsServer::on_request_cb(evhttp_request* request, void* arg) {
  static_cast<StatsServer*>(arg)->handle(request);
}

void StatsServer::on_close_cb(evhttp_connection* connection, void* arg) {
  static_cast<StatsServer*>(arg)->untrack(connection);
}

void StatsServer::track(evhttp_connection* connection) {
  if (connections_.insert(connection).second) {
    evhttp_connection_set_closecb(connection, on_close_cb, this);
    update_accepting();
  }
}

void StatsServer::untrack(evhttp_connection* connection) {
  connections_.erase(connection);
  update_accepting();
}

void StatsServer::update_accepting() {
  if (bound_ == nullptr) return;
  evconnlistener* listener = evhttp_bound_socket_get_listener(bound_);
  const bool accept = connections_.size() < context_.max_connections;
  if (accept == accepting_) return;
  accepting_ = accept;
  if (accept) {
    evconnlistener_enable(listener);
  } else {
    evconnlistener_disable(listener);
  }
}

void StatsServer::handle(evhttp_request* request) {
  track(evhttp_request_get_connection(request));
  const char* uri = evhttp_request_get_uri(request);
  evhttp_uri* parsed = evhttp_uri_parse(uri);
  const std::string path =
      parsed != nullptr && evhttp_uri_get_path(parsed) ? evhttp_uri_get_path(parsed) : "";
  if (parsed != nullptr) evhttp_uri_free(parsed);
  const auto method = evhttp_request_get_command(request);
  const bool read_only = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;

  if (path == "/" || path == "/stats" || path == "/metrics" || path == "/healthz") {
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
    } else if (path == "/metrics") {
      reply(request, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(context_));
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
    evhttp_add_header(evhttp_request_get_output_headers(request), "WWW-Authenticate", "Bearer");
    reply(request, 401, "Unauthorized", "text/plain; charset=utf-8", "missing or wrong token\n");
    return;
  }
  if (path == "/api/v1/reload") {
    // Answered when the reload is done; the loop serves others meanwhile. A
    // client gone by then is no problem: evhttp frees an orphaned request
    // when it is answered.
    context_.reload_action(peer_of(request), [this, request](const ReloadStatus& status) {
      std::string body = "{\"ok\":" + std::string(status.ok ? "true" : "false") +
                         ",\"generation\":" + std::to_string(context_.snapshot->generation);
      if (!status.ok) body += ",\"error\":" + json_string(status.error);
      body += "}\n";
      if (status.ok) {
        reply(request, 200, "OK", "application/json", body);
      } else {
        reply(request, 422, "Unprocessable Entity", "application/json", body);
      }
    });
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
      for (const ServiceRuntime& service : context_.snapshot->services) {
        if (service.config->name != service_name) continue;
        for (const ServerRuntime& server : service.servers) {
          if (server.config->name == server_name) {
            change_server(request, service, server);
            return;
          }
        }
      }
    }
  }
  reply(request, 404, "Not Found", "text/plain; charset=utf-8", "no such service or server\n");
}

void StatsServer::change_server(evhttp_request* request, const ServiceRuntime& service,
                                const ServerRuntime& server) {
  evbuffer* input = evhttp_request_get_input_buffer(request);
  std::string body(evbuffer_get_length(input), '\0');
  evbuffer_copyout(input, body.data(), body.size());
  std::string error;
  const std::optional<AdminChange> change = parse_admin_change(body, error);
  if (!change) {
    reply(request, 400, "Bad Request", "text/plain; charset=utf-8", error + "\n");
    return;
  }
  context_.control_plane->operator_request(service, server, change->state, change->weight,
                                           std::chrono::steady_clock::now());

  const std::string peer = peer_of(request);
  static constexpr std::string_view kAdminNames[] = {"ready", "drain", "maint"};
  log_info("admin change",
           {{"service", service.config->name},
            {"server", server.config->name},
            {"state", change->state ? kAdminNames[static_cast<int>(*change->state)] : "-"},
            {"weight", change->weight ? std::to_string(*change->weight) : std::string("-")},
            {"peer", peer}});
  reply(request, 200, "OK", "application/json",
        render_server_json(service, server, context_) + "\n");
}

}  // namespace fulcrum
