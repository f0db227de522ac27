// Resolving the daemon's host and probing its addresses with non-blocking
// connects.
#include "reach.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace fulcrum::ctl {

namespace {

struct AddrInfoFree {
  void operator()(addrinfo* info) const { freeaddrinfo(info); }
};

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Connects to `address` before `deadline`: 0, ETIMEDOUT, or the errno of
// the failed connect.
int try_connect(const addrinfo& address, std::chrono::steady_clock::time_point deadline) {
  const Socket probe(socket(address.ai_family, address.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            address.ai_protocol));
  if (probe.get() < 0) return errno;
  if (connect(probe.get(), address.ai_addr, address.ai_addrlen) == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return ETIMEDOUT;
    pollfd entry{probe.get(), POLLOUT, 0};
    const int ready = poll(&entry, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return errno;
    if (ready == 0) return ETIMEDOUT;
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(probe.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
    return error;
  }
}

std::string numeric_host(const addrinfo& address) {
  char host[NI_MAXHOST];
  if (getnameinfo(address.ai_addr, address.ai_addrlen, host, sizeof host, nullptr, 0,
                  NI_NUMERICHOST) != 0) {
    return "";
  }
  return host;
}

}  // namespace

std::optional<std::string> find_reachable(const std::string& host, int port,
                                          std::chrono::steady_clock::time_point deadline,
                                          std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int status = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); status != 0) {
    *error = status == EAI_SYSTEM ? std::strerror(errno) : gai_strerror(status);
    return std::nullopt;
  }
  const std::unique_ptr<addrinfo, AddrInfoFree> addresses(found);
  int last_error = EHOSTUNREACH;
  for (const addrinfo* address = addresses.get(); address != nullptr; address = address->ai_next) {
    last_error = try_connect(*address, deadline);
    if (last_error == 0) {
      std::string numeric = numeric_host(*address);
      if (!numeric.empty()) return numeric;
      last_error = EINVAL;
    }
    if (last_error == ETIMEDOUT) break;  // the time is up for every address
  }
  *error = last_error == ETIMEDOUT ? "connection timed out" : std::strerror(last_error);
  return std::nullopt;
}

}  // namespace fulcrum::ctl
