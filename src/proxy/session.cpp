#include "session.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "fulcrum/log.hpp"
#include "fulcrum/proxy_protocol.hpp"
#include "fulcrum/random.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/worker.hpp"

namespace fulcrum {

namespace {

// Bytes one direction may move per readiness event before it yields to the
// rest of the loop; level-triggered events bring it back right away.
constexpr uint64_t kBytesPerWakeup = 1024 * 1024;

// How long a client that must send a PROXY header has to send all of it.
constexpr std::chrono::milliseconds kProxyHeaderTimeout{3000};

constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

// Reads of up to this size are copied through a stack buffer (recv + send):
// for a request or a response of a few hundred bytes that costs less than
// two splices through a pipe. A read that fills it means a stream is
// flowing, and the direction switches to splice until a read comes back
// smaller again (HAProxy's splice-auto idea).
constexpr size_t kCopyBytes = 16 * 1024;

bool would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK; }

// What copy_through_buffer() and move_urgent_byte() return when the pipe
// took fewer bytes than it had room for. Not -1 with errno: a write that
// took part of its bytes did not fail and set no errno, so an errno read
// then is a stale one (an EAGAIN from an earlier call made pump() give the
// pipe, bytes and all, back to the pool).
constexpr ssize_t kPipeRefused = -2;

}  // namespace

std::string_view to_string(SessionEnd end) {
  switch (end) {
    case SessionEnd::client_close: return "client_close";
    case SessionEnd::server_close: return "server_close";
    case SessionEnd::client_reset: return "client_reset";
    case SessionEnd::server_reset: return "server_reset";
    case SessionEnd::connect_failed: return "connect_failed";
    case SessionEnd::local_error: return "local_error";
    case SessionEnd::no_server: return "no_server";
    case SessionEnd::bad_proxy_header: return "bad_proxy_header";
    case SessionEnd::idle_timeout: return "idle_timeout";
    case SessionEnd::max_lifetime: return "max_lifetime";
    case SessionEnd::shutdown: return "shutdown";
    case SessionEnd::server_down: return "server_down";
    case SessionEnd::denied: return "denied";
    case SessionEnd::source_limit: return "source_limit";
    case SessionEnd::proxy_untrusted: return "proxy_untrusted";
    case SessionEnd::no_sni_route: return "no_sni_route";
  }
  return "unknown";
}

Session::Session(Worker& worker, std::shared_ptr<const Snapshot> snapshot,
                 const ServiceRuntime& service, Fd client, const SocketAddress& client_address)
    : worker_(worker),
      snapshot_(std::move(snapshot)),
      admission_slot_{worker.admission(), *service.state},
      service_(service),
      client_address_(client_address),
      started_(std::chrono::steady_clock::now()),
      last_activity_(started_),
      last_publish_(started_),
      client_(std::move(client)) {
  client_watch_.callback = on_client_ready_cb;
  client_watch_.arg = this;
  server_watch_.callback = on_server_ready_cb;
  server_watch_.arg = this;
}

Session::~Session() {
  // The sockets close with the members, after this: their reports stop now.
  worker_.poller().closed(client_watch_);
  worker_.poller().closed(server_watch_);
  if (source_counted_) service_.state->sources.release(client_address_);
}

void Session::start() {
  service_.state->total.fetch_add(1, std::memory_order_relaxed);
  const ProxyTrust& trust = service_.config->accept_proxy_protocol;
  if (trust.enabled && !trust.trusts(client_address_)) {
    refuse(SessionEnd::proxy_untrusted);
    return;
  }
  if (trust.enabled) {
    // The client is a proxy: its header comes first, all of it within a
    // deadline from accept. A timeout on the read event would not do: it
    // restarts with every byte, so a client trickling the header a byte at
    // a time would hold its slot for as long as it liked.
    header_event_.reset(
        event_new(worker_.base(), client_.get(), EV_READ | EV_PERSIST, on_proxy_header_cb, this));
    event_add(header_event_.get(), nullptr);
    header_deadline_.reset(evtimer_new(worker_.base(), on_proxy_header_deadline_cb, this));
    add_with_timeout(header_deadline_.get(), kProxyHeaderTimeout);
    header_deadline_at_ = started_ + kProxyHeaderTimeout;
    return;
  }
  admit();
}

