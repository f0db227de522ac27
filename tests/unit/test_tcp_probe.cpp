// The TCP probe against real loopback sockets: a server thread per case,
// the probe on an event loop of the test's own.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <optional>
#include <set>
#include <string>
#include <thread>

#include "../../src/health/tcp_probe.hpp"
#include "fulcrum/address.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"

using namespace fulcrum;

namespace {

// A listening socket on 127.0.0.1 (port chosen by the kernel).
Fd listen_loopback() {
  Fd fd(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd.get(), 8) == 0);
  return fd;
}

SocketAddress address_of(const Fd& fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&storage), &length);
  return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&storage), length);
}

std::string read_exactly(int fd, size_t n) {
  std::string out;
  char buffer[65536];
  while (out.size() < n) {
    const ssize_t got = ::recv(fd, buffer, std::min(sizeof buffer, n - out.size()), 0);
    if (got <= 0) break;
    out.append(buffer, static_cast<size_t>(got));
  }
  return out;
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Runs one probe of `server` with `config` to its result. The loop gives up
// after 20 s (no result: a failed case, not a hang).
std::optional<ProbeResult> probe_once(const SocketAddress& server, const TcpExchange& exchange) {
  EventBasePtr base(event_base_new());
  std::optional<ProbeResult> result;
  TcpProbe probe(base.get(), server, ConnectSource{}, exchange, [&](ProbeResult r) {
    result = std::move(r);
    event_base_loopbreak(base.get());
  });
  probe.start();
  if (!result) {
    const timeval limit{20, 0};
    event_base_loopexit(base.get(), &limit);
    event_base_dispatch(base.get());
  }
  return result;
}

std::optional<ProbeResult> probe_once(const SocketAddress& server,
                                      const HealthCheckConfig& config) {
  return probe_once(server, TcpExchange::check(config));
}

HealthCheckConfig check(std::string send, std::string expect, Duration timeout = Duration(20000)) {
  HealthCheckConfig config;
  config.enabled = true;
  config.interval = Duration(30000);
  config.timeout = timeout;
  config.send = std::move(send);
  config.expect = std::move(expect);
  return config;
}

// A server that accepts one connection and hands it to `serve`.
template <typename Serve>
std::thread serve_one(const Fd& listener, Serve serve) {
  return std::thread([&listener, serve] {
    Fd conn(::accept(listener.get(), nullptr, nullptr));
    if (conn) serve(conn.get());
  });
}

std::string outcome(const std::optional<ProbeResult>& result) {
  if (!result) return "no result";
  switch (result->outcome) {
    case ProbeResult::Outcome::passed: return "passed";
    case ProbeResult::Outcome::failed: return "failed: " + result->reason;
    case ProbeResult::Outcome::local_error: return "local error: " + result->reason;
  }
  return "";
}

}  // namespace

TEST_CASE("tcp probe: send written whole (far more than a socket buffer), expect found") {
  const Fd listener = listen_loopback();
  const std::string big(4 * 1024 * 1024, 'q');
  std::string received;
  std::thread server = serve_one(listener, [&](int fd) {
    received = read_exactly(fd, big.size());
    write_all(fd, "+OK\r\n");
    char byte;
    (void)::recv(fd, &byte, 1, 0);  // until the probe closes
  });
  CHECK(outcome(probe_once(address_of(listener), check(big, "+OK"))) == "passed");
  server.join();
  CHECK(received == big);
}

TEST_CASE("tcp probe: without expect, passes once send is written; nothing is read") {
  const Fd listener = listen_loopback();
  std::string received;
  std::thread server = serve_one(listener, [&](int fd) { received = read_exactly(fd, 6); });
  CHECK(outcome(probe_once(address_of(listener), check("PING\r\n", ""))) == "passed");
  server.join();
  CHECK(received == "PING\r\n");
}

TEST_CASE("tcp probe: `port` checks another port of the server's address") {
  const Fd data = listen_loopback();
  const Fd check_port = listen_loopback();
  std::thread server = serve_one(check_port, [](int fd) { write_all(fd, "ready\n"); });
  HealthCheckConfig config = check("", "ready");
  config.port = address_of(check_port).port();
  CHECK(outcome(probe_once(address_of(data), config)) == "passed");
  server.join();
}

TEST_CASE(
    "tcp probe: 16 KiB of reply without the expected bytes fails without waiting for the timeout") {
  const Fd listener = listen_loopback();
  std::thread server = serve_one(listener, [](int fd) {
    write_all(fd, std::string(ReplyMatcher::kDefaultLimit, 'x') + "role:master");
    char byte;
    (void)::recv(fd, &byte, 1, 0);  // holds the connection open
  });
  // The timeout is past the 20 s the loop runs: only the limit can end it.
  CHECK(outcome(probe_once(address_of(listener), check("", "role:master", Duration(25000)))) ==
        "failed: expect mismatch");
  server.join();
}

