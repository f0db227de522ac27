// The evhttp client: one event base, one connection, one request. libevent
// parses the reply; this file only maps its outcome to a response or to the
// reason there is none.
#include "http.hpp"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace fulcrum::ctl {

namespace {

struct EventBaseFree {
  void operator()(event_base* base) const { event_base_free(base); }
};
struct ConnectionFree {
  void operator()(evhttp_connection* connection) const { evhttp_connection_free(connection); }
};
struct EventFree {
  void operator()(event* ev) const { event_free(ev); }
};

// What the callbacks learn; read after the loop ends.
struct Exchange {
  event_base* base = nullptr;
  evhttp_connection* connection = nullptr;
  std::optional<HttpResponse> response;
  bool finished = false;
  bool timed_out = false;
  bool have_error = false;
  evhttp_request_error error = EVREQ_HTTP_EOF;
  int saved_errno = 0;
};

// The connection's socket is connected (so a timeout means the daemon took
// the connection but did not answer).
bool connected(evhttp_connection* connection) {
  bufferevent* bev = evhttp_connection_get_bufferevent(connection);
  const evutil_socket_t fd = bev != nullptr ? bufferevent_getfd(bev) : -1;
  if (fd < 0) return false;
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  return getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) == 0;
}

// A name that did not resolve: the resolver's error text, else empty.
std::string dns_error(evhttp_connection* connection) {
  bufferevent* bev = evhttp_connection_get_bufferevent(connection);
  const int error = bev != nullptr ? bufferevent_socket_get_dns_error(bev) : 0;
  return error != 0 ? evutil_gai_strerror(error) : "";
}

void on_error(evhttp_request_error error, void* arg) {
  const int saved = errno;  // libevent restores the socket error for this call
  auto* exchange = static_cast<Exchange*>(arg);
  if (!exchange->have_error) {
    exchange->have_error = true;
    exchange->error = error;
    exchange->saved_errno = saved;
  }
}

void on_done(evhttp_request* request, void* arg) {
  const int saved = errno;
  auto* exchange = static_cast<Exchange*>(arg);
  exchange->finished = true;
  if (request != nullptr && evhttp_request_get_response_code(request) != 0) {
    HttpResponse response;
    response.status = evhttp_request_get_response_code(request);
    const char* reason = evhttp_request_get_response_code_line(request);
    response.reason = reason != nullptr ? reason : "";
    evbuffer* input = evhttp_request_get_input_buffer(request);
    const size_t length = evbuffer_get_length(input);
    response.body.resize(length);
    if (length > 0) evbuffer_copyout(input, response.body.data(), length);
    exchange->response = std::move(response);
  } else if (!exchange->have_error) {
    // A refused connect reaches here without the error callback.
    exchange->have_error = true;
    exchange->error = EVREQ_HTTP_EOF;
    exchange->saved_errno = saved;
  }
  event_base_loopbreak(exchange->base);
}

void on_deadline(evutil_socket_t, short, void* arg) {
  auto* exchange = static_cast<Exchange*>(arg);
  exchange->timed_out = true;
  event_base_loopbreak(exchange->base);
}

std::string seconds_text(std::chrono::seconds timeout) { return std::to_string(timeout.count()) + "s"; }

// Why the exchange ended without a response.
std::string failure_reason(const Exchange& exchange, std::chrono::seconds timeout) {
  const bool timed_out = exchange.timed_out || (exchange.have_error && exchange.error == EVREQ_HTTP_TIMEOUT);
  if (timed_out) {
    return connected(exchange.connection) ? "no reply within " + seconds_text(timeout)
                                          : "connection timed out after " + seconds_text(timeout);
  }
  if (std::string resolver = dns_error(exchange.connection); !resolver.empty()) return resolver;
  switch (exchange.error) {
    case EVREQ_HTTP_INVALID_HEADER: return "the reply is not valid HTTP";
    case EVREQ_HTTP_DATA_TOO_LONG: return "the reply is larger than " + std::to_string(kMaxReplyBytes >> 20) + " MiB";
    case EVREQ_HTTP_REQUEST_CANCEL: return "the request was cancelled";
    default: break;
  }
  const int error = exchange.saved_errno;
  if (error != 0 && error != EAGAIN && error != EINPROGRESS) return std::strerror(error);
  return "the connection closed without a reply";
}

}  // namespace

HttpOutcome http_exchange(const BaseUrl& url, const HttpRequest& request, std::chrono::seconds timeout) {
  HttpOutcome outcome;
  std::unique_ptr<event_base, EventBaseFree> base(event_base_new());
  if (!base) {
    outcome.error = "cannot create an event base";
    return outcome;
  }
  std::unique_ptr<evhttp_connection, ConnectionFree> connection(
      evhttp_connection_base_new(base.get(), nullptr, url.host.c_str(), static_cast<ev_uint16_t>(url.port)));
  if (!connection) {
    outcome.error = "cannot create an HTTP connection";
    return outcome;
  }
  const timeval limit{static_cast<time_t>(timeout.count()), 0};
  evhttp_connection_set_timeout_tv(connection.get(), &limit);
  evhttp_connection_set_retries(connection.get(), 0);
  evhttp_connection_set_max_body_size(connection.get(), static_cast<ev_ssize_t>(kMaxReplyBytes));
  evhttp_connection_set_max_headers_size(connection.get(), 64 * 1024);

  Exchange exchange;
  exchange.base = base.get();
  exchange.connection = connection.get();
  std::unique_ptr<event, EventFree> deadline(evtimer_new(base.get(), on_deadline, &exchange));
  if (!deadline) {
    outcome.error = "cannot create a timer";
    return outcome;
  }
  evtimer_add(deadline.get(), &limit);

  evhttp_request* req = evhttp_request_new(on_done, &exchange);
  if (req == nullptr) {
    outcome.error = "cannot create an HTTP request";
    return outcome;
  }
  evhttp_request_set_error_cb(req, on_error);
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Host", url.host_header.c_str());
  evhttp_add_header(headers, "Connection", "close");
  evhttp_add_header(headers, "User-Agent", "fulcrumctl/" FULCRUM_VERSION);
  for (const auto& [name, value] : request.headers) {
    if (evhttp_add_header(headers, name.c_str(), value.c_str()) != 0) {
      evhttp_request_free(req);
      outcome.error = "header " + name + " has characters HTTP does not allow";
      return outcome;
    }
  }
  if (request.method == Method::post) {
    evbuffer_add(evhttp_request_get_output_buffer(req), request.body.data(), request.body.size());
  }
  const evhttp_cmd_type method = request.method == Method::post ? EVHTTP_REQ_POST : EVHTTP_REQ_GET;
  // On failure the request is left alone: libevent may have freed it.
  if (evhttp_make_request(connection.get(), req, method, request.path.c_str()) != 0) {
    outcome.error = "cannot send the request";
    return outcome;
  }
  // A connect that fails at once ends the request inside the call above.
  if (!exchange.finished) event_base_dispatch(base.get());

  if (exchange.response) {
    outcome.response = std::move(exchange.response);
  } else {
    outcome.error = failure_reason(exchange, timeout);
  }
  // The connection goes before the timer and the base (unique_ptrs are
  // destroyed in reverse order: deadline, connection, base).
  return outcome;
}

}  // namespace fulcrum::ctl