void Session::admit() {
  const ServiceConfig& config = *service_.config;
  if ((!config.allow.empty() && !contains_any(config.allow, client_address_)) ||
      contains_any(config.deny, client_address_)) {
    refuse(SessionEnd::denied);
    return;
  }
  SourceTable& sources = service_.state->sources;
  if (sources.limited()) {
    switch (sources.admit(client_address_, std::chrono::steady_clock::now())) {
      case SourceTable::Verdict::admitted: source_counted_ = true; break;
      case SourceTable::Verdict::untracked: {
        static LogRateLimit full_log(LogLevel::warn, "source table full");
        full_log.write({{"service", config.name},
                        {"client", client_address_.to_string()},
                        {"clients", kSourceTableClients}});
        break;
      }
      case SourceTable::Verdict::over_connections:
      case SourceTable::Verdict::over_rate: refuse(SessionEnd::source_limit); return;
    }
  }
  if (!config.sni_routes.empty()) {
    // The hello, whole, within the connect timeout (a deadline for all of
    // it, as for a PROXY header: bytes trickling in do not extend it).
    header_event_.reset(
        event_new(worker_.base(), client_.get(), EV_READ | EV_PERSIST, on_hello_cb, this));
    event_add(header_event_.get(), nullptr);
    header_deadline_.reset(evtimer_new(worker_.base(), on_hello_deadline_cb, this));
    add_with_timeout(header_deadline_.get(), config.connect_timeout);
    header_deadline_at_ = std::chrono::steady_clock::now() + config.connect_timeout;
    reading_hello_ = true;
    return;
  }
  connect_next();
}

void Session::on_hello_cb(evutil_socket_t, short, void* arg) {
  static_cast<Session*>(arg)->read_hello();
}

void Session::on_hello_deadline_cb(evutil_socket_t, short, void* arg) {
  // No whole hello in time: the client is treated as one without a name.
  static_cast<Session*>(arg)->route_by_hello(ClientHelloScan{});
}

// Reads what came (consumed: it goes to the server first, from the c2s
// pipe) and scans it; waits while it is a prefix of a hello.
void Session::read_hello() {
  uint8_t buffer[4096];
  const size_t room = kMaxClientHello + 1024 - hello_.size();
  const ssize_t n = ::recv(client_.get(), buffer, std::min(room, sizeof buffer), 0);
  if (n < 0) {
    if (would_block(errno) || errno == EINTR) return;
    set_linger_reset(client_.get());
    finish(SessionEnd::client_reset);
    return;
  }
  if (n == 0) {
    finish(SessionEnd::client_close);
    return;
  }
  hello_.insert(hello_.end(), buffer, buffer + n);
  const ClientHelloScan scan = scan_client_hello(hello_);
  if (scan.status == ClientHelloScan::Status::incomplete && hello_.size() < kMaxClientHello + 1024)
    return;
  route_by_hello(scan);
}

// Exact names before wildcards; `*.apps.test` matches one label.
void Session::route_by_hello(const ClientHelloScan& scan) {
  reading_hello_ = false;
  header_event_.reset();
  header_deadline_.reset();
  const ServiceConfig& config = *service_.config;
  const std::string& name =
      scan.status == ClientHelloScan::Status::complete ? scan.server_name : std::string();
  std::optional<size_t> route;
  for (size_t r = 0; r < config.sni_routes.size() && !route && !name.empty(); ++r) {
    for (const std::string& pattern : config.sni_routes[r].names) {
      if (pattern == name) route = r;
    }
  }
  const size_t dot = name.find('.');
  if (!route && dot != std::string::npos) {
    const std::string wildcard = "*" + name.substr(dot);
    for (size_t r = 0; r < config.sni_routes.size() && !route; ++r) {
      for (const std::string& pattern : config.sni_routes[r].names) {
        if (pattern == wildcard) route = r;
      }
    }
  }
  if (!route && config.sni_required) {
    refuse(SessionEnd::no_sni_route);
    return;
  }
  group_ = route ? *route + 1 : 0;
  connect_next();
}

void Session::refuse(SessionEnd end) {
  std::atomic<uint64_t>& counter =
      end == SessionEnd::source_limit ? service_.state->limited : service_.state->denied;
  counter.fetch_add(1, std::memory_order_relaxed);
  set_linger_reset(client_.get());
  finish(end);
}

void Session::on_proxy_header_cb(evutil_socket_t, short, void* arg) {
  static_cast<Session*>(arg)->read_proxy_header();
}

void Session::on_proxy_header_deadline_cb(evutil_socket_t, short, void* arg) {
  static_cast<Session*>(arg)->reject_proxy_header("no complete PROXY header within 3s");
}

