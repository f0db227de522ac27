#include "listener.hpp"

#include <sys/socket.h>
#include <cerrno>

#include "fulcrum/log.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/worker.hpp"
#include "session.hpp"

namespace fulcrum {

namespace {

// Accepts per readiness event before yielding to the other events of the
// loop, so that a connection storm cannot starve established sessions.
constexpr int kAcceptBatch = 32;
// How long to stop accepting when the kernel itself is out of descriptors.
constexpr std::chrono::milliseconds kDescriptorRetry{100};

}  // namespace

Listener::Listener(Worker& worker, const ServiceRuntime& service, const SocketAddress& address,
                   Fd fd)
    : worker_(worker), service_(&service), address_(address), fd_(std::move(fd)) {
  accept_event_.reset(
      event_new(worker_.base(), fd_.get(), EV_READ | EV_PERSIST, on_readable_cb, this));
  retry_timer_.reset(evtimer_new(worker_.base(), on_retry_cb, this));
}

Listener::~Listener() {
  if (paused_for_admission_) worker_.listener_resumed();
}

void Listener::enable() { event_add(accept_event_.get(), nullptr); }

void Listener::on_readable_cb(evutil_socket_t, short, void* arg) {
  static_cast<Listener*>(arg)->on_readable();
}

void Listener::on_retry_cb(evutil_socket_t, short, void* arg) {
  static_cast<Listener*>(arg)->enable();
}

void Listener::on_readable() {
  Admission& admission = worker_.admission();
  ServiceState& service_state = *service_->state;
  const uint64_t service_limit = service_->config->max_connections;
  for (int i = 0; i < kAcceptBatch; ++i) {
    if (!admission.try_admit(service_state, service_limit)) {
      pause_for_admission();
      return;
    }
    SocketAddress client_address;
    client_address.length = sizeof client_address.storage;
    int fd = ::accept4(fd_.get(), client_address.sockaddr_ptr(), &client_address.length,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      admission.release(service_state);
      if (error == EAGAIN || error == EWOULDBLOCK) return;
      if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
        static LogRateLimit paused_log(LogLevel::warn, "accept paused");
        paused_log.write({{"service", service_->config->name},
                          {"address", address_.to_string()},
                          {"error", errno_string(error)}});
        pause_for_descriptors();
        return;
      }
      // ECONNABORTED and friends concern one client only, and any client
      // can cause them: rate-limited.
      static LogRateLimit failed_log(LogLevel::debug, "accept failed");
      failed_log.write({{"service", service_->config->name}, {"error", errno_string(error)}});
      continue;
    }
    // TCP_NODELAY and SO_OOBINLINE come from the listener (open_listener):
    // accepted sockets inherit them, which saves two system calls a session.
    worker_.start_session(
        std::make_unique<Session>(worker_, worker_.snapshot(), *service_, Fd(fd), client_address));
  }
}

void Listener::pause_for_admission() {
  event_del(accept_event_.get());
  // Idle pipes may be what holds the descriptors new clients need.
  if (worker_.admission().free_fds() < 2) worker_.pipes().trim();
  if (!paused_for_admission_) {
    paused_for_admission_ = true;
    worker_.listener_paused();
  }
  // A release that happened between the failed admission and add_paused()
  // did not wake us: look again.
  resume_if_admissible();
}

void Listener::resume_if_admissible() {
  if (!paused_for_admission_) return;
  if (!worker_.admission().would_admit(*service_->state, service_->config->max_connections)) return;
  paused_for_admission_ = false;
  worker_.listener_resumed();
  enable();
}

void Listener::pause_for_descriptors() {
  event_del(accept_event_.get());
  add_with_timeout(retry_timer_.get(), kDescriptorRetry);
}

}  // namespace fulcrum
