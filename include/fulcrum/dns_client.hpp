// Asks DNS servers for A, AAAA and SRV records on a libevent loop, never
// blocking it: each query is a non-blocking UDP socket (TCP when the answer
// comes truncated), tried on each nameserver in turn with a deadline per
// try. Used by server discovery (discovery.hpp).
#pragma once

#include <event2/event.h>

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/dns_message.hpp"

namespace fulcrum {

// The nameservers of a resolv.conf (`nameserver ADDRESS` lines, port 53),
// in order; empty when the file cannot be read or names none.
std::vector<SocketAddress> resolv_conf_nameservers(const std::string& path);

class DnsClient {
 public:
  using Callback = std::function<void(const DnsAnswer&)>;

  // Each try waits `timeout` for its answer; every nameserver is tried
  // `attempts` times, in order.
  DnsClient(event_base* base, std::vector<SocketAddress> nameservers,
            std::chrono::milliseconds timeout = std::chrono::milliseconds(1000), int attempts = 2);
  // Drops the queries still running; their callbacks are never called.
  ~DnsClient();
  DnsClient(const DnsClient&) = delete;
  DnsClient& operator=(const DnsClient&) = delete;

  // Asks for `type` records of `name`; `done` is called once, from the
  // loop, never from within query(): with the answer (ok or no_name), or
  // with status failed and why every nameserver failed. Returns an id for
  // cancel().
  uint64_t query(const std::string& name, DnsType type, Callback done);
  // Forgets a running query: its callback is never called.
  void cancel(uint64_t id);
  // Queries running now.
  size_t running() const { return queries_.size(); }

 private:
  struct Query;
  static void on_timer(evutil_socket_t fd, short what, void* arg);
  static void on_udp(evutil_socket_t fd, short what, void* arg);
  static void on_tcp(evutil_socket_t fd, short what, void* arg);
  void next_try(Query& query, std::string why);
  void ask_over_tcp(Query& query);
  void take(Query& query, const DnsAnswer& answer);
  void finish(Query& query, const DnsAnswer& answer);

  event_base* base_;
  std::vector<SocketAddress> nameservers_;
  std::chrono::milliseconds timeout_;
  int attempts_;
  uint64_t next_id_ = 1;
  std::list<std::unique_ptr<Query>> queries_;
};

}  // namespace fulcrum