// Peeks at what arrived; consumes exactly the header once it is complete
// (the bytes after it belong to the server), and everything while it is not
// (all of it is header then), so a partial header never keeps the socket
// readable with nothing to do.
void Session::read_proxy_header() {
  char buffer[kMaxProxyHeader];
  const size_t room = kMaxProxyHeader - header_bytes_.size();
  const ssize_t n = ::recv(client_.get(), buffer, room, MSG_PEEK);
  if (n < 0) {
    if (would_block(errno) || errno == EINTR) return;
    reject_proxy_header(std::string("reading the PROXY header: ") + errno_string(errno));
    return;
  }
  if (n == 0) {
    reject_proxy_header("connection closed before a complete PROXY header");
    return;
  }
  const std::string seen = header_bytes_ + std::string(buffer, static_cast<size_t>(n));
  const ProxyHeader header = parse_proxy_header(seen);
  if (header.status == ProxyHeader::Status::invalid) {
    reject_proxy_header(header.reason);
    return;
  }
  const size_t take = header.status == ProxyHeader::Status::ok ? header.size - header_bytes_.size()
                                                               : static_cast<size_t>(n);
  if (::recv(client_.get(), buffer, take, 0) != static_cast<ssize_t>(take)) {
    reject_proxy_header("reading the PROXY header failed");
    return;
  }
  if (header.status == ProxyHeader::Status::incomplete) {
    header_bytes_.append(buffer, take);
    if (header_bytes_.size() >= kMaxProxyHeader) reject_proxy_header("PROXY header too long");
    return;
  }
  header_event_.reset();
  header_deadline_.reset();
  header_bytes_.clear();
  if (header.source) {
    peer_address_ = client_address_;
    client_address_ = *header.source;
  }
  admit();
}

void Session::reject_proxy_header(const std::string& reason) {
  service_.state->proxy_header_errors.fetch_add(1, std::memory_order_relaxed);
  // A client sends what it likes: at most kLogLinesPerSecond of these lines.
  static LogRateLimit rejected_log(LogLevel::warn, "PROXY header rejected");
  rejected_log.write({{"service", service_.config->name},
                      {"client", client_address_.to_string()},
                      {"reason", reason}});
  finish(SessionEnd::bad_proxy_header);
}

// Picks a server (never the one that just failed while another is usable),
// takes one of its connection slots and starts a non-blocking connect.
void Session::connect_next() {
  const auto& servers = service_.servers;
  std::optional<uint32_t> index;
  // Servers to pass over: those this session failed on, and any that filled
  // up between pick() and try_acquire(). Allocates only after a failure.
  std::vector<uint32_t> skip = failed_servers_;
  const bool transparent = service_.config->address_mode == AddressMode::transparent;
  for (size_t tries = 0; tries <= servers.size(); ++tries) {
    index =
        service_.groups[group_].pick(PickContext{client_address_, attempt_, skip, worker_.index()});
    if (!index) break;
    const auto& server = servers[*index];
    // Transparent mode speaks from the client's address, so only a server
    // of the client's family can be reached. The loader ensures that unless
    // a PROXY header brought the client address from elsewhere.
    if (transparent && server.config->address.family() != client_address_.family()) {
      skip.push_back(*index);
      index.reset();
      continue;
    }
    if (server.state->try_acquire()) break;
    skip.push_back(*index);
    index.reset();
  }
  if (!index) {
    finish(attempt_ == 0 ? SessionEnd::no_server : last_failure_);
    return;
  }
  server_index_ = index;
  const ServerRuntime& server = servers[*index];
  server_lease_.state = server.state.get();
  server.state->total.fetch_add(1, std::memory_order_relaxed);

  ConnectSource source{service_.config->source ? &*service_.config->source : nullptr, false};
  SocketAddress client_host;  // transparent: the client's IP, the port left to the kernel
  if (transparent) {
    client_host = client_address_.with_port(0);
    source = ConnectSource{&client_host, true};
  }
  if (int error = start_connect(server.config->address, source, server_); error != 0) {
    connect_failed(error);
    return;
  }
  connect_started_ = std::chrono::steady_clock::now();
  // Writable once connected (or failed). This registration stays for the
  // relay, which only changes what it waits for.
  if (int error = worker_.poller().watch(server_.get(), server_watch_, EPOLLOUT); error != 0) {
    connect_failed(error);
    return;
  }
  connecting_ = true;
  if (!timer_) timer_.reset(evtimer_new(worker_.base(), on_timer_cb, this));
  add_with_timeout(timer_.get(), service_.config->connect_timeout);
}

void Session::on_client_ready_cb(void* arg, uint32_t events) {
  static_cast<Session*>(arg)->on_socket_ready(Side::client, events);
}

void Session::on_server_ready_cb(void* arg, uint32_t events) {
  static_cast<Session*>(arg)->on_socket_ready(Side::server, events);
}

