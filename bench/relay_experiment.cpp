// relay_experiment: a minimal single-threaded TCP relay, used only to
// measure whether batched submission with io_uring, or sockmap redirection
// in the kernel, lowers the CPU cost of a small keep-alive message compared
// with a level-triggered epoll loop doing one recv + one send per message
// (what fulcrum's Session does). Never used by the daemon. See
// bench/README.md and docs/performance.md ("Experiment: batched submission
// with io_uring", "Experiment: sockmap redirection").
//
//   relay_experiment --mode epoll|uring|sockmap [--uring-flags plain|coop|defer|sqpoll]
//                    [--poll-first] [--sockmap-attach stream|verdict] [--bpf-object PATH]
//                    --listen 127.0.0.1:PORT --backend 127.0.0.1:PORT
//
// The uring mode is compiled in only when liburing was found
// (RELAY_HAVE_URING), the sockmap mode only when libbpf and clang were
// (RELAY_HAVE_SOCKMAP); the epoll mode always.
//
// Both modes do the same work per message: one receive of up to 16 KiB into
// the direction's own buffer, then a send of what arrived; a direction reads
// again only once everything it received has been sent. Each accepted client
// gets one connection to the backend; when either side ends (EOF or error)
// both are closed. Only the interface differs: epoll_wait + recv + send
// system calls, or SQEs submitted together after each batch of completions.
//
// The sockmap mode does not relay in user space at all: both sockets of a
// session go into a BPF SOCKHASH whose stream-verdict program
// (relay_sockmap.bpf.c) redirects every skb a socket receives to the other
// socket's egress; user space only accepts, connects, and closes both
// sockets when either reports its end.

#include <arpa/inet.h>
#include <fcntl.h>
#ifdef RELAY_HAVE_URING
#include <liburing.h>
#endif
#ifdef RELAY_HAVE_SOCKMAP
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#endif
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "fulcrum/fd.hpp"

namespace {

using fulcrum::Fd;

constexpr size_t kBufferSize = 16 * 1024;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "relay_experiment: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void usage(const char* message) {
  std::fprintf(stderr,
               "relay_experiment: %s\n"
               "usage: relay_experiment --mode epoll|uring|sockmap"
               " [--uring-flags plain|coop|defer|sqpoll] [--poll-first]"
               " [--sockmap-attach stream|verdict] [--bpf-object PATH]"
               " --listen IP:PORT --backend IP:PORT\n",
               message);
  std::exit(2);
}

sockaddr_in parse_address(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) usage("address must be IP:PORT");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  const std::string ip(text.substr(0, colon));
  const int port = std::atoi(std::string(text.substr(colon + 1)).c_str());
  if (inet_pton(AF_INET, ip.c_str(), &address.sin_addr) != 1 || port <= 0 || port > 65535) {
    usage("address must be IPv4:PORT");
  }
  address.sin_port = htons(static_cast<uint16_t>(port));
  return address;
}

void set_nodelay(int fd) {
  // Small messages go out at once, as in fulcrum, HAProxy and nginx.
  const int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) die("TCP_NODELAY");
}

Fd listen_on(const sockaddr_in& address, bool nonblocking) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
  if (fd.get() < 0) die("socket");
  const int one = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("SO_REUSEADDR");
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) < 0) die("bind");
  if (listen(fd.get(), 1024) < 0) die("listen");
  return fd;
}

// The backend connection is made with a blocking connect() in both modes:
// on loopback the handshake completes inside the call, and it happens once
// per session, outside the per-message path being measured. Returns an
// invalid Fd if the backend refuses.
Fd connect_backend(const sockaddr_in& backend) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) die("socket");
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&backend), sizeof backend) < 0) {
    std::fprintf(stderr, "relay_experiment: connect to backend: %s\n", std::strerror(errno));
    return {};
  }
  set_nodelay(fd.get());
  return fd;
}

void set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) die("O_NONBLOCK");
}

// ---------------------------------------------------------------- epoll

