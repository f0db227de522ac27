// The stats endpoint's connections (private to src/stats): who may hold one
// and for how long, so that its clients can never take the descriptors and
// the CPU the proxy needs.
//
//  - At most kMaxStatsConnections at once. At the cap the listening socket
//    is not read; a client waiting in its backlog takes the place of a
//    connection idle the longest after an answer (keep-alive), else of the
//    one that has waited the longest for its request: neither keep-alive
//    nor slow clients can lock Prometheus, fulcrumctl or an operator out.
//  - Each request has kStatsRequestDeadline from the accept (on a kept-alive
//    connection: from the end of the previous answer) to the end of its
//    answer, however its bytes trickle in.
//  - accept() failing for want of descriptors or memory pauses accepting for
//    kAcceptRetry instead of retrying at once (a busy loop).
//
// evhttp (libevent 2.1) parses and answers the requests; it offers no hook
// when it accepts a connection (2.2's evhttp_set_newreqcb), so the
// connection is adopted right after: evhttp_set_bevcb hands us its new
// bufferevent, and an event activated from there adopts the
// evhttp_connection once evhttp has set it up.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <string>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"

struct bufferevent;
struct evconnlistener;
struct evhttp;
struct evhttp_connection;
struct evhttp_request;

namespace fulcrum {

class StatsConnections {
 public:
  // Watches `http`'s connections (its bufferevent callback is ours).
  StatsConnections(event_base* base, evhttp* http);
  // Leaves the connections to evhttp_free, which must follow.
  ~StatsConnections();
  StatsConnections(const StatsConnections&) = delete;
  StatsConnections& operator=(const StatsConnections&) = delete;

  // Serves `http` on the listening socket `fd` (bound to `address`); false
  // if libevent could not take it.
  bool listen(Fd fd, const SocketAddress& address);
  // The listening socket (-1 before listen()), for a binary upgrade.
  int listening_fd() const;
  // `request` has been read whole and is being answered: its connection is
  // busy until the answer has been sent.
  void request_read(evhttp_request* request);
  // `request` waits for something slow on the main loop's behalf (a reload
  // reading its file): its connection has no deadline and is never evicted
  // until the answer is sent, because freeing the connection would free
  // the request under whoever answers it later. Only authenticated admin
  // requests get here.
  void hold(evhttp_request* request);

 private:
  struct Client {
    StatsConnections* owner;
    evhttp_connection* connection;
    EventPtr deadline;
    bool idle = false;                            // an answer was sent, no next request read yet
    bool held = false;                            // hold(): answered later, never closed by us
    std::chrono::steady_clock::time_point since;  // of the current state
  };

  size_t held() const { return clients_.size() + pending_.size(); }
  void adopt_pending();
  void start_deadline(Client& client);
  Client* find(evhttp_connection* connection);
  void close(Client& client);
  void forget(evhttp_connection* connection);
  void evict_one();
  void update_accepting();
  void on_accept_error(int error);

  static bufferevent* on_new_bufferevent_cb(event_base* base, void* arg);
  static void on_adopt_cb(evutil_socket_t, short, void* arg);
  static void on_close_cb(evhttp_connection* connection, void* arg);
  static void on_answered_cb(evhttp_request* request, void* arg);
  static void on_deadline_cb(evutil_socket_t, short, void* arg);
  static void on_waiting_client_cb(evutil_socket_t, short, void* arg);
  static void on_accept_error_cb(evconnlistener* listener, void* http);
  static void on_retry_cb(evutil_socket_t, short, void* arg);

  event_base* base_;
  evhttp* http_;
  std::string address_;                 // the listen address, for log lines
  evconnlistener* listener_ = nullptr;  // owned by http_ once bound
  std::list<Client> clients_;           // stable addresses: timers point at them
  std::vector<bufferevent*> pending_;   // accepted in this loop iteration, not adopted yet
  EventPtr adopt_event_;
  EventPtr waiting_client_event_;  // the listening socket readable while at the cap
  EventPtr retry_timer_;
  bool paused_for_errors_ = false;  // accept() failed; retrying after kAcceptRetry
  bool error_logged_ = false;       // `stats accept paused` said, `resumed` not yet
};

}  // namespace fulcrum