// What the worker's Poller reports for one of the two sockets. Runs the
// directions that wait on it, as their own events did before: readable
// wakes the direction reading the socket, writable the one writing to it,
// an error or a hang-up both (libevent's rule). Each socket's registration
// is brought in line with what the directions then wait for once the
// batch of reports has been handled (watches_changed).
void Session::on_socket_ready(Side side, uint32_t events) {
  if (finished_) return;  // ended earlier in the same batch of reports
  if (connecting_) {
    // Only the server socket is in the set while connecting.
    if (side == Side::server) on_connect_ready();
    return;
  }
  const bool broken = (events & (EPOLLERR | EPOLLHUP)) != 0;
  Direction& reads = side == Side::client ? c2s_ : s2c_;
  Direction& writes = side == Side::client ? s2c_ : c2s_;
  if ((broken || (events & EPOLLIN) != 0) && !reads.done && !reads.watching_sink) pump(reads);
  if (finished_) return;
  if ((broken || (events & EPOLLOUT) != 0) && !writes.done && writes.watching_sink) pump(writes);
  if (finished_) return;
  watches_changed();
}

// What the directions wait for may have changed: the registrations follow
// when the Poller's batch ends. A session that finishes before then (its
// other socket's EOF in the same batch, typically) makes no epoll_ctl for
// the change at all: closing its sockets removes them.
void Session::watches_changed() {
  if (watches_pending_) return;
  watches_pending_ = true;
  worker_.poller().after_batch(on_batch_end_cb, this);
}

void Session::on_batch_end_cb(void* arg) {
  auto* self = static_cast<Session*>(arg);
  self->watches_pending_ = false;
  if (!self->finished_) self->update_watches();
}

// What the relay waits for on one socket: readable while the direction
// reading it waits for its source, writable while the direction writing to
// it waits for its sink (backpressure); nothing for a finished direction.
uint32_t Session::wanted_events(Side side) const {
  const Direction& reads = side == Side::client ? c2s_ : s2c_;
  const Direction& writes = side == Side::client ? s2c_ : c2s_;
  uint32_t events = 0;
  if (!reads.done && !reads.watching_sink) events |= EPOLLIN;
  if (!writes.done && writes.watching_sink) events |= EPOLLOUT;
  return events;
}

// One epoll_ctl per socket whose wanted events changed, none otherwise.
// May finish the session (the set refused a change).
void Session::update_watches() {
  Poller& poller = worker_.poller();
  int error = poller.watch(client_.get(), client_watch_, wanted_events(Side::client));
  if (error == 0) error = poller.watch(server_.get(), server_watch_, wanted_events(Side::server));
  if (error != 0) relay_failed_locally(errno_string(error).c_str());
}

void Session::on_connect_ready() {
  const int error = pending_socket_error(server_.get());
  if (error != 0) {
    connect_failed(error);
    return;
  }
  connecting_ = false;
  ServerState& state = *service_.servers[*server_index_].state;
  const auto took = std::chrono::steady_clock::now() - connect_started_;
  state.connect_time_us.fetch_add(
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(took).count()),
      std::memory_order_relaxed);
  state.connects.fetch_add(1, std::memory_order_relaxed);
  if (int error = send_proxy_header(); error != 0) {
    connect_failed(error);
    return;
  }
  start_relay();
}

// The PROXY protocol header, before any client byte. The connection is
// fresh, so its send buffer takes the whole header (at most 108 bytes) at
// once. A send the peer refused (EPIPE, ECONNRESET) is the server's failed
// connect; one that took only part of the header is fulcrum's own shortage
// of buffer space (ENOBUFS: a local error).
int Session::send_proxy_header() {
  const ProxyProtocol version = service_.config->proxy_protocol;
  if (version == ProxyProtocol::none) return 0;
  SocketAddress local;
  local.length = sizeof local.storage;
  if (::getsockname(client_.get(), local.sockaddr_ptr(), &local.length) != 0) return errno;
  const std::string header = version == ProxyProtocol::v1 ? encode_proxy_v1(client_address_, local)
                                                          : encode_proxy_v2(client_address_, local);
  const ssize_t sent = ::send(server_.get(), header.data(), header.size(), MSG_NOSIGNAL);
  if (sent < 0) return errno;
  return static_cast<size_t>(sent) == header.size() ? 0 : ENOBUFS;
}