TEST_CASE("tcp probe: the server closes after a wrong reply, or without one") {
  const Fd listener = listen_loopback();
  // Each reads the request first: a close with unread bytes would be a reset.
  std::thread wrong = serve_one(listener, [](int fd) {
    (void)read_exactly(fd, 6);
    write_all(fd, "role:slave\r\n");
  });
  CHECK(outcome(probe_once(address_of(listener), check("INFO\r\n", "role:master"))) ==
        "failed: expect mismatch");
  wrong.join();
  std::thread silent = serve_one(listener, [](int fd) { (void)read_exactly(fd, 6); });
  CHECK(outcome(probe_once(address_of(listener), check("INFO\r\n", "role:master"))) ==
        "failed: connection closed");
  silent.join();
}

TEST_CASE("tcp probe: at the timeout, a partial wrong reply is a mismatch, no reply a timeout") {
  const Fd listener = listen_loopback();
  std::thread partial = serve_one(listener, [](int fd) {
    write_all(fd, "role:sl");
    char byte;
    (void)::recv(fd, &byte, 1, 0);
  });
  CHECK(outcome(probe_once(address_of(listener), check("", "role:master", Duration(200)))) ==
        "failed: expect mismatch");
  partial.join();
  std::thread mute = serve_one(listener, [](int fd) {
    char byte;
    (void)::recv(fd, &byte, 1, 0);
  });
  CHECK(outcome(probe_once(address_of(listener), check("", "role:master", Duration(200)))) ==
        "failed: timeout");
  mute.join();
}

TEST_CASE("tcp probe: refused") {
  SocketAddress refused;
  {
    const Fd listener = listen_loopback();
    refused = address_of(listener);
  }  // closed: nothing listens there now
  CHECK(outcome(probe_once(refused, check("PING\r\n", "PONG"))) == "failed: connect refused");
}

namespace {

// The agent's exchange against `agent` (the server's address is another
// port: the agent's is what the probe reaches).
std::optional<ProbeResult> ask_agent(const Fd& agent, Duration timeout = Duration(20000),
                                     std::string send = "") {
  const AgentCheckConfig config{address_of(agent).port(), Duration(30000), std::move(send)};
  return probe_once(address_of(agent).with_port(1), TcpExchange::agent(config, timeout));
}

std::string agent_outcome(const std::optional<ProbeResult>& result) {
  if (result && result->outcome == ProbeResult::Outcome::passed) return "line: " + result->reply;
  return outcome(result);
}

}  // namespace

TEST_CASE("tcp probe, agent: one line on the agent's port, ended by LF, CRLF or the close") {
  const Fd agent = listen_loopback();
  std::string sent_to_agent = "unset";
  std::thread lf = serve_one(agent, [&](int fd) {
    write_all(fd, "drain 50%\nignored second line\n");
    char buffer[16];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);  // until the probe closes
    sent_to_agent = std::string(buffer, n > 0 ? static_cast<size_t>(n) : 0);
  });
  CHECK(agent_outcome(ask_agent(agent)) == "line: drain 50%");
  lf.join();
  CHECK(sent_to_agent.empty());  // nothing is sent to an agent

  std::thread crlf = serve_one(agent, [](int fd) {
    write_all(fd, "up");
    write_all(fd, " maxconn:7\r\n");
  });
  CHECK(agent_outcome(ask_agent(agent)) == "line: up maxconn:7");
  crlf.join();

  std::thread closed = serve_one(agent, [](int fd) { write_all(fd, "maint"); });
  CHECK(agent_outcome(ask_agent(agent)) == "line: maint");
  closed.join();

  // With `send` (HAProxy's agent-send), those bytes first, then the line.
  std::string asked;
  std::thread told = serve_one(agent, [&](int fd) {
    asked = read_exactly(fd, 9);
    write_all(fd, asked == "web/app1\n" ? "drain\n" : "up\n");
  });
  CHECK(agent_outcome(ask_agent(agent, Duration(20000), "web/app1\n")) == "line: drain");
  told.join();
  CHECK(asked == "web/app1\n");
}

TEST_CASE("tcp probe, agent: closed without a word, too long, silent past the timeout") {
  const Fd agent = listen_loopback();
  std::thread silent_close = serve_one(agent, [](int) {});
  CHECK(agent_outcome(ask_agent(agent)) == "failed: connection closed");
  silent_close.join();

  std::thread talker = serve_one(agent, [](int fd) {
    write_all(fd, std::string(TcpProbe::kLineLimit + 1, 'x'));
    char byte;
    (void)::recv(fd, &byte, 1, 0);
  });
  CHECK(agent_outcome(ask_agent(agent)) == "failed: reply too long");
  talker.join();

  std::thread unfinished = serve_one(agent, [](int fd) {
    write_all(fd, "up");  // no line end, connection kept open
    char byte;
    (void)::recv(fd, &byte, 1, 0);
  });
  CHECK(agent_outcome(ask_agent(agent, Duration(200))) == "failed: timeout");
  unfinished.join();
}