namespace epoll_mode {

struct Session;

// What an epoll event points at: one socket of a session.
struct Endpoint {
  Session* session;
  int side;  // 0 client, 1 backend
};

// Bytes received from socket `side` that still have to go to the other one.
struct Direction {
  std::array<char, kBufferSize> buffer;
  size_t length = 0;  // received
  size_t sent = 0;    // of those, sent
  bool pending() const { return sent < length; }
};

struct Session {
  std::array<Fd, 2> sockets;
  std::array<Endpoint, 2> endpoints;
  std::array<Direction, 2> directions;  // [side]: from sockets[side] to the other
  std::array<uint32_t, 2> interest{};   // events registered per socket
  bool closed = false;
};

class Relay {
 public:
  Relay(const sockaddr_in& listen_address, const sockaddr_in& backend)
      : backend_(backend),
        listener_(listen_on(listen_address, true)),
        epoll_(epoll_create1(EPOLL_CLOEXEC)) {
    if (epoll_.get() < 0) die("epoll_create1");
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = nullptr;  // the listener
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &event) < 0) die("epoll_ctl");
  }

  [[noreturn]] void run() {
    std::array<epoll_event, 256> events;
    for (;;) {
      const int count = epoll_wait(epoll_.get(), events.data(), events.size(), -1);
      if (count < 0) {
        if (errno == EINTR) continue;
        die("epoll_wait");
      }
      for (int i = 0; i < count; ++i) {
        if (events[i].data.ptr == nullptr) {
          accept_all();
          continue;
        }
        const auto* endpoint = static_cast<Endpoint*>(events[i].data.ptr);
        handle(*endpoint->session, endpoint->side, events[i].events);
      }
      // A session closed in this batch may still have had events later in
      // it (they point at it), so it is freed only once the batch is done.
      graveyard_.clear();
    }
  }

 private:
  void accept_all() {
    for (;;) {
      Fd client(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (client.get() < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
        die("accept4");
      }
      set_nodelay(client.get());
      Fd server = connect_backend(backend_);
      if (server.get() < 0) continue;  // the client is closed
      set_nonblocking(client.get());
      set_nonblocking(server.get());
      auto session = std::make_unique<Session>();
      session->sockets[0] = std::move(client);
      session->sockets[1] = std::move(server);
      for (int side = 0; side < 2; ++side) {
        session->endpoints[side] = Endpoint{session.get(), side};
        session->interest[side] = EPOLLIN;
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.ptr = &session->endpoints[side];
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, session->sockets[side].get(), &event) < 0) {
          die("epoll_ctl");
        }
      }
      sessions_.insert(session.release());
    }
  }

  void handle(Session& session, int side, uint32_t events) {
    if (session.closed) return;
    // Readable: this socket's outgoing direction. On EPOLLHUP/EPOLLERR the
    // recv (or send) below reports the end.
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && (session.interest[side] & EPOLLIN)) {
      if (!relay(session, side)) return close(session);
    }
    // Writable: the direction that has bytes waiting for this socket.
    if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && (session.interest[side] & EPOLLOUT)) {
      if (!flush(session, 1 - side)) return close(session);
    }
    update_interest(session);
  }

  // One receive from sockets[from] and one send of what arrived. False when
  // the session ends.
  bool relay(Session& session, int from) {
    Direction& direction = session.directions[from];
    const ssize_t received =
        recv(session.sockets[from].get(), direction.buffer.data(), kBufferSize, 0);
    if (received == 0) return false;
    if (received < 0) return errno == EAGAIN || errno == EINTR;
    direction.length = static_cast<size_t>(received);
    direction.sent = 0;
    return flush(session, from);
  }

  // Sends what direction `from` still holds; what the socket does not take
  // waits for EPOLLOUT (update_interest).
  bool flush(Session& session, int from) {
    Direction& direction = session.directions[from];
    while (direction.pending()) {
      const ssize_t sent =
          send(session.sockets[1 - from].get(), direction.buffer.data() + direction.sent,
               direction.length - direction.sent, MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno == EAGAIN) return true;
        if (errno == EINTR) continue;
        return false;
      }
      direction.sent += static_cast<size_t>(sent);
    }
    direction.length = direction.sent = 0;
    return true;
  }

  // A socket is read while its direction holds nothing, and watched for
  // writability while the other direction holds bytes for it. epoll_ctl
  // only when that changes (never in the steady state of small messages).
  void update_interest(Session& session) {
    for (int side = 0; side < 2; ++side) {
      uint32_t wanted = 0;
      if (!session.directions[side].pending()) wanted |= EPOLLIN;
      if (session.directions[1 - side].pending()) wanted |= EPOLLOUT;
      if (wanted == session.interest[side]) continue;
      epoll_event event{};
      event.events = wanted;
      event.data.ptr = &session.endpoints[side];
      if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, session.sockets[side].get(), &event) < 0) {
        die("epoll_ctl");
      }
      session.interest[side] = wanted;
    }
  }

  void close(Session& session) {
    // close() removes the sockets from the epoll set (no other copies).
    session.closed = true;
    session.sockets[0].reset();
    session.sockets[1].reset();
    sessions_.erase(&session);
    graveyard_.emplace_back(&session);
  }

  sockaddr_in backend_;
  Fd listener_;
  Fd epoll_;
  std::unordered_set<Session*> sessions_;  // owned; freed through graveyard_
  std::vector<std::unique_ptr<Session>> graveyard_;
};

}  // namespace epoll_mode