// An attempt failed. A failure of the server (refused, timed out,
// unreachable, reset before the PROXY header went out) counts against it:
// connect_failures and passive health. A local error (is_local_error:
// fulcrum short of descriptors, memory, buffers or source ports) says
// nothing about the server and is counted apart, as HAProxy keeps
// SF_ERR_RESOURCE apart. Either way the session retries on another server
// while `retries` allows: EADDRNOTAVAIL, the local error a fixed snat
// `source` meets under load, is per destination (the kernel picks the
// source port per server address and port), so another server usually
// still has ports; the others (EMFILE, ENOMEM, ...) fail again at once in
// socket(), holding nothing.
void Session::connect_failed(int error) {
  const ServerRuntime& server = service_.servers[*server_index_];
  const bool local = is_local_error(error);
  if (local) {
    server.state->local_errors.fetch_add(1, std::memory_order_relaxed);
    service_.state->local_errors.fetch_add(1, std::memory_order_relaxed);
  } else {
    server.state->connect_failures.fetch_add(1, std::memory_order_relaxed);
    if (service_.config->health_check.enabled) {
      // Passive detection: the health checker counts this as a failed
      // check, so a dead server leaves rotation even between active checks.
      server.state->passive_error.store(error, std::memory_order_relaxed);
      server.state->passive_failures.fetch_add(1, std::memory_order_relaxed);
      worker_.notify_passive_failure();
    }
  }
  last_failure_ = local ? SessionEnd::local_error : SessionEnd::connect_failed;
  log_warn(local ? "local error" : "connect failed",
           {{"service", service_.config->name},
            {"server", server.config->name},
            {"address", server.config->address.to_string()},
            {"error", errno_string(error)},
            {"attempt", attempt_ + 1}});
  next_attempt();
}

// The attempt on the current server is over: the next server, or the end
// (last_failure_) when `retries` are used up.
void Session::next_attempt() {
  connecting_ = false;
  server_.reset();
  worker_.poller().closed(server_watch_);
  server_lease_.reset();
  failed_servers_.push_back(*server_index_);
  server_index_.reset();
  if (attempt_ >= service_.config->retries) {
    finish(last_failure_);
    return;
  }
  ++attempt_;
  connect_next();
}

void Session::server_marked_down() {
  if (connecting_) {
    // Still connecting: the server takes no new sessions, so this one goes
    // elsewhere now instead of waiting for a connect that may never answer.
    // Not the server's failed connect: nothing is counted against it.
    last_failure_ = SessionEnd::server_down;
    next_attempt();
    return;
  }
  // Relaying: both peers get a reset (as for a peer's reset), so neither
  // takes the cut for a clean end of its stream.
  service_.servers[*server_index_].state->closed_on_down.fetch_add(1, std::memory_order_relaxed);
  set_linger_reset(client_.get());
  set_linger_reset(server_.get());
  finish(SessionEnd::server_down);
}

// Each direction's source and sink: the two sockets, crossed.
void Session::wire_directions() {
  c2s_.source_side = Side::client;
  c2s_.source = client_.get();
  c2s_.sink = server_.get();
  s2c_.source_side = Side::server;
  s2c_.source = server_.get();
  s2c_.sink = client_.get();
}

void Session::start_relay() {
  wire_directions();
  if (!hello_.empty()) {
    // The ClientHello read for sni_routes goes first, unchanged, through
    // the direction's pipe: the relay drains it as any bytes it buffered.
    c2s_.pipe = worker_.pipes().acquire();
    if (!c2s_.pipe ||
        !c2s_.pipe.fill(reinterpret_cast<const char*>(hello_.data()), hello_.size())) {
      service_.state->local_errors.fetch_add(1, std::memory_order_relaxed);
      set_linger_reset(client_.get());
      finish(SessionEnd::local_error);
      return;
    }
    hello_.clear();
    wait_for_sink(c2s_);
  }

  touch();
  add_with_timeout(timer_.get(), service_.config->idle_timeout);  // was the connect timeout
  if (service_.config->max_lifetime.count() > 0) {
    // +-10% jitter, so that sessions opened together (a reconnect storm)
    // do not all end together, and long-lived clients spread over servers
    // added since they connected.
    lifetime_end_ = started_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                   service_.config->max_lifetime * thread_random_between(0.9, 1.1));
    lifetime_timer_.reset(evtimer_new(worker_.base(), on_lifetime_cb, this));
    arm_lifetime_timer();  // never finish() here: the session is still being set up
  }
  // Both directions wait for their source: the client socket joins the
  // set, the server socket's registration turns from writable to readable
  // (start_relay runs in a report's callback: on_connect_ready).
  watches_changed();
}

