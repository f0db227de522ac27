#include "fulcrum/dns_client.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"
#include "fulcrum/random.hpp"

namespace fulcrum {

std::vector<SocketAddress> resolv_conf_nameservers(const std::string& path) {
  std::vector<SocketAddress> out;
  std::ifstream file(path);
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream words(line);
    std::string keyword;
    std::string address;
    if (!(words >> keyword >> address) || keyword != "nameserver") continue;
    // A scope (`fe80::1%eth0`) cannot be written in a configuration address.
    if (const size_t percent = address.find('%'); percent != std::string::npos) continue;
    const AddressParse parsed = parse_ip_literal(address);
    if (parsed.error.empty() && !parsed.addresses.empty())
      out.push_back(parsed.addresses.front().with_port(53));
  }
  return out;
}

struct DnsClient::Query {
  DnsClient* client = nullptr;
  uint64_t id = 0;
  std::string name;
  DnsType type = DnsType::a;
  Callback done;
  int tries = 0;  // made so far
  uint16_t message_id = 0;
  std::vector<uint8_t> request;   // this try's (framed, over TCP)
  size_t sent = 0;                // TCP: bytes of the framed request written
  std::vector<uint8_t> received;  // TCP: the framed answer so far
  Fd socket;
  EventPtr io;
  EventPtr timer;
  std::string last_error;

  const SocketAddress& server() const {
    return client->nameservers_[static_cast<size_t>(tries - 1) % client->nameservers_.size()];
  }
};

namespace {

bool would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK; }