// ---------------------------------------------------------------- io_uring

#ifdef RELAY_HAVE_URING
namespace uring_mode {

enum class Flags { plain, coop, defer, sqpoll };

// Owns the ring.
class Ring {
 public:
  Ring(unsigned entries, Flags flags) {
    io_uring_params params{};
    switch (flags) {
      case Flags::plain: break;
      // Completions' task work runs when the task next enters the kernel
      // instead of interrupting it.
      case Flags::coop:
        params.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER;
        break;
      // Task work runs only inside io_uring_enter(GETEVENTS), i.e. in
      // io_uring_submit_and_wait: completions are batched there.
      case Flags::defer:
        params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        break;
      // A kernel thread polls the submission queue (burns a CPU; measured
      // only as a labelled extra).
      case Flags::sqpoll:
        params.flags = IORING_SETUP_SQPOLL;
        params.sq_thread_idle = 1000;
        break;
    }
    const int result = io_uring_queue_init_params(entries, &ring_, &params);
    if (result < 0) {
      errno = -result;
      die("io_uring_queue_init_params");
    }
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() { io_uring_queue_exit(&ring_); }

  io_uring* get() { return &ring_; }

  // A free SQE; if the submission queue is full, what is in it is submitted
  // first (never happens with the sizes used here, but must not fail).
  io_uring_sqe* sqe() {
    io_uring_sqe* entry = io_uring_get_sqe(&ring_);
    while (entry == nullptr) {
      const int result = io_uring_submit(&ring_);
      if (result < 0 && result != -EINTR && result != -EAGAIN && result != -EBUSY) {
        errno = -result;
        die("io_uring_submit");
      }
      entry = io_uring_get_sqe(&ring_);
    }
    return entry;
  }

 private:
  io_uring ring_{};
};

struct Session;

// One direction of a session; it has exactly one operation in flight at a
// time (a receive, or a send of what the receive brought), so the direction
// itself is the operation's user_data.
struct Direction {
  Session* session = nullptr;
  int from = -1;
  int to = -1;
  bool sending = false;
  size_t length = 0;
  size_t sent = 0;
  std::array<char, kBufferSize> buffer;
};

struct Session {
  std::array<Fd, 2> sockets;  // client, backend
  std::array<Direction, 2> directions;
  int in_flight = 0;
  bool ending = false;
};

class Relay {
 public:
  Relay(const sockaddr_in& listen_address, const sockaddr_in& backend, Flags flags, bool poll_first)
      : backend_(backend),
        listener_(listen_on(listen_address, false)),
        ring_(4096, flags),
        poll_first_(poll_first) {}

  [[noreturn]] void run() {
    arm_accept();
    for (;;) {
      // Everything prepared while handling the last batch goes to the kernel
      // in this one call, which also waits for the next completion.
      const int result = io_uring_submit_and_wait(ring_.get(), 1);
      if (result < 0 && result != -EINTR && result != -EAGAIN && result != -EBUSY) {
        errno = -result;
        die("io_uring_submit_and_wait");
      }
      unsigned head;
      unsigned seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(ring_.get(), head, cqe) {
        ++seen;
        complete(io_uring_cqe_get_data(cqe), cqe->res, cqe->flags);
      }
      io_uring_cq_advance(ring_.get(), seen);
    }
  }

