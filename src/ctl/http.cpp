// The evhttp client: one event base, one connection, one request. libevent
// parses the reply; this file only maps its outcome to a response or to the
// reason there is none. The address is found (and its reachability proven)
// by find_reachable() first, since libevent keeps no usable errno for a
// failed connect.
#include "http.hpp"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <algorithm>
#include <memory>

#include "reach.hpp"

namespace fulcrum::ctl {

namespace {

using Clock = std::chrono::steady_clock;

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
  std::optional<HttpResponse> response;
  bool finished = false;
  bool timed_out = false;
  bool have_error = false;
  evhttp_request_error error = EVREQ_HTTP_EOF;
};

void on_error(evhttp_request_error error, void* arg) {
  auto* exchange = static_cast<Exchange*>(arg);
  if (!exchange->have_error) {
    exchange->have_error = true;
    exchange->error = error;
  }
}

void on_done(evhttp_request* request, void* arg) {
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
  }
  event_base_loopbreak(exchange->base);
}

void on_deadline(evutil_socket_t, short, void* arg) {
  auto* exchange = static_cast<Exchange*>(arg);
  exchange->timed_out = true;
  event_base_loopbreak(exchange->base);
}

timeval to_timeval(std::chrono::milliseconds d) {
  return timeval{static_cast<time_t>(d.count() / 1000),
                 static_cast<suseconds_t>(d.count() % 1000 * 1000)};
}

// Why the exchange ended without a response (the connection itself could
// be made: find_reachable() saw to that).
std::string failure_reason(const Exchange& exchange, std::chrono::seconds timeout) {
  if (exchange.timed_out || (exchange.have_error && exchange.error == EVREQ_HTTP_TIMEOUT)) {
    return "no reply within " + std::to_string(timeout.count()) + "s";
  }
  if (exchange.have_error) {
    switch (exchange.error) {
      case EVREQ_HTTP_INVALID_HEADER: return "the reply is not valid HTTP";
      case EVREQ_HTTP_DATA_TOO_LONG:
        return "the reply is larger than " + std::to_string(kMaxReplyBytes >> 20) + " MiB";
      case EVREQ_HTTP_EOF: return "the connection closed without a reply";
      default: break;
    }
  }
  // What is left (the daemon went away between the probe and the request,
  // a reset) comes without a reliable errno from libevent.
  return "the connection failed without a reply";
}

}  // namespace

HttpOutcome http_exchange(const BaseUrl& url, const HttpRequest& request,
                          std::chrono::seconds timeout) {
  HttpOutcome outcome;
  const Clock::time_point deadline = Clock::now() + timeout;
  const std::optional<std::string> address =
      find_reachable(url.host, url.port, deadline, &outcome.error);
  if (!address) return outcome;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  const timeval limit = to_timeval(std::max(left, std::chrono::milliseconds(1)));

  std::unique_ptr<event_base, EventBaseFree> base(event_base_new());
  if (!base) {
    outcome.error = "cannot create an event base";
    return outcome;
  }
  std::unique_ptr<evhttp_connection, ConnectionFree> connection(evhttp_connection_base_new(
      base.get(), nullptr, address->c_str(), static_cast<ev_uint16_t>(url.port)));
  if (!connection) {
    outcome.error = "cannot create an HTTP connection";
    return outcome;
  }
  evhttp_connection_set_timeout_tv(connection.get(), &limit);
  evhttp_connection_set_retries(connection.get(), 0);
  evhttp_connection_set_max_body_size(connection.get(), static_cast<ev_ssize_t>(kMaxReplyBytes));
  evhttp_connection_set_max_headers_size(connection.get(), 64 * 1024);

  Exchange exchange;
  exchange.base = base.get();
  std::unique_ptr<event, EventFree> timer(evtimer_new(base.get(), on_deadline, &exchange));
  if (!timer) {
    outcome.error = "cannot create a timer";
    return outcome;
  }
  evtimer_add(timer.get(), &limit);

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
      outcome.error = "header " + name + " holds characters HTTP does not allow";
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
  // Freed in reverse order of declaration: the timer, the connection (with
  // a request still pending after a timeout: no callback runs), the base.
  return outcome;
}

}  // namespace fulcrum::ctl
