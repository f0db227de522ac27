// The HTTP health check probe against an evhttp server on the same event
// loop: the request it sends, each outcome with its reason, and that a
// destroyed probe never reports.
#include <doctest/doctest.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <optional>
#include <string>

#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"
#include "fulcrum/http_probe.hpp"

using namespace fulcrum;

namespace {

struct HttpFree {
  void operator()(evhttp* http) const { evhttp_free(http); }
};

SocketAddress loopback(uint16_t port) {
  return parse_address("127.0.0.1:" + std::to_string(port)).addresses.at(0);
}

// A loopback port with a listening socket nobody accepts on: connects
// complete, no byte ever comes back.
struct SilentPort {
  Fd socket{::socket(AF_INET, SOCK_STREAM, 0)};
  uint16_t port = 0;
  SilentPort() {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(socket.get(), 8) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0);
    port = ntohs(address.sin_port);
  }
};

// An HTTP server answering `status` and noting the request it got.
struct CheckServer {
  EventBasePtr base{event_base_new()};
  std::unique_ptr<evhttp, HttpFree> http{evhttp_new(base.get())};
  uint16_t port = 0;
  int status = 200;
  std::string uri;
  std::string host;
  int requests = 0;

  CheckServer() {
    evhttp_bound_socket* bound = evhttp_bind_socket_with_handle(http.get(), "127.0.0.1", 0);
    REQUIRE(bound != nullptr);
    sockaddr_in address{};
    socklen_t length = sizeof address;
    REQUIRE(getsockname(evhttp_bound_socket_get_fd(bound), reinterpret_cast<sockaddr*>(&address),
                        &length) == 0);
    port = ntohs(address.sin_port);
    evhttp_set_gencb(http.get(), on_request, this);
  }

  static void on_request(evhttp_request* request, void* arg) {
    auto* self = static_cast<CheckServer*>(arg);
    ++self->requests;
    self->uri = evhttp_request_get_uri(request);
    const char* host = evhttp_find_header(evhttp_request_get_input_headers(request), "Host");
    self->host = host != nullptr ? host : "";
    evhttp_send_reply(request, self->status, "Status", nullptr);
  }
};

struct Outcome {
  int error;
  std::string failure;
};

// Runs one probe to `port` on `server`'s loop until it reports (bounded).
std::optional<Outcome> probe(CheckServer& server, uint16_t port, const HttpCheckConfig& http,
                             Duration timeout = Duration(1000)) {
  std::optional<Outcome> outcome;
  HttpProbe probe;
  const int error = probe.start(server.base.get(), loopback(port), nullptr, http, timeout,
                                [&](int error, std::string failure) {
                                  outcome = Outcome{error, std::move(failure)};
                                  event_base_loopbreak(server.base.get());
                                });
  REQUIRE(error == 0);
  // The probe's own timeout ends it; this bound only keeps a broken probe
  // from hanging the test.
  const timeval limit = to_timeval(timeout + Duration(2000));
  event_base_loopexit(server.base.get(), &limit);
  event_base_dispatch(server.base.get());
  return outcome;
}

}  // namespace

TEST_CASE("http probe: GET of the path with the Host header; the status decides") {
  CheckServer server;
  HttpCheckConfig http;
  http.path = "/primary?role=leader";
  http.host = "db.test:8008";
  std::optional<Outcome> outcome = probe(server, server.port, http);
  REQUIRE(outcome);
  CHECK(outcome->error == 0);
  CHECK(outcome->failure.empty());
  CHECK(server.uri == "/primary?role=leader");
  CHECK(server.host == "db.test:8008");

  server.status = 503;
  outcome = probe(server, server.port, http);
  REQUIRE(outcome);
  CHECK((outcome->error == 0 && outcome->failure == "http status 503"));

  // Without `host`: the checked address.
  http = HttpCheckConfig{};
  http.statuses = {StatusRange{204, 204}, StatusRange{500, 503}};
  server.status = 200;
  outcome = probe(server, server.port, http);
  REQUIRE(outcome);
  CHECK(outcome->failure == "http status 200");
  CHECK(server.uri == "/");
  CHECK(server.host == "127.0.0.1:" + std::to_string(server.port));
  server.status = 503;
  outcome = probe(server, server.port, http);
  REQUIRE(outcome);
  CHECK((outcome->error == 0 && outcome->failure.empty()));
}

TEST_CASE("http probe: refused, timed out") {
  CheckServer server;
  uint16_t closed_port = 0;
  {
    SilentPort gone;  // bound, then closed: nothing listens there
    closed_port = gone.port;
  }
  std::optional<Outcome> outcome = probe(server, closed_port, HttpCheckConfig{});
  REQUIRE(outcome);
  CHECK((outcome->error == ECONNREFUSED && outcome->failure.empty()));

  SilentPort silent;
  outcome = probe(server, silent.port, HttpCheckConfig{}, Duration(100));
  REQUIRE(outcome);
  CHECK((outcome->error == 0 && outcome->failure == "timeout"));
}

TEST_CASE("http probe: destroyed in flight, it never reports") {
  CheckServer server;
  SilentPort silent;
  bool reported = false;
  {
    HttpProbe probe;
    REQUIRE(probe.start(server.base.get(), loopback(silent.port), nullptr, HttpCheckConfig{},
                        Duration(50), [&](int, const std::string&) { reported = true; }) == 0);
    event_base_loop(server.base.get(), EVLOOP_NONBLOCK);
  }
  const timeval wait = to_timeval(Duration(200));
  event_base_loopexit(server.base.get(), &wait);
  event_base_dispatch(server.base.get());
  CHECK_FALSE(reported);
}

TEST_CASE("http probe: accepted statuses") {
  HttpCheckConfig http;
  CHECK(status_accepted(http, 200));
  CHECK(status_accepted(http, 399));
  CHECK_FALSE(status_accepted(http, 199));
  CHECK_FALSE(status_accepted(http, 400));
  http.statuses = {StatusRange{204, 204}, StatusRange{500, 502}};
  CHECK(status_accepted(http, 204));
  CHECK(status_accepted(http, 501));
  CHECK_FALSE(status_accepted(http, 200));
  CHECK_FALSE(status_accepted(http, 503));
}