 private:
  // The accept's user_data is null; every other one is a Direction*.

  void arm_accept() {
    // Multishot: one SQE keeps accepting until the kernel drops it (a CQE
    // without IORING_CQE_F_MORE), then it is armed again.
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_multishot_accept(sqe, listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, nullptr);
  }

  void complete(void* user_data, int result, unsigned flags) {
    if (user_data == nullptr) {
      if (!(flags & IORING_CQE_F_MORE)) arm_accept();
      if (result >= 0) start_session(Fd(result));
      return;
    }
    auto* direction = static_cast<Direction*>(user_data);
    Session& session = *direction->session;
    --session.in_flight;
    if (session.ending || result <= 0) {
      // EOF, an error, or the shutdown() of end() cancelling what was in
      // flight: the session ends once nothing refers to it any more.
      end(session);
      return;
    }
    if (direction->sending) {
      direction->sent += static_cast<size_t>(result);
      if (direction->sent < direction->length) {
        send(*direction);  // the rest of a partial send
      } else {
        receive(*direction);
      }
    } else {
      direction->length = static_cast<size_t>(result);
      direction->sent = 0;
      send(*direction);
    }
  }

  void start_session(Fd client) {
    set_nodelay(client.get());
    Fd server = connect_backend(backend_);
    if (server.get() < 0) return;  // the client is closed
    auto* session = new Session;
    session->sockets[0] = std::move(client);
    session->sockets[1] = std::move(server);
    for (int side = 0; side < 2; ++side) {
      Direction& direction = session->directions[side];
      direction.session = session;
      direction.from = session->sockets[side].get();
      direction.to = session->sockets[1 - side].get();
      receive(direction);
    }
  }

  void receive(Direction& direction) {
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_recv(sqe, direction.from, direction.buffer.data(), kBufferSize, 0);
    // After its send completed, a direction's next message is usually not
    // there yet (request/response): POLL_FIRST skips the receive attempt
    // that would only find the socket empty.
    if (poll_first_) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    io_uring_sqe_set_data(sqe, &direction);
    direction.sending = false;
    ++direction.session->in_flight;
  }

  void send(Direction& direction) {
    io_uring_sqe* sqe = ring_.sqe();
    io_uring_prep_send(sqe, direction.to, direction.buffer.data() + direction.sent,
                       direction.length - direction.sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, &direction);
    direction.sending = true;
    ++direction.session->in_flight;
  }

  void end(Session& session) {
    if (!session.ending) {
      // The other direction's receive (or send) is still in flight and
      // refers to the session: shutdown() makes it complete at once, and the
      // sockets are closed and the session freed when it has.
      session.ending = true;
      shutdown(session.sockets[0].get(), SHUT_RDWR);
      shutdown(session.sockets[1].get(), SHUT_RDWR);
    }
    if (session.in_flight == 0) delete &session;  // the Fds close the sockets
  }

  sockaddr_in backend_;
  Fd listener_;
  Ring ring_;
  bool poll_first_;
};

}  // namespace uring_mode
#endif  // RELAY_HAVE_URING

// ---------------------------------------------------------------- sockmap

#ifdef RELAY_HAVE_SOCKMAP
namespace sockmap_mode {

enum class Attach { stream, verdict };

struct ObjectCloser {
  void operator()(bpf_object* object) const { bpf_object__close(object); }
};

// The loaded BPF object (program and SOCKHASH); closing it (or the process
// exiting) releases both, and the map with them detaches the program: no
// pinned objects are left behind.
class Redirector {
 public:
  Redirector(const std::string& path, Attach attach) {
    object_.reset(bpf_object__open_file(path.c_str(), nullptr));
    if (!object_) die("bpf_object__open_file");
    if (const int result = bpf_object__load(object_.get()); result < 0) {
      errno = -result;
      die("bpf_object__load (needs CAP_BPF and CAP_NET_ADMIN)");
    }
    bpf_program* program = bpf_object__find_program_by_name(object_.get(), "relay_verdict");
    bpf_map* map = bpf_object__find_map_by_name(object_.get(), "peers");
    if (program == nullptr || map == nullptr) die("relay_verdict or peers not in the BPF object");
    map_fd_ = bpf_map__fd(map);
    // stream: BPF_SK_SKB_STREAM_VERDICT without a parser program (each skb
    // is one message, through the strparser's read path). verdict:
    // BPF_SK_SKB_VERDICT (Linux 5.13+), which skips the strparser and
    // runs the program straight from the socket's data_ready.
    const bpf_attach_type type =
        attach == Attach::stream ? BPF_SK_SKB_STREAM_VERDICT : BPF_SK_SKB_VERDICT;
    if (const int result = bpf_prog_attach(bpf_program__fd(program), map_fd_, type, 0);
        result < 0) {
      errno = -result;
      die("bpf_prog_attach");
    }
  }

