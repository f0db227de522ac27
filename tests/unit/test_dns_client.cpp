// The DNS client of discovery (dns_client.hpp) against a DNS server of the
// test's own on loopback: answers, a dead nameserver passed over, a
// truncated answer asked again over TCP, foreign datagrams ignored, a try
// that times out, cancel.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fulcrum/dns_client.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"

using namespace fulcrum;

namespace {

SocketAddress loopback(uint16_t port) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  in.sin_port = htons(port);
  return SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&in), sizeof in);
}

uint16_t port_of(int fd) {
  sockaddr_in in{};
  socklen_t length = sizeof in;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&in), &length);
  return ntohs(in.sin_port);
}

// The question of a query (its bytes from offset 12 up to the OPT record).
std::vector<uint8_t> question_of(const std::vector<uint8_t>& query) {
  size_t at = 12;
  while (query[at] != 0) at += 1 + query[at];
  return {query.begin() + 12, query.begin() + static_cast<long>(at + 5)};
}

// An answer to `query`: one A record 198.18.7.N (N = `last`), or only the
// header with TC set.
std::vector<uint8_t> answer_to(const std::vector<uint8_t>& query, uint8_t last, bool truncated) {
  std::vector<uint8_t> out = {
      query[0], query[1], static_cast<uint8_t>(truncated ? 0x83 : 0x81), 0x80, 0,
      1,        0,        static_cast<uint8_t>(truncated ? 0 : 1),       0,    0,
      0,        0};
  const std::vector<uint8_t> question = question_of(query);
  out.insert(out.end(), question.begin(), question.end());
  if (!truncated) {
    const std::vector<uint8_t> record = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 198, 18, 7, last};
    out.insert(out.end(), record.begin(), record.end());
  }
  return out;
}

// A DNS server on 127.0.0.1 (UDP, and TCP on the same port) driven by the
// test's loop: `udp_last` answers over UDP (nullopt: stays silent), or a
// truncated answer when `truncate`, after a datagram with a wrong id.
struct FakeDns {
  event_base* base;
  Fd udp;
  Fd tcp_listener;
  EventPtr udp_event;
  EventPtr tcp_event;
  Fd conn;  // the TCP client being served, one at a time
  EventPtr conn_event;
  std::vector<uint8_t> conn_bytes;
  std::optional<uint8_t> udp_last = 1;
  bool truncate = false;
  bool decoy = false;  // send a datagram with the wrong id first
  int udp_queries = 0;
  int tcp_queries = 0;

  explicit FakeDns(event_base* event_base) : base(event_base) {
    // A TCP port from the kernel, then the same UDP port (free far more
    // often than the other way round); a few tries.
    for (int attempt = 0; attempt < 20 && !udp; ++attempt) {
      tcp_listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
      const SocketAddress any = loopback(0);
      REQUIRE(::bind(tcp_listener.get(), any.sockaddr_ptr(), any.length) == 0);
      const SocketAddress same = loopback(port_of(tcp_listener.get()));
      udp.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
      if (::bind(udp.get(), same.sockaddr_ptr(), same.length) != 0) udp.reset();
    }
    REQUIRE(udp);
    REQUIRE(::listen(tcp_listener.get(), 4) == 0);
    udp_event.reset(event_new(base, udp.get(), EV_READ | EV_PERSIST, on_udp, this));
    event_add(udp_event.get(), nullptr);
    tcp_event.reset(event_new(base, tcp_listener.get(), EV_READ | EV_PERSIST, on_tcp, this));
    event_add(tcp_event.get(), nullptr);
  }

  SocketAddress address() const { return loopback(port_of(udp.get())); }

  static void on_udp(evutil_socket_t fd, short, void* arg) {
    auto* self = static_cast<FakeDns*>(arg);
    uint8_t buffer[4096];
    sockaddr_storage from{};
    socklen_t length = sizeof from;
    const ssize_t n =
        ::recvfrom(fd, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &length);
    if (n <= 0) return;
    ++self->udp_queries;
    const std::vector<uint8_t> query(buffer, buffer + n);
    if (!self->udp_last && !self->truncate) return;
    if (self->decoy) {
      std::vector<uint8_t> wrong = answer_to(query, 99, false);
      wrong[1] ^= 0xff;
      ::sendto(fd, wrong.data(), wrong.size(), 0, reinterpret_cast<sockaddr*>(&from), length);
    }
    const std::vector<uint8_t> reply = answer_to(query, self->udp_last.value_or(0), self->truncate);
    ::sendto(fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), length);
  }

  static void on_tcp(evutil_socket_t fd, short, void* arg) {
    auto* self = static_cast<FakeDns*>(arg);
    self->conn.reset(::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK));
    if (!self->conn) return;
    ++self->tcp_queries;
    self->conn_bytes.clear();
    self->conn_event.reset(
        event_new(self->base, self->conn.get(), EV_READ | EV_PERSIST, on_conn, self));
    event_add(self->conn_event.get(), nullptr);
  }

  // Reads the framed query as it comes; answers once it is whole.
  static void on_conn(evutil_socket_t fd, short, void* arg) {
    auto* self = static_cast<FakeDns*>(arg);
    uint8_t buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) {
      self->conn_event.reset();
      self->conn.reset();
      return;
    }
    std::vector<uint8_t>& got = self->conn_bytes;
    got.insert(got.end(), buffer, buffer + n);
    if (got.size() < 2 || got.size() < 2 + (size_t{got[0]} << 8 | got[1])) return;
    const std::vector<uint8_t> query(got.begin() + 2, got.end());
    std::vector<uint8_t> reply = answer_to(query, 42, false);
    const auto size = static_cast<uint16_t>(reply.size());
    reply.insert(reply.begin(), {static_cast<uint8_t>(size >> 8), static_cast<uint8_t>(size)});
    ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
  }
};

