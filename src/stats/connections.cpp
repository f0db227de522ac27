#include "connections.hpp"

#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <algorithm>
#include <utility>

#include "fulcrum/log.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/stats.hpp"

namespace fulcrum {

namespace {

// How long accepting stops after accept() failed for want of descriptors or
// memory (as the proxy's listeners do).
constexpr std::chrono::milliseconds kAcceptRetry{100};

std::chrono::milliseconds until(std::chrono::steady_clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(0), std::chrono::ceil<std::chrono::milliseconds>(
                                                    deadline - std::chrono::steady_clock::now()));
}

// evconnlistener calls its error callback with its accept callback's
// argument, which evhttp_bind_listener made the evhttp: the way back from
// there is this list of the live instances (main thread only).
std::vector<StatsConnections*>& instances() {
  static std::vector<StatsConnections*> all;
  return all;
}

}  // namespace

StatsConnections::StatsConnections(event_base* base, evhttp* http) : base_(base), http_(http) {
  adopt_event_.reset(event_new(base_, -1, 0, on_adopt_cb, this));
  retry_timer_.reset(evtimer_new(base_, on_retry_cb, this));
  evhttp_set_bevcb(http_, on_new_bufferevent_cb, this);
  instances().push_back(this);
}

StatsConnections::~StatsConnections() {
  std::erase(instances(), this);
  for (Client& client : clients_)
    evhttp_connection_set_closecb(client.connection, nullptr, nullptr);
}

int StatsConnections::listening_fd() const {
  return listener_ != nullptr ? evconnlistener_get_fd(listener_) : -1;
}

bool StatsConnections::listen(Fd fd, const SocketAddress& address) {
  // Formatted now: at EMFILE even getnameinfo may fail.
  address_ = address.to_string();
  // Disabled until update_accepting(); closes the socket when freed.
  evconnlistener* listener = evconnlistener_new(
      base_, nullptr, nullptr, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED, 0,
      fd.get());
  if (listener == nullptr) return false;
  fd.release();
  if (evhttp_bind_listener(http_, listener) == nullptr) {
    evconnlistener_free(listener);
    return false;
  }
  listener_ = listener;
  evconnlistener_set_error_cb(listener_, on_accept_error_cb);
  waiting_client_event_.reset(
      event_new(base_, evconnlistener_get_fd(listener_), EV_READ, on_waiting_client_cb, this));
  update_accepting();
  return true;
}

// evhttp has just accepted a connection and asks for its bufferevent. The
// connection object around it does not exist yet: it is adopted later in
// this loop iteration (on_adopt_cb).
bufferevent* StatsConnections::on_new_bufferevent_cb(event_base* base, void* arg) {
  auto* self = static_cast<StatsConnections*>(arg);
  bufferevent* bev = bufferevent_socket_new(base, -1, 0);
  if (bev == nullptr) return nullptr;  // evhttp tries its own, and fails the same way
  if (self->error_logged_) {
    self->error_logged_ = false;
    log_info("stats accept resumed", {{"address", self->address_}});
  }
  self->pending_.push_back(bev);
  event_active(self->adopt_event_.get(), EV_READ, 0);
  // At the cap this stops evconnlistener's accept loop after this client.
  self->update_accepting();
  return bev;
}

void StatsConnections::on_adopt_cb(evutil_socket_t, short, void* arg) {
  static_cast<StatsConnections*>(arg)->adopt_pending();
}

// evhttp registers its evhttp_connection as the argument of the
// bufferevent's callbacks (libevent 2.0 to 2.2): that is how a bufferevent
// leads to its connection. No callback ran on these connections yet, so
// they are all alive unless evhttp failed to set one up (an allocation or
// epoll_ctl failure), in which case bufferevent_free already cleared its
// callbacks and its memory waits for the loop's finalizers, which run after
// this event.
void StatsConnections::adopt_pending() {
  const auto now = std::chrono::steady_clock::now();
  for (bufferevent* bev : std::exchange(pending_, {})) {
    void* connection = nullptr;
    bufferevent_getcb(bev, nullptr, nullptr, nullptr, &connection);
    if (connection == nullptr) continue;
    Client& client = clients_.emplace_back(
        Client{this, static_cast<evhttp_connection*>(connection), nullptr, false, false, now});
    client.deadline.reset(evtimer_new(base_, on_deadline_cb, &client));
    evhttp_connection_set_closecb(client.connection, on_close_cb, this);
    start_deadline(client);
  }
  update_accepting();
}

