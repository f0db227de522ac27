// The socket of one server's TCP checks, kept from one check to the next.
// Each check is still a connection of its own (a new source port, new
// sequence numbers), but the socket is not: connect(AF_UNSPEC) ends the
// connection with a reset and leaves the socket ready to connect again.
// The socket also stays registered with the event loop, edge-triggered,
// for reading and writing. That spares the kernel a socket's creation and
// release and two epoll_ctl calls per check (four for send/expect): about
// a quarter of what a connect check costs (bench/README.md). The socket is
// held between checks, within the one descriptor per checked server that
// the descriptor budget keeps apart (runtime/admission.cpp).
#pragma once

#include <event2/event.h>

#include "fulcrum/address.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"

namespace fulcrum {

class CheckSocket {
 public:
  // How the connections are made, the same for every check of the socket.
  // `source`: the address to connect from (null: the kernel's choice); what
  // it points to must outlive the socket.
  // `delay_ack`: for a check that needs nothing past the server's SYN-ACK.
  // The last ACK of the handshake is delayed (TCP_QUICKACK off), so that the
  // reset sent as soon as the connect completes reaches the server before
  // that ACK: the server's kernel drops the half-open connection and its
  // application never accepts it, nor logs a reset (as with HAProxy's
  // connect checks). The socket has the relay options either way.
  // `on_io(fd, what, arg)` is called on `base` whenever the socket may have
  // changed: edge-triggered, so each caller reads and writes until EAGAIN.
  // Some calls concern no connection (the end of the last one): the
  // caller's state tells.
  CheckSocket(event_base* base, const SocketAddress* source, bool delay_ack,
              event_callback_fn on_io, void* arg)
      : base_(base), source_(source), delay_ack_(delay_ack), on_io_(on_io), arg_(arg) {}

  // Starts a connect to `destination` (non-blocking). Returns 0, or errno
  // when it failed at once.
  int connect(const SocketAddress& destination);
  // After an on_io call while connecting: 0 when connected, EINPROGRESS
  // while still connecting, else the connect's errno.
  int connect_result() const;
  // Ends the connection, if any, with a reset: neither side keeps it in
  // TIME_WAIT (a thousand servers checked every second would hold some
  // 60,000 such sockets). The socket stays for the next connect.
  void reset();

  int fd() const { return fd_.get(); }

 private:
  int open(const SocketAddress& destination);
  void close();

  event_base* base_;
  const SocketAddress* source_;
  bool delay_ack_;
  event_callback_fn on_io_;
  void* arg_;
  Fd fd_;
  EventPtr io_;  // on fd_; declared after it, so removed from the loop before it closes
};

}  // namespace fulcrum