// A port where nothing listens on UDP: bound, then closed.
SocketAddress dead_address() {
  Fd fd(::socket(AF_INET, SOCK_DGRAM, 0));
  const SocketAddress any = loopback(0);
  REQUIRE(::bind(fd.get(), any.sockaddr_ptr(), any.length) == 0);
  return loopback(port_of(fd.get()));
}

// Runs the loop until `answer` is set (at most 10 s).
void run_until(event_base* base, const std::optional<DnsAnswer>& answer) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!answer && std::chrono::steady_clock::now() < end) event_base_loop(base, EVLOOP_ONCE);
}

std::string first_address(const DnsAnswer& answer) {
  return answer.addresses.empty() ? "" : answer.addresses.front().host_string();
}

}  // namespace

TEST_CASE("dns client: an answer, after a dead nameserver and a foreign datagram") {
  EventBasePtr base(event_base_new());
  FakeDns server(base.get());
  server.decoy = true;
  DnsClient client(base.get(), {dead_address(), server.address()});
  std::optional<DnsAnswer> answer;
  bool called_at_once = false;
  client.query("app.svc.test", DnsType::a, [&](const DnsAnswer& a) { answer = a; });
  called_at_once = answer.has_value();
  CHECK_FALSE(called_at_once);  // never from within query()
  run_until(base.get(), answer);
  REQUIRE(answer);
  CHECK(answer->status == DnsAnswer::Status::ok);
  CHECK(first_address(*answer) == "198.18.7.1");
  CHECK(server.udp_queries == 1);
  CHECK(client.running() == 0);
}

TEST_CASE("dns client: a truncated answer is asked again over TCP") {
  EventBasePtr base(event_base_new());
  FakeDns server(base.get());
  server.truncate = true;
  DnsClient client(base.get(), {server.address()});
  std::optional<DnsAnswer> answer;
  client.query("_app._tcp.svc.test", DnsType::a, [&](const DnsAnswer& a) { answer = a; });
  run_until(base.get(), answer);
  REQUIRE(answer);
  CHECK(answer->status == DnsAnswer::Status::ok);
  CHECK(first_address(*answer) == "198.18.7.42");
  CHECK(server.udp_queries == 1);
  CHECK(server.tcp_queries == 1);
}

TEST_CASE("dns client: silent and dead nameservers, every try, then why") {
  EventBasePtr base(event_base_new());
  FakeDns server(base.get());
  server.udp_last.reset();
  const SocketAddress silent = server.address();
  DnsClient client(base.get(), {silent}, std::chrono::milliseconds(50), 2);
  std::optional<DnsAnswer> answer;
  client.query("app.svc.test", DnsType::a, [&](const DnsAnswer& a) { answer = a; });
  run_until(base.get(), answer);
  REQUIRE(answer);
  CHECK(answer->status == DnsAnswer::Status::failed);
  CHECK(answer->error == "no answer within 50 ms from " + silent.to_string());
  CHECK(server.udp_queries == 2);

  const SocketAddress dead = dead_address();
  DnsClient to_dead(base.get(), {dead});
  answer.reset();
  to_dead.query("app.svc.test", DnsType::a, [&](const DnsAnswer& a) { answer = a; });
  run_until(base.get(), answer);
  REQUIRE(answer);
  CHECK(answer->error == "no answer from " + dead.to_string() + ": Connection refused");

  DnsClient without(base.get(), {});
  answer.reset();
  without.query("app.svc.test", DnsType::a, [&](const DnsAnswer& a) { answer = a; });
  run_until(base.get(), answer);
  REQUIRE(answer);
  CHECK(answer->error ==
        "no nameserver (global.resolvers, or nameserver lines in /etc/resolv.conf)");
}

TEST_CASE("dns client: a cancelled query never calls back") {
  EventBasePtr base(event_base_new());
  FakeDns server(base.get());
  DnsClient client(base.get(), {server.address()});
  bool called = false;
  const uint64_t id =
      client.query("app.svc.test", DnsType::a, [&](const DnsAnswer&) { called = true; });
  client.cancel(id);
  CHECK(client.running() == 0);
  for (int i = 0; i < 20; ++i) event_base_loop(base.get(), EVLOOP_NONBLOCK);
  CHECK_FALSE(called);
}

TEST_CASE("dns client: the nameservers of a resolv.conf") {
  char path[] = "/tmp/fulcrum-resolv-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text =
      "# comment\nsearch svc.test\nnameserver 127.0.0.53\nnameserver ::1\n"
      "nameserver fe80::1%eth0\nnameserver not-an-address\noptions edns0\n";
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
  std::vector<std::string> servers;
  for (const SocketAddress& address : resolv_conf_nameservers(path))
    servers.push_back(address.to_string());
  ::unlink(path);
  CHECK(servers == std::vector<std::string>{"127.0.0.53:53", "[::1]:53"});
  CHECK(resolv_conf_nameservers("/nonexistent/resolv.conf").empty());
}