// Moves bytes source -> sink until one side would block, the direction
// ends, or it has used its share of this loop iteration: small reads through
// a stack buffer (copy_through_buffer), streams source -> pipe -> sink with
// splice; whatever the sink cannot take yet waits in the pipe. Leaves the
// direction waiting for exactly one thing: its sink while the pipe holds
// bytes (and the source is not read: backpressure), else its source; the
// caller (on_socket_ready) applies that to the sockets' registrations.
void Session::pump(Direction& d) {
  uint64_t moved = 0;
  bool read_something = false;
  bool short_read = false;
  while (true) {
    if (d.pipe.bytes > 0) {
      ssize_t n = ::splice(d.pipe.read_fd(), nullptr, d.sink, nullptr, d.pipe.bytes, kSpliceFlags);
      if (n > 0) {
        d.pipe.bytes -= static_cast<size_t>(n);
        d.bytes += static_cast<uint64_t>(n);
        moved += static_cast<uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && would_block(errno)) {
        wait_for_sink(d);
        break;
      }
      // EPIPE, ECONNRESET: the sink's peer is gone.
      reset_from(sink_side(d));
      return;
    }
    if (d.eof) {
      direction_done(d);
      return;
    }
    if (short_read) {
      // The source gave less than asked for, so it is most likely empty.
      // The read event is level-triggered: it fires again if more came, and
      // a splice that would only answer EAGAIN is saved (one system call
      // per message on request/response traffic).
      d.pipe.give_back();
      wait_for_source(d);
      break;
    }
    if (moved >= kBytesPerWakeup) {
      wait_for_source(d);
      break;
    }
    if (!d.pipe) d.pipe = worker_.pipes().acquire();
    if (!d.pipe) {
      // Out of descriptors for a pipe: relay this batch without one.
      copy_without_pipe(d);
      return;
    }
    const size_t asked = d.splicing ? d.pipe.capacity() : std::min(kCopyBytes, d.pipe.capacity());
    const ssize_t n =
        d.splicing ? ::splice(d.source, nullptr, d.pipe.write_fd(), nullptr, asked, kSpliceFlags)
                   : copy_through_buffer(d, asked, moved);
    if (n > 0) {
      if (d.splicing) d.pipe.bytes = static_cast<size_t>(n);
      read_something = true;
      short_read = static_cast<size_t>(n) < asked;
      d.splicing = static_cast<size_t>(n) >= kCopyBytes;
      continue;
    }
    if (n == 0) {
      source_eof(d);
      continue;
    }
    if (n == kPipeRefused) {
      relay_failed_locally("pipe write failed");
      return;
    }
    if (errno == EINTR) continue;
    if (would_block(errno)) {
      // Readable, yet splice moves nothing: the source is at TCP's urgent
      // mark, which splice never crosses. The urgent byte is inline
      // (SO_OOBINLINE); read it like any other and go on.
      if (!read_something && at_urgent_mark(d.source)) {
        const ssize_t urgent = move_urgent_byte(d);
        if (urgent == 1) continue;
        if (urgent == kPipeRefused) {
          relay_failed_locally("pipe write failed");
          return;
        }
        reset_from(d.source_side);
        return;
      }
      d.pipe.give_back();  // empty: an idle direction holds no pipe
      wait_for_source(d);
      break;
    }
    reset_from(d.source_side);
    return;
  }
  if (moved > 0) touch();
}

// One read of at most `size` bytes (what the empty pipe holds) into a stack
// buffer, sent on at once. What the sink does not take now waits in the
// pipe, drained like spliced bytes; that includes a send that failed, so
// the pipe's splice meets the same error and resets the session. Returns
// what recv() returned, or kPipeRefused if the pipe took less than the rest.
ssize_t Session::copy_through_buffer(Direction& d, size_t size, uint64_t& moved) {
  char buffer[kCopyBytes];
  const ssize_t n = ::recv(d.source, buffer, std::min(size, sizeof buffer), 0);
  if (n <= 0) return n;
  const ssize_t sent =
      std::max<ssize_t>(::send(d.sink, buffer, static_cast<size_t>(n), MSG_NOSIGNAL), 0);
  d.bytes += static_cast<uint64_t>(sent);
  moved += static_cast<uint64_t>(sent);
  if (sent < n) {
    const auto rest = static_cast<size_t>(n - sent);
    // The pipe is empty and holds at least `size` bytes: one write takes
    // all, unless the kernel runs out of memory for its pages.
    if (!d.pipe.fill(buffer + sent, rest)) return kPipeRefused;
  }
  return n;
}

