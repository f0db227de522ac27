// One client session: picks a server, connects (with retries), then relays
// bytes both ways with splice(2) until both directions are done.
//
// Relay rules (DESIGN.md): a direction borrows a pipe only while bytes are in
// flight; while its pipe holds bytes the destination cannot take, the source
// is not read (backpressure, so memory is bounded by two pipes a session);
// EOF on one side is passed on as shutdown(SHUT_WR) once the pipe is drained,
// and the other direction keeps going; a reset on one side resets the other.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/client_hello.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"
#include "fulcrum/pipe_pool.hpp"
#include "fulcrum/poller.hpp"
#include "fulcrum/snapshot.hpp"
#include "fulcrum/upgrade_state.hpp"

namespace fulcrum {

class Worker;

// Why a session ended, as printed in the access log.
enum class SessionEnd {
  client_close,
  server_close,
  client_reset,
  server_reset,
  connect_failed,
  local_error,
  no_server,
  bad_proxy_header,
  idle_timeout,
  max_lifetime,
  shutdown,
  server_down,  // the server was marked down in a service with on_server_down: close
  // Refused at once, before any server is picked (SPEC.md "At the edge").
  denied,           // allow/deny
  source_limit,     // source_limits
  proxy_untrusted,  // a PROXY header from a sender accept_proxy_protocol does not list
  no_sni_route,     // sni_required, and the client's hello named no route's server
};
std::string_view to_string(SessionEnd);

class Session {
 public:
  // The session owns `client` and one admitted slot of `service` (released
  // in the destructor).
  Session(Worker& worker, std::shared_ptr<const Snapshot> snapshot, const ServiceRuntime& service,
          Fd client, const SocketAddress& client_address);
  // A session carried over by a binary upgrade (upgrade_state.hpp): owns
  // its descriptors and, like the constructor above, one admitted slot
  // (Admission::admit_carried). resume() goes on where the old binary
  // stopped.
  Session(Worker& worker, std::shared_ptr<const Snapshot> snapshot, const ServiceRuntime& service,
          CarriedSession carried);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Starts picking and connecting. May finish the session before returning.
  void start();
  // A carried session's start: its events and timers again, as they stood.
  // May finish the session before returning.
  void resume();
  // The session as plain data for an upgrade, its descriptors left open
  // (the exec inherits those it names). Between callbacks only: the worker
  // is quiesced. Upgrade.
  CarriedSession carry() const;
  // Closes both sides now (graceful stop ran out of time).
  void close_for_shutdown() { finish(SessionEnd::shutdown); }
  // The server this session uses or is connecting to (null before a pick,
  // and between attempts).
  const ServerState* server_state() const { return server_lease_.state; }
  // That server was marked down in a service with on_server_down: close.
  // A relaying session is reset on both sides; one still connecting gives
  // the attempt up and tries another server (retries allowing). May finish
  // the session before returning.
  void server_marked_down();

  // Position in the worker's session list, for O(1) removal.
  std::list<std::unique_ptr<Session>>::iterator self;

 private:
  enum class Side { client, server };

  // One direction of the relay: bytes read from `source`, written to `sink`.
  struct Direction {
    Side source_side;
    int source = -1;
    int sink = -1;
    PipeLease pipe;
    bool eof = false;            // source sent FIN
    bool done = false;           // pipe drained after EOF and sink shut down
    bool splicing = false;       // a stream is flowing: splice instead of copying (pump)
    bool watching_sink = false;  // waits for the sink to take bytes, not for the source
    uint64_t bytes = 0;          // delivered to sink
  };

  // Holds a server's active slot for as long as the session uses it.
  struct ServerLease {
    ServerState* state = nullptr;
    ~ServerLease() { reset(); }
    void reset() {
      if (state != nullptr) state->release();
      state = nullptr;
    }
  };