  // Each socket is stored under the other's cookie (relay_sockmap.bpf.c).
  // Returns false if the kernel refuses (e.g. a socket already closed).
  bool pair(int client, int server) {
    const uint64_t client_cookie = cookie(client);
    const uint64_t server_cookie = cookie(server);
    const auto client_value = static_cast<uint64_t>(client);
    const auto server_value = static_cast<uint64_t>(server);
    if (bpf_map_update_elem(map_fd_, &client_cookie, &server_value, BPF_NOEXIST) < 0 ||
        bpf_map_update_elem(map_fd_, &server_cookie, &client_value, BPF_NOEXIST) < 0) {
      std::fprintf(stderr, "relay_experiment: sockhash update: %s\n", std::strerror(errno));
      return false;
    }
    return true;
  }

 private:
  static uint64_t cookie(int fd) {
    uint64_t value = 0;
    socklen_t length = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &value, &length) < 0) die("SO_COOKIE");
    return value;
  }

  std::unique_ptr<bpf_object, ObjectCloser> object_;
  int map_fd_ = -1;
};

// An epoll event points at the session itself: whichever socket reports,
// the session ends.
struct Session {
  std::array<Fd, 2> sockets;  // client, backend
  bool closed = false;
};

class Relay {
 public:
  Relay(const sockaddr_in& listen_address, const sockaddr_in& backend, const std::string& object,
        Attach attach)
      : backend_(backend),
        redirector_(object, attach),
        listener_(listen_on(listen_address, true)),
        epoll_(epoll_create1(EPOLL_CLOEXEC)) {
    if (epoll_.get() < 0) die("epoll_create1");
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.ptr = nullptr;  // the listener
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &event) < 0) die("epoll_ctl");
  }

  [[noreturn]] void run() {
    std::array<epoll_event, 256> events;
    for (;;) {
      const int count = epoll_wait(epoll_.get(), events.data(), events.size(), -1);
      if (count < 0) {
        if (errno == EINTR) continue;
        die("epoll_wait");
      }
      for (int i = 0; i < count; ++i) {
        if (events[i].data.ptr == nullptr) {
          accept_all();
          continue;
        }
        handle(*static_cast<Session*>(events[i].data.ptr));
      }
      graveyard_.clear();  // as in the epoll mode: events of this batch may point at them
    }
  }

 private:
  void accept_all() {
    for (;;) {
      Fd client(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (client.get() < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
        die("accept4");
      }
      set_nodelay(client.get());
      Fd server = connect_backend(backend_);
      if (server.get() < 0) continue;  // the client is closed
      set_nonblocking(server.get());
      if (!redirector_.pair(client.get(), server.get())) continue;  // both closed
      // What a socket received before it had a psock (a request sent by the
      // client before the accept) sits in its receive queue, and the psock
      // looks at the queue only when more data arrives: a client that sent
      // its request and waits would wait for ever (seen: the first request
      // of a connection hung). Setting SO_RCVLOWAT makes TCP call the
      // socket's data_ready now (tcp_set_rcvlowat -> tcp_data_ready), i.e.
      // the psock's, which takes the queue in order and redirects it.
      const int one = 1;
      for (const Fd* socket : {&client, &server}) {
        if (setsockopt(socket->get(), SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one) < 0) {
          die("SO_RCVLOWAT");
        }
      }
      auto session = std::make_unique<Session>();
      session->sockets[0] = std::move(client);
      session->sockets[1] = std::move(server);
      for (const Fd& socket : session->sockets) {
        // Only the end is watched: a FIN (EPOLLRDHUP), an error or a reset
        // (EPOLLERR, EPOLLHUP: always reported). Not EPOLLIN: a received
        // message sits in the socket's receive queue until the psock takes
        // it, and meanwhile the socket polls readable but recv() finds
        // nothing (the psock owns the queue). Level-triggered EPOLLIN made
        // this loop spin: about 20 epoll_wait and 20 failing recv calls per
        // request (strace -c), each taking the socket lock the psock needs.
        epoll_event event{};
        event.events = EPOLLRDHUP;
        event.data.ptr = session.get();
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, socket.get(), &event) < 0) {
          die("epoll_ctl");
        }
      }
      sessions_.insert(session.release());
    }
  }

  // Any event is the end of one side (see accept_all): both are closed.
  void handle(Session& session) {
    if (!session.closed) close(session);
  }

  void close(Session& session) {
    // close() takes each socket out of the sockhash (and the epoll set).
    session.closed = true;
    session.sockets[0].reset();
    session.sockets[1].reset();
    sessions_.erase(&session);
    graveyard_.emplace_back(&session);
  }

  sockaddr_in backend_;
  Redirector redirector_;
  Fd listener_;
  Fd epoll_;
  std::unordered_set<Session*> sessions_;  // owned; freed through graveyard_
  std::vector<std::unique_ptr<Session>> graveyard_;
};

}  // namespace sockmap_mode
#endif  // RELAY_HAVE_SOCKMAP

}  // namespace