// The relay without a pipe, used only while the descriptor budget has none
// to lend: peek at the source, send what the sink takes, then consume exactly
// that much. Nothing is buffered in user space, so backpressure still holds.
void Session::copy_without_pipe(Direction& d) {
  char buffer[16384];
  uint64_t moved = 0;
  while (moved < kBytesPerWakeup) {
    ssize_t n = ::recv(d.source, buffer, sizeof buffer, MSG_PEEK);
    if (n == 0) {
      source_eof(d);
      direction_done(d);
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (would_block(errno)) {
        wait_for_source(d);
        break;
      }
      reset_from(d.source_side);
      return;
    }
    ssize_t sent = ::send(d.sink, buffer, static_cast<size_t>(n), MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (would_block(errno)) {
        wait_for_sink(d);
        break;
      }
      reset_from(sink_side(d));
      return;
    }
    // These bytes were peeked, so they are there to be consumed.
    ::recv(d.source, buffer, static_cast<size_t>(sent), 0);
    d.bytes += static_cast<uint64_t>(sent);
    moved += static_cast<uint64_t>(sent);
  }
  if (moved >= kBytesPerWakeup) wait_for_source(d);
  if (moved > 0) touch();
}

bool Session::at_urgent_mark(int fd) {
  int at_mark = 0;
  return ::ioctl(fd, SIOCATMARK, &at_mark) == 0 && at_mark != 0;
}

// Reads the inline urgent byte into the (empty) pipe. Returns what recv()
// returned, or kPipeRefused.
ssize_t Session::move_urgent_byte(Direction& d) {
  char byte;
  const ssize_t n = ::recv(d.source, &byte, 1, 0);
  if (n != 1) return n;
  return d.pipe.fill(&byte, 1) ? 1 : kPipeRefused;
}

void Session::source_eof(Direction& d) {
  d.eof = true;
  if (!first_close_) {
    first_close_ =
        d.source_side == Side::client ? SessionEnd::client_close : SessionEnd::server_close;
  }
}

// The source ended and everything it sent was delivered: pass the FIN on.
void Session::direction_done(Direction& d) {
  d.done = true;
  d.pipe.give_back();
  touch();
  if (c2s_.done && s2c_.done) {
    // Both directions ended, so both receive queues are empty: closing the
    // sockets now sends the FIN (not a reset), and a shutdown() first would
    // be one more system call for the same packet.
    finish(*first_close_);
    return;
  }
  ::shutdown(d.sink, SHUT_WR);
}

void Session::touch() {
  last_activity_ = std::chrono::steady_clock::now();
  if (last_activity_ - last_publish_ >= std::chrono::seconds(1)) publish_bytes();
}

void Session::publish_bytes() {
  last_publish_ = last_activity_;
  const uint64_t in = c2s_.bytes - published_in_;
  const uint64_t out = s2c_.bytes - published_out_;
  if (in == 0 && out == 0) return;
  published_in_ = c2s_.bytes;
  published_out_ = s2c_.bytes;
  service_.state->bytes_in.fetch_add(in, std::memory_order_relaxed);
  service_.state->bytes_out.fetch_add(out, std::memory_order_relaxed);
  if (server_index_) {
    service_.servers[*server_index_].state->bytes_in.fetch_add(in, std::memory_order_relaxed);
    service_.servers[*server_index_].state->bytes_out.fetch_add(out, std::memory_order_relaxed);
  }
}

void Session::on_timer_cb(evutil_socket_t, short, void* arg) {
  static_cast<Session*>(arg)->on_timer();
}

void Session::on_timer() {
  if (connecting_) {
    connect_failed(ETIMEDOUT);
    return;
  }
  on_idle_timer();
}

void Session::on_lifetime_cb(evutil_socket_t, short, void* arg) {
  static_cast<Session*>(arg)->on_lifetime_timer();
}

// A worker's timers run on libevent's coarse clock, which lags the precise
// one by up to a tick (1 to 4 ms): a timer may fire that much early. The
// session ends only once its lifetime has passed on the precise clock;
// before that the timer is re-armed for the rest, rounded up.
void Session::on_lifetime_timer() {
  if (std::chrono::steady_clock::now() < lifetime_end_) {
    arm_lifetime_timer();
    return;
  }
  finish(SessionEnd::max_lifetime);
}

// For what is left of the lifetime, rounded up (0 when it is over).
void Session::arm_lifetime_timer() {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(lifetime_end_ -
                                                                 std::chrono::steady_clock::now());
  add_with_timeout(lifetime_timer_.get(), std::max(left, std::chrono::milliseconds(0)));
}

// The timer is armed for the full idle period and re-armed for what remains
// since the last byte, so moving bytes never touches the timer heap.
void Session::on_idle_timer() {
  const auto idle = service_.config->idle_timeout;
  const auto quiet = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - last_activity_);
  if (quiet >= idle) {
    finish(SessionEnd::idle_timeout);
    return;
  }
  add_with_timeout(timer_.get(), idle - quiet);
}

