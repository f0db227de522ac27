#include "check_socket.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "fulcrum/socket.hpp"

namespace fulcrum {

int CheckSocket::open(const SocketAddress& destination) {
  Fd fd;
  // The address of `source` stays bound across disconnects; the port is
  // chosen anew at each connect (IP_BIND_ADDRESS_NO_PORT).
  if (int e = open_connect_socket(destination.family(), ConnectSource{source_, false}, fd))
    return e;
  // Closing the socket (a probe abandoned by a reload) resets a connection
  // too. A disconnect always resets; the option outlives it.
  set_linger_reset(fd.get());
  EventPtr io(event_new(base_, fd.get(), EV_READ | EV_WRITE | EV_PERSIST | EV_ET, on_io_, arg_));
  if (!io || event_add(io.get(), nullptr) != 0) return ENOMEM;
  fd_ = std::move(fd);
  io_ = std::move(io);
  return 0;
}

void CheckSocket::close() {
  io_.reset();
  fd_.reset();
}

int CheckSocket::connect(const SocketAddress& destination) {
  if (!fd_) {
    if (int e = open(destination)) return e;
  }
  // Every connect: the disconnect clears TCP_QUICKACK's setting.
  if (delay_ack_) {
    if (int e = set_delayed_ack(fd_.get())) {
      close();
      return e;
    }
  }
  if (::connect(fd_.get(), destination.sockaddr_ptr(), destination.length) != 0 &&
      errno != EINPROGRESS) {
    const int error = errno;
    close();  // the next check starts from a new socket
    return error;
  }
  return 0;
}

int CheckSocket::connect_result() const {
  // A peer address exists only once connected; SO_ERROR alone cannot tell
  // a connect still in progress from one that succeeded.
  if (peer_address(fd_.get()).length != 0) return 0;
  const int error = pending_socket_error(fd_.get());
  return error != 0 ? error : EINPROGRESS;
}

void CheckSocket::reset() {
  if (!fd_) return;
  sockaddr unspecified{};
  unspecified.sa_family = AF_UNSPEC;
  // The kernel resets the connection (tcp_disconnect) and unbinds the
  // port. Should it refuse, the close resets instead (SO_LINGER), and the
  // next check opens a new socket.
  if (::connect(fd_.get(), &unspecified, sizeof unspecified) != 0) close();
}

}  // namespace fulcrum