int main(int argc, char** argv) {
  std::string mode;
  std::string listen_text;
  std::string backend_text;
  std::string flags_text = "plain";
  std::string attach_text = "stream";
#ifdef RELAY_SOCKMAP_BPF_OBJECT
  std::string bpf_object = RELAY_SOCKMAP_BPF_OBJECT;  // where meson built it
#else
  std::string bpf_object;
#endif
  [[maybe_unused]] bool poll_first = false;  // uring only
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--poll-first") {
      poll_first = true;
      continue;
    }
    if (i + 1 >= argc) usage("missing value");
    if (arg == "--mode") {
      mode = argv[++i];
    } else if (arg == "--listen") {
      listen_text = argv[++i];
    } else if (arg == "--backend") {
      backend_text = argv[++i];
    } else if (arg == "--uring-flags") {
      flags_text = argv[++i];
    } else if (arg == "--sockmap-attach") {
      attach_text = argv[++i];
    } else if (arg == "--bpf-object") {
      bpf_object = argv[++i];
    } else {
      usage("unknown option");
    }
  }
  if (listen_text.empty() || backend_text.empty()) usage("--listen and --backend are required");
  const sockaddr_in listen_address = parse_address(listen_text);
  const sockaddr_in backend = parse_address(backend_text);
  std::signal(SIGPIPE, SIG_IGN);  // MSG_NOSIGNAL everywhere; this is a safety net

  if (mode == "epoll") {
    epoll_mode::Relay relay(listen_address, backend);
    relay.run();
  }
#ifdef RELAY_HAVE_URING
  if (mode == "uring") {
    uring_mode::Flags flags;
    if (flags_text == "plain") {
      flags = uring_mode::Flags::plain;
    } else if (flags_text == "coop") {
      flags = uring_mode::Flags::coop;
    } else if (flags_text == "defer") {
      flags = uring_mode::Flags::defer;
    } else if (flags_text == "sqpoll") {
      flags = uring_mode::Flags::sqpoll;
    } else {
      usage("--uring-flags must be plain, coop, defer or sqpoll");
    }
    uring_mode::Relay relay(listen_address, backend, flags, poll_first);
    relay.run();
  }
#endif
#ifdef RELAY_HAVE_SOCKMAP
  if (mode == "sockmap") {
    if (attach_text != "stream" && attach_text != "verdict") {
      usage("--sockmap-attach must be stream or verdict");
    }
    sockmap_mode::Relay relay(
        listen_address, backend, bpf_object,
        attach_text == "stream" ? sockmap_mode::Attach::stream : sockmap_mode::Attach::verdict);
    relay.run();
  }
#endif
  usage("--mode must be epoll, uring (if built with liburing) or sockmap (if built with libbpf)");
}