void StatsConnections::start_deadline(Client& client) {
  add_with_timeout(client.deadline.get(), until(client.since + kStatsRequestDeadline));
}

StatsConnections::Client* StatsConnections::find(evhttp_connection* connection) {
  const auto it = std::find_if(clients_.begin(), clients_.end(), [connection](const Client& c) {
    return c.connection == connection;
  });
  return it == clients_.end() ? nullptr : &*it;
}

void StatsConnections::request_read(evhttp_request* request) {
  Client* client = find(evhttp_request_get_connection(request));
  if (client == nullptr) return;
  // On a kept-alive connection the deadline started with the end of the
  // previous answer and keeps running.
  client->idle = false;
  evhttp_request_set_on_complete_cb(request, on_answered_cb, this);
}

void StatsConnections::hold(evhttp_request* request) {
  Client* client = find(evhttp_request_get_connection(request));
  if (client == nullptr) return;
  client->held = true;
  event_del(client->deadline.get());
}

// The answer is written: the connection may ask again, from now on and
// within the deadline.
void StatsConnections::on_answered_cb(evhttp_request* request, void* arg) {
  auto* self = static_cast<StatsConnections*>(arg);
  Client* client = self->find(evhttp_request_get_connection(request));
  if (client == nullptr) return;
  client->idle = true;
  client->held = false;
  client->since = std::chrono::steady_clock::now();
  self->start_deadline(*client);
}

void StatsConnections::on_deadline_cb(evutil_socket_t, short, void* arg) {
  auto* client = static_cast<Client*>(arg);
  client->owner->close(*client);
}

// Closes a connection without an answer, as evhttp's own timeouts do.
void StatsConnections::close(Client& client) {
  evhttp_connection* connection = client.connection;
  forget(connection);
  evhttp_connection_free(connection);
}

// evhttp closes a connection (the client left, an error, the answer of a
// request that ends the connection): it no longer counts.
void StatsConnections::on_close_cb(evhttp_connection* connection, void* arg) {
  static_cast<StatsConnections*>(arg)->forget(connection);
}

void StatsConnections::forget(evhttp_connection* connection) {
  evhttp_connection_set_closecb(connection, nullptr, nullptr);
  clients_.remove_if([connection](const Client& c) { return c.connection == connection; });
  update_accepting();
}

// At the cap with a client waiting: the connection idle the longest goes,
// else the one waiting the longest for its request. A newcomer is the last
// to go: only kMaxStatsConnections clients arriving after it and before its
// request has been read could push it out, so a client that sends its
// request at once gets its answer.
void StatsConnections::evict_one() {
  Client* victim = nullptr;
  for (Client& client : clients_) {
    if (client.held) continue;
    if (victim == nullptr ||
        std::pair(!client.idle, client.since) < std::pair(!victim->idle, victim->since))
      victim = &client;
  }
  if (victim != nullptr) close(*victim);
}

void StatsConnections::on_waiting_client_cb(evutil_socket_t, short, void* arg) {
  static_cast<StatsConnections*>(arg)->evict_one();
}

// Below the cap the listener accepts; at the cap only the backlog is
// watched, for a client to make room for. Neither while accept() fails.
void StatsConnections::update_accepting() {
  if (listener_ == nullptr) return;
  const bool full = held() >= kMaxStatsConnections;
  if (!paused_for_errors_ && !full) {
    evconnlistener_enable(listener_);
  } else {
    evconnlistener_disable(listener_);
  }
  if (!paused_for_errors_ && full) {
    event_add(waiting_client_event_.get(), nullptr);
  } else {
    event_del(waiting_client_event_.get());
  }
}

void StatsConnections::on_accept_error_cb(evconnlistener*, void* http) {
  const int error = EVUTIL_SOCKET_ERROR();
  for (StatsConnections* self : instances()) {
    if (self->http_ == http) self->on_accept_error(error);
  }
}

// evconnlistener only reports errors that are not the client's (EMFILE,
// ENFILE, ENOBUFS, ENOMEM, ...): the socket stays readable, so retrying at
// once would spin. Logged once until an accept succeeds again.
void StatsConnections::on_accept_error(int error) {
  if (!error_logged_) {
    error_logged_ = true;
    log_warn("stats accept paused", {{"address", address_}, {"error", errno_string(error)}});
  }
  paused_for_errors_ = true;
  update_accepting();
  add_with_timeout(retry_timer_.get(), kAcceptRetry);
}

void StatsConnections::on_retry_cb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<StatsConnections*>(arg);
  self->paused_for_errors_ = false;
  self->update_accepting();
}

}  // namespace fulcrum
