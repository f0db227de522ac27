#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include <cerrno>
#include <cstring>

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
constexpr size_t kMaxClients = 64;

void reply(evhttp_request* request, int code, const char* reason, const char* content_type,
           const std::string& body) {
  evkeyvalq* headers = evhttp_request_get_output_headers(request);
  evhttp_add_header(headers, "Content-Type", content_type);
  evhttp_add_header(headers, "Cache-Control", "no-store");
  evbuffer* buffer = evbuffer_new();
  if (evhttp_request_get_command(request) != EVHTTP_REQ_HEAD) evbuffer_add(buffer, body.data(), body.size());
  evhttp_send_reply(request, code, reason, buffer);
  evbuffer_free(buffer);
}

}  // namespace

StatsServer::StatsServer(event_base* base, StatsContext context) : context_(std::move(context)) {
  http_ = evhttp_new(base);
  evhttp_set_max_headers_size(http_, kMaxHeaders);
  evhttp_set_max_body_size(http_, kMaxBody);
  evhttp_set_timeout(http_, kTimeoutSeconds);
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
  evhttp_set_gencb(http_, on_request_cb, this);
}

StatsServer::~StatsServer() {
  for (evhttp_connection* connection : connections_) evhttp_connection_set_closecb(connection, nullptr, nullptr);
  evhttp_free(http_);
}

int StatsServer::listen(const SocketAddress& address) {
  Fd fd;
  if (int error = open_listener(address, 128, fd); error != 0) return error;
  bound_ = evhttp_accept_socket_with_handle(http_, fd.get());
  if (bound_ == nullptr) return EINVAL;
  fd.release();  // evhttp owns it now
  return 0;
}

void StatsServer::on_request_cb(evhttp_request* request, void* arg) { static_cast<StatsServer*>(arg)->handle(request); }

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
  const bool accept = connections_.size() < kMaxClients;
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
  const std::string path = parsed != nullptr && evhttp_uri_get_path(parsed) ? evhttp_uri_get_path(parsed) : "";
  if (parsed != nullptr) evhttp_uri_free(parsed);
  const auto method = evhttp_request_get_command(request);
  const bool read_only = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;

  if (path == "/stats" || path == "/metrics" || path == "/healthz") {
    if (!read_only) {
      evhttp_add_header(evhttp_request_get_output_headers(request), "Allow", "GET, HEAD");
      reply(request, 405, "Method Not Allowed", "text/plain; charset=utf-8", "method not allowed\n");
      return;
    }
    if (path == "/stats") {
      reply(request, 200, "OK", "application/json", render_stats_json(context_));
    } else if (path == "/metrics") {
      reply(request, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", render_metrics(context_));
    } else {
      reply(request, 200, "OK", "text/plain; charset=utf-8", "ok\n");
    }
    return;
  }
  reply(request, 404, "Not Found", "text/plain; charset=utf-8", "not found\n");
}

}  // namespace fulcrum