// The relay itself failed: a pipe refused bytes it had room for (the kernel,
// or the memory cgroup, is out of memory), or the worker's epoll set refused
// a change (ENOMEM, or ENOSPC: fs.epoll.max_user_watches); `what` says
// which. Bytes already taken from the source cannot all be delivered, so
// both peers get a reset, never a clean end of a truncated stream.
// fulcrum's failure, not either peer's: counted as a local error of the
// service and the server, end=local_error.
void Session::relay_failed_locally(const char* what) {
  const ServerRuntime& server = service_.servers[*server_index_];
  server.state->local_errors.fetch_add(1, std::memory_order_relaxed);
  service_.state->local_errors.fetch_add(1, std::memory_order_relaxed);
  log_warn("local error", {{"service", service_.config->name},
                           {"server", server.config->name},
                           {"address", server.config->address.to_string()},
                           {"error", what}});
  set_linger_reset(client_.get());
  set_linger_reset(server_.get());
  finish(SessionEnd::local_error);
}

// `side` reset its connection (or failed hard): reset the other side too, so
// the peer sees an abort and never a clean end of a truncated stream.
void Session::reset_from(Side side) {
  set_linger_reset(side == Side::client ? server_.get() : client_.get());
  finish(side == Side::client ? SessionEnd::client_reset : SessionEnd::server_reset);
}

// Accounts and logs the session, stops all its events and hands it to the
// worker, which destroys it (closing the sockets) before the loop iteration
// ends. Callers return right after.
void Session::finish(SessionEnd end) {
  finished_ = true;
  const uint64_t bytes_in = c2s_.bytes;
  const uint64_t bytes_out = s2c_.bytes;
  publish_bytes();
  const ServerRuntime* server = server_index_ ? &service_.servers[*server_index_] : nullptr;
  // Only sessions no server could take: a client that gave up or sent a
  // bad PROXY header is not a rejection, nor a relay that failed later.
  const bool rejected = end == SessionEnd::no_server || end == SessionEnd::connect_failed ||
                        end == SessionEnd::local_error;
  if (rejected && server == nullptr)
    service_.state->rejected.fetch_add(1, std::memory_order_relaxed);
  if (end == SessionEnd::shutdown || end == SessionEnd::idle_timeout ||
      end == SessionEnd::max_lifetime) {
    // Cut off by fulcrum: a peer whose incoming stream was not finished gets
    // a reset, so a truncated stream never looks like a clean end.
    if (!s2c_.done) set_linger_reset(client_.get());
    if (server_ && !c2s_.done) set_linger_reset(server_.get());
  }
  if (snapshot_->config.global.access_log && Log::enabled(LogLevel::info)) {
    const auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started_);
    // Refused clients come as fast as anyone can connect: their lines are
    // rate-limited, with a summary of those left out.
    static LogRateLimit refused_log(LogLevel::info, "session");
    const bool refused = end == SessionEnd::denied || end == SessionEnd::source_limit ||
                         end == SessionEnd::proxy_untrusted || end == SessionEnd::no_sni_route;
    const auto write = [refused](std::initializer_list<LogField> fields) {
      if (refused) {
        refused_log.write(fields);
      } else {
        log_info("session", fields);
      }
    };
    const std::string client = client_address_.to_string();
    const std::string server_addr = server ? server->config->address.to_string() : "-";
    const std::string_view server_name = server ? std::string_view(server->config->name) : "-";
    const auto duration_ms = static_cast<int64_t>(duration.count());
    if (peer_address_) {
      write({{"service", service_.config->name},
             {"client", client},
             {"peer", peer_address_->to_string()},
             {"server", server_name},
             {"server_addr", server_addr},
             {"bytes_in", bytes_in},
             {"bytes_out", bytes_out},
             {"duration_ms", duration_ms},
             {"end", to_string(end)}});
    } else {
      write({{"service", service_.config->name},
             {"client", client},
             {"server", server_name},
             {"server_addr", server_addr},
             {"bytes_in", bytes_in},
             {"bytes_out", bytes_out},
             {"duration_ms", duration_ms},
             {"end", to_string(end)}});
    }
  }
  header_event_.reset();
  header_deadline_.reset();
  timer_.reset();
  lifetime_timer_.reset();
  // The sockets stay in the worker's epoll set until the worker closes
  // them, right after the current callback: no epoll_ctl for that.
  worker_.session_finished(this);
}

}  // namespace fulcrum