TEST_CASE("tcp probe: a bare connect check passes without the server ever accepting it") {
  const Fd listener = listen_loopback();
  CHECK(outcome(probe_once(address_of(listener), check("", ""))) == "passed");
  // The reset came before the handshake's last ACK: the listener's queue
  // holds no connection to accept.
  REQUIRE(::fcntl(listener.get(), F_SETFL, O_NONBLOCK) == 0);
  Fd accepted(::accept(listener.get(), nullptr, nullptr));
  CHECK_FALSE(accepted);
  CHECK(errno == EAGAIN);
}

namespace {

// Runs `probe` (on `base`) once more to its result; 20 s at most.
std::optional<ProbeResult> run_again(event_base* base, TcpProbe& probe,
                                     std::optional<ProbeResult>& result) {
  result.reset();
  probe.start();
  if (!result) {
    const timeval limit{20, 0};
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
  }
  return result;
}

size_t open_descriptors() {
  size_t count = 0;
  for (int fd = 0; fd < 4096; ++fd)
    if (::fcntl(fd, F_GETFD) != -1) ++count;
  return count;
}

}  // namespace

TEST_CASE("tcp probe: every check of a server is a connection of its own, ended by a reset") {
  // The probe keeps its socket from one check to the next (CheckSocket):
  // each check must still come from a new source port (and the configured
  // source address), end with a reset, and neither a refused check nor the
  // server's own close may spoil the next.
  Fd listener = listen_loopback();
  const SocketAddress server = address_of(listener);
  const SocketAddress source = parse_ip_literal("127.0.0.3").addresses.at(0);
  const HealthCheckConfig config = check("PING\r\n", "PONG");
  EventBasePtr base(event_base_new());
  std::optional<ProbeResult> result;
  TcpProbe probe(base.get(), server, ConnectSource{&source, false}, TcpExchange::check(config),
                 [&](ProbeResult r) {
                   result = std::move(r);
                   event_base_loopbreak(base.get());
                 });

  struct Seen {
    std::string peer;
    int end_errno = 0;  // of the server's read after the reply: ECONNRESET for a reset
  };
  auto serve_check = [&](Seen& seen) {
    return serve_one(listener, [&seen](int fd) {
      sockaddr_storage peer{};
      socklen_t length = sizeof peer;
      ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length);
      seen.peer =
          SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&peer), length).to_string();
      if (read_exactly(fd, 6) != "PING\r\n") return;
      write_all(fd, "+PONG\r\n");
      char byte;
      seen.end_errno = ::recv(fd, &byte, 1, 0) < 0 ? errno : 0;
    });
  };

  std::set<std::string> peers;
  size_t descriptors_after_first = 0;
  for (int i = 0; i < 5; ++i) {
    Seen seen;
    std::thread server_thread = serve_check(seen);
    CHECK(outcome(run_again(base.get(), probe, result)) == "passed");
    server_thread.join();
    CHECK(seen.peer.rfind("127.0.0.3:", 0) == 0);
    CHECK(seen.end_errno == ECONNRESET);
    peers.insert(seen.peer);
    if (i == 0) descriptors_after_first = open_descriptors();
  }
  CHECK(peers.size() == 5);
  CHECK(open_descriptors() == descriptors_after_first);

  // Nobody listening: refused; then a server again on the same port.
  listener.reset();
  CHECK(outcome(run_again(base.get(), probe, result)) == "failed: connect refused");
  listener = Fd(::socket(AF_INET, SOCK_STREAM, 0));
  const int on = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  REQUIRE(::bind(listener.get(), server.sockaddr_ptr(), server.length) == 0);
  REQUIRE(::listen(listener.get(), 8) == 0);
  // The server answers and closes first: the next check is unaffected.
  std::thread closing = serve_one(listener, [](int fd) {
    read_exactly(fd, 6);
    write_all(fd, "+PONG\r\n");
  });
  CHECK(outcome(run_again(base.get(), probe, result)) == "passed");
  closing.join();
  Seen seen;
  std::thread server_thread = serve_check(seen);
  CHECK(outcome(run_again(base.get(), probe, result)) == "passed");
  server_thread.join();
  CHECK(peers.count(seen.peer) == 0);
  CHECK(seen.end_errno == ECONNRESET);
}

TEST_CASE("tcp probe: bare connect checks, repeated, are never accepted") {
  const Fd listener = listen_loopback();
  EventBasePtr base(event_base_new());
  std::optional<ProbeResult> result;
  TcpProbe probe(base.get(), address_of(listener), ConnectSource{},
                 TcpExchange::check(check("", "")), [&](ProbeResult r) {
                   result = std::move(r);
                   event_base_loopbreak(base.get());
                 });
  for (int i = 0; i < 20; ++i) CHECK(outcome(run_again(base.get(), probe, result)) == "passed");
  REQUIRE(::fcntl(listener.get(), F_SETFL, O_NONBLOCK) == 0);
  Fd accepted(::accept(listener.get(), nullptr, nullptr));
  CHECK_FALSE(accepted);
  CHECK(errno == EAGAIN);
}
