#include "fulcrum/notify.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace fulcrum {

Notifier::Notifier() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path != nullptr && (path[0] == '/' || path[0] == '@') &&
      std::strlen(path) < sizeof(sockaddr_un::sun_path)) {
    address_ = path;
    if (address_[0] == '@') address_[0] = '\0';  // abstract socket
    socket_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  }
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  const bool for_us = pid == nullptr || std::strtol(pid, nullptr, 10) == ::getpid();
  if (usec != nullptr && for_us) {
    const long long value = std::strtoll(usec, nullptr, 10);
    // Half the timeout, but at least 1 ms: a timeout under 2 ms made a zero
    // interval, and libevent 2.1 fires a persistent zero timer only once, so
    // the pings stopped and systemd killed a healthy daemon.
    if (value > 0) watchdog_interval_ = std::chrono::milliseconds(std::max(value / 2000, 1LL));
  }
}

bool Notifier::send(std::string_view message) const { return send_with_fd(message, -1); }

// One datagram, with `fd` (unless -1) as SCM_RIGHTS ancillary data: the
// kernel gives systemd a duplicate, ours stays open.
bool Notifier::send_with_fd(std::string_view message, int fd) const {
  if (!socket_) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, address_.data(), address_.size());
  iovec text{const_cast<char*>(message.data()), message.size()};
  msghdr header{};
  header.msg_name = &address;
  header.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
  header.msg_iov = &text;
  header.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    header.msg_control = control;
    header.msg_controllen = sizeof control;
    cmsghdr* rights = CMSG_FIRSTHDR(&header);
    rights->cmsg_level = SOL_SOCKET;
    rights->cmsg_type = SCM_RIGHTS;
    rights->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(rights), &fd, sizeof fd);
  }
  return ::sendmsg(socket_.get(), &header, MSG_NOSIGNAL) == static_cast<ssize_t>(message.size());
}

bool Notifier::store_fd(std::string_view name, int fd) const {
  return send_with_fd("FDSTORE=1\nFDNAME=" + std::string(name), fd);
}

bool Notifier::remove_stored_fd(std::string_view name) const {
  return send("FDSTOREREMOVE=1\nFDNAME=" + std::string(name));
}

void Notifier::ready(std::string_view status) const {
  send("READY=1\nSTATUS=" + std::string(status));
}

void Notifier::reloading() const {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const long long usec = static_cast<long long>(now.tv_sec) * 1000000 + now.tv_nsec / 1000;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void Notifier::stopping() const { send("STOPPING=1\nSTATUS=stopping"); }

}  // namespace fulcrum