  void resume_relay(const CarriedSession& carried);
  void read_proxy_header();
  void reject_proxy_header(const std::string& reason);
  // allow/deny and source_limits, on the client (the PROXY header's source
  // when there is one), then connect_next().
  void admit();
  // sni_routes: reads the ClientHello (kept, to go to the server first),
  // picks the route's group, then connect_next().
  void read_hello();
  void route_by_hello(const ClientHelloScan& scan);
  // Closes the client at once with a reset, counted and logged as `end`.
  void refuse(SessionEnd end);
  void connect_next();
  void on_connect_ready();
  void connect_failed(int error);
  void next_attempt();
  int send_proxy_header();
  void wire_directions();
  void start_relay();
  void pump(Direction& d);
  ssize_t copy_through_buffer(Direction& d, size_t size, uint64_t& moved);
  void copy_without_pipe(Direction& d);
  ssize_t move_urgent_byte(Direction& d);
  static bool at_urgent_mark(int fd);
  void source_eof(Direction& d);
  void wait_for_source(Direction& d) { d.watching_sink = false; }
  void wait_for_sink(Direction& d) { d.watching_sink = true; }
  void on_socket_ready(Side side, uint32_t events);
  uint32_t wanted_events(Side side) const;
  void watches_changed();
  void update_watches();
  static void on_batch_end_cb(void* arg);
  void direction_done(Direction& d);
  static Side sink_side(const Direction& d) {
    return d.source_side == Side::client ? Side::server : Side::client;
  }
  void on_timer();
  void on_idle_timer();
  void on_lifetime_timer();
  void arm_lifetime_timer();
  void relay_failed_locally(const char* what);
  void reset_from(Side side);
  void finish(SessionEnd end);
  // Notes activity (for the idle timeout) and, at most once a second, adds
  // the bytes moved since the last time to the service and server counters:
  // long transfers show in the stats while they run, and the shared
  // counters are touched once a second per session, never per chunk.
  void touch();
  void publish_bytes();

  static void on_client_ready_cb(void* arg, uint32_t events);
  static void on_server_ready_cb(void* arg, uint32_t events);
  static void on_proxy_header_cb(evutil_socket_t, short, void* arg);
  static void on_proxy_header_deadline_cb(evutil_socket_t, short, void* arg);
  static void on_hello_cb(evutil_socket_t, short, void* arg);
  static void on_hello_deadline_cb(evutil_socket_t, short, void* arg);
  static void on_timer_cb(evutil_socket_t, short, void* arg);
  static void on_lifetime_cb(evutil_socket_t, short, void* arg);

  // Gives the admitted session slot back when the session is gone.
  struct AdmissionSlot {
    Admission& admission;
    ServiceState& service;
    ~AdmissionSlot() { admission.release(service); }
  };

  Worker& worker_;
  std::shared_ptr<const Snapshot> snapshot_;
  AdmissionSlot admission_slot_;
  const ServiceRuntime& service_;
  SocketAddress client_address_;  // the PROXY header's source, when the client sent one
  std::optional<SocketAddress> peer_address_;  // the TCP peer, when a PROXY header replaced it
  bool source_counted_ = false;                // admitted by source_limits: released at the end
  size_t group_ = 0;            // the service's server group: its own, or a route's by the TLS name
  std::vector<uint8_t> hello_;  // the ClientHello read for sni_routes, sent first
  // The PROXY header's or the hello's deadline, while one is read.
  std::chrono::steady_clock::time_point header_deadline_at_;
  bool reading_hello_ = false;             // header_event_ reads the hello, not a PROXY header
  std::optional<CarriedSession> carried_;  // what resume() restores, until it has
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_activity_;
  std::chrono::steady_clock::time_point connect_started_;
  std::chrono::steady_clock::time_point lifetime_end_;  // with max_lifetime: when the session ends
  std::chrono::steady_clock::time_point last_publish_;
  uint64_t published_in_ = 0;   // c2s_.bytes already added to the counters
  uint64_t published_out_ = 0;  // s2c_.bytes already added

  // Declared before what it outlives: members are destroyed bottom-up, so
  // events go first, then pipes, sockets, and the slots last.
  ServerLease server_lease_;
  std::optional<uint32_t> server_index_;
  std::vector<uint32_t> failed_servers_;  // servers this session failed to connect to
  uint32_t attempt_ = 0;
  // How the last failed attempt ended (connect_failed or local_error): the
  // session's end when no attempt is left.
  SessionEnd last_failure_ = SessionEnd::connect_failed;
  std::optional<SessionEnd> first_close_;
  bool connecting_ = false;       // a connect is in flight: the server socket waits to be writable
  bool watches_pending_ = false;  // update_watches() is due at the end of the Poller's batch
  bool finished_ = false;
  Fd client_;
  Fd server_;
  Direction c2s_;
  Direction s2c_;
  // Each socket's one registration in the worker's Poller, for everything
  // both directions wait for on it (wanted_events). Never removed before
  // the socket is closed: the close removes it.
  Poller::Watch client_watch_;
  Poller::Watch server_watch_;
  EventPtr header_event_;     // reading the client's PROXY header
  EventPtr header_deadline_;  // for the whole header, from accept
  std::string header_bytes_;  // header bytes consumed so far
  // The connect timeout while connecting_, then the idle timeout.
  EventPtr timer_;
  EventPtr lifetime_timer_;
};

}  // namespace fulcrum