Fd open_socket(const SocketAddress& server, int type) {
  Fd fd(::socket(server.family(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  if (::connect(fd.get(), server.sockaddr_ptr(), server.length) != 0 && errno != EINPROGRESS)
    return {};
  return fd;
}

// Answers that are not for this try: a late answer to an earlier try, or
// anyone else's datagram. The try waits on for its own.
bool not_ours(const DnsAnswer& answer) {
  return answer.status == DnsAnswer::Status::failed &&
         (answer.error == "not an answer to the query" ||
          answer.error == "an answer to another question");
}

}  // namespace

DnsClient::DnsClient(event_base* base, std::vector<SocketAddress> nameservers,
                     std::chrono::milliseconds timeout, int attempts)
    : base_(base), nameservers_(std::move(nameservers)), timeout_(timeout), attempts_(attempts) {}

DnsClient::~DnsClient() = default;

uint64_t DnsClient::query(const std::string& name, DnsType type, Callback done) {
  auto query = std::make_unique<Query>();
  query->client = this;
  query->id = next_id_++;
  query->name = name;
  query->type = type;
  query->done = std::move(done);
  Query& q = *query;
  queries_.push_back(std::move(query));
  // The timer ends a try that got no answer in time; with no try running it
  // starts the next one. The first starts from the loop, so that `done` is
  // never called from within query().
  q.timer.reset(evtimer_new(base_, on_timer, &q));
  add_with_timeout(q.timer.get(), std::chrono::milliseconds(0));
  return q.id;
}

void DnsClient::cancel(uint64_t id) {
  queries_.remove_if([id](const std::unique_ptr<Query>& query) { return query->id == id; });
}

void DnsClient::on_timer(evutil_socket_t, short, void* arg) {
  auto* query = static_cast<Query*>(arg);
  DnsClient& client = *query->client;
  if (!query->socket) {
    client.next_try(*query, "");
    return;
  }
  client.next_try(*query, "no answer within " + std::to_string(client.timeout_.count()) +
                              " ms from " + query->server().to_string());
}

// Sends the query to the next nameserver, or ends it with `why` (the last
// try's failure) when every try is spent.
void DnsClient::next_try(Query& query, std::string why) {
  if (!why.empty()) query.last_error = std::move(why);
  query.io.reset();
  query.socket.reset();
  if (nameservers_.empty()) {
    DnsAnswer answer;
    answer.error = "no nameserver (global.resolvers, or nameserver lines in /etc/resolv.conf)";
    finish(query, answer);
    return;
  }
  if (query.tries == attempts_ * static_cast<int>(nameservers_.size())) {
    DnsAnswer answer;
    answer.error = query.last_error;
    finish(query, answer);
    return;
  }
  ++query.tries;
  query.message_id = static_cast<uint16_t>(thread_random());
  query.request = encode_dns_query(query.message_id, query.name, query.type);
  if (query.request.empty()) {
    DnsAnswer answer;
    answer.error = "\"" + query.name + "\" is not a name DNS can ask for";
    finish(query, answer);
    return;
  }
  query.socket = open_socket(query.server(), SOCK_DGRAM);
  if (!query.socket ||
      ::send(query.socket.get(), query.request.data(), query.request.size(), 0) < 0) {
    query.last_error =
        "cannot ask " + query.server().to_string() + ": " + std::string(std::strerror(errno));
    query.socket.reset();
    add_with_timeout(query.timer.get(), std::chrono::milliseconds(0));  // the next try
    return;
  }
  query.io.reset(event_new(base_, query.socket.get(), EV_READ | EV_PERSIST, on_udp, &query));
  event_add(query.io.get(), nullptr);
  add_with_timeout(query.timer.get(), timeout_);
}

void DnsClient::on_udp(evutil_socket_t fd, short, void* arg) {
  auto* query = static_cast<Query*>(arg);
  DnsClient& client = *query->client;
  uint8_t buffer[65536];
  const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
  if (n < 0) {
    if (would_block(errno) || errno == EINTR) return;
    // ECONNREFUSED: nothing listens there (an ICMP port unreachable).
    client.next_try(*query, "no answer from " + query->server().to_string() + ": " +
                                std::string(std::strerror(errno)));
    return;
  }
  const DnsAnswer answer = parse_dns_answer({buffer, static_cast<size_t>(n)}, query->message_id,
                                            query->name, query->type);
  if (not_ours(answer)) return;
  if (answer.status == DnsAnswer::Status::truncated) {
    client.ask_over_tcp(*query);
    return;
  }
  client.take(*query, answer);
}

// The same question to the same server over TCP (RFC 7766): a two-byte
// length before the query and before the answer.
void DnsClient::ask_over_tcp(Query& query) {
  query.io.reset();
  query.socket = open_socket(query.server(), SOCK_STREAM);
  if (!query.socket) {
    next_try(query, "cannot ask " + query.server().to_string() +
                        " over TCP: " + std::string(std::strerror(errno)));
    return;
  }
  const auto size = static_cast<uint16_t>(query.request.size());
  query.request.insert(query.request.begin(),
                       {static_cast<uint8_t>(size >> 8), static_cast<uint8_t>(size & 0xff)});
  query.sent = 0;
  query.received.clear();
  query.io.reset(event_new(base_, query.socket.get(), EV_WRITE | EV_PERSIST, on_tcp, &query));
  event_add(query.io.get(), nullptr);
}

void DnsClient::on_tcp(evutil_socket_t fd, short what, void* arg) {
  auto* query = static_cast<Query*>(arg);
  DnsClient& client = *query->client;
  const std::string where = query->server().to_string() + " over TCP";
  if ((what & EV_WRITE) != 0) {
    const ssize_t n = ::send(fd, query->request.data() + query->sent,
                             query->request.size() - query->sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (would_block(errno) || errno == EINTR) return;
      client.next_try(*query, "cannot ask " + where + ": " + std::string(std::strerror(errno)));
      return;
    }
    query->sent += static_cast<size_t>(n);
    if (query->sent < query->request.size()) return;
    // All written: wait for the answer.
    query->io.reset(event_new(client.base_, fd, EV_READ | EV_PERSIST, on_tcp, query));
    event_add(query->io.get(), nullptr);
    return;
  }
  uint8_t buffer[16384];
  const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
  if (n < 0) {
    if (would_block(errno) || errno == EINTR) return;
    client.next_try(*query, "no answer from " + where + ": " + std::string(std::strerror(errno)));
    return;
  }
  if (n == 0) {
    client.next_try(*query, "no whole answer from " + where + ": closed");
    return;
  }
  query->received.insert(query->received.end(), buffer, buffer + n);
  if (query->received.size() < 2) return;
  const size_t length = size_t{query->received[0]} << 8 | query->received[1];
  if (query->received.size() < 2 + length) return;
  const DnsAnswer answer =
      parse_dns_answer(std::span<const uint8_t>(query->received).subspan(2, length),
                       query->message_id, query->name, query->type);
  if (answer.status == DnsAnswer::Status::truncated) {
    client.next_try(*query, "a truncated answer from " + where);
    return;
  }
  client.take(*query, answer);
}

// An answer for this try: the query's result, or a failure that sends it
// to the next nameserver.
void DnsClient::take(Query& query, const DnsAnswer& answer) {
  if (answer.status == DnsAnswer::Status::failed) {
    next_try(query, answer.error + " (" + query.server().to_string() + ")");
    return;
  }
  finish(query, answer);
}

void DnsClient::finish(Query& query, const DnsAnswer& answer) {
  Callback done = std::move(query.done);
  cancel(query.id);  // destroys `query`
  done(answer);
}

}  // namespace fulcrum
