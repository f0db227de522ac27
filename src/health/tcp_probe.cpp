#include "tcp_probe.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace fulcrum {

TcpExchange TcpExchange::check(const HealthCheckConfig& config) {
  return TcpExchange{config.port, config.send, config.expect, false, config.timeout};
}

TcpExchange TcpExchange::agent(const AgentCheckConfig& agent, Duration timeout) {
  return TcpExchange{agent.port, agent.send, {}, true, timeout};
}

namespace {

// A bare connect check needs nothing past the server's SYN-ACK: its
// application is left out of it (CheckSocket's `delay_ack`).
bool connect_only(const TcpExchange& exchange) {
  return exchange.send.empty() && exchange.expect.empty() && !exchange.read_line;
}

}  // namespace

TcpProbe::TcpProbe(event_base* base, const SocketAddress& server, ConnectSource source,
                   TcpExchange exchange, ProbeDone done)
    : target_(exchange.port != 0 ? server.with_port(exchange.port) : server),
      exchange_(exchange),
      done_(std::move(done)),
      socket_(base, source.address, connect_only(exchange), on_io_cb, this) {
  deadline_.reset(evtimer_new(base, on_deadline_cb, this));
  // Every check of a service has the same timeout: libevent keeps such
  // timers in a queue (a "common timeout") instead of its heap, where a
  // thousand of them would cost a heap insertion and removal per check.
  const timeval timeout = to_timeval(exchange_.timeout);
  const timeval* common = event_base_init_common_timeout(base, &timeout);
  timeout_ = common != nullptr ? *common : timeout;  // it has room for 256 lengths
}

void TcpProbe::start() {
  sent_ = 0;
  reply_.reset();
  line_.clear();
  if (!deadline_) {
    finish(ProbeResult::from_error(ENOMEM));  // fulcrum's shortage, not the server's
    return;
  }
  if (const int error = socket_.connect(target_); error != 0) {
    finish(ProbeResult::from_error(error));
    return;
  }
  phase_ = Phase::connecting;
  event_add(deadline_.get(), &timeout_);
}

void TcpProbe::on_io_cb(evutil_socket_t, short, void* arg) { static_cast<TcpProbe*>(arg)->on_io(); }

void TcpProbe::on_deadline_cb(evutil_socket_t, short, void* arg) {
  static_cast<TcpProbe*>(arg)->on_deadline();
}

void TcpProbe::on_io() {
  switch (phase_) {
    case Phase::idle: return;  // the end of the last check's connection
    case Phase::connecting:
      if (const int error = socket_.connect_result(); error != 0) {
        if (error != EINPROGRESS) finish(ProbeResult::from_error(error));
        return;
      }
      phase_ = Phase::sending;
      send_rest();
      return;
    case Phase::sending: send_rest(); return;
    case Phase::reading: exchange_.read_line ? read_line() : read_reply(); return;
  }
}

void TcpProbe::send_rest() {
  const std::string_view data = exchange_.send;
  while (sent_ < data.size()) {
    const ssize_t n =
        ::send(socket_.fd(), data.data() + sent_, data.size() - sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // until the socket's next change
      finish(ProbeResult::from_error(errno));
      return;
    }
    sent_ += static_cast<size_t>(n);
  }
  if (exchange_.read_line) {
    phase_ = Phase::reading;
    read_line();
    return;
  }
  if (exchange_.expect.empty()) {
    finish(ProbeResult::passed());
    return;
  }
  phase_ = Phase::reading;
  reply_.emplace(exchange_.expect);
  read_reply();
}

ssize_t TcpProbe::receive(char* buffer, size_t size) {
  for (;;) {
    const ssize_t n = ::recv(socket_.fd(), buffer, size, MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    // Nothing yet: the next change of the socket calls again.
    if (errno != EAGAIN && errno != EWOULDBLOCK) finish(ProbeResult::from_error(errno));
    return -1;
  }
}

void TcpProbe::read_reply() {
  char buffer[4096];
  for (;;) {
    const ssize_t n = receive(buffer, std::min(sizeof buffer, reply_->room()));
    if (n < 0) return;
    if (n == 0) {
      // Closed by the server: with nothing said, or with a reply that does
      // not hold the expected bytes.
      finish(
          ProbeResult::failed(reply_->received() == 0 ? "connection closed" : "expect mismatch"));
      return;
    }
    switch (reply_->feed({buffer, static_cast<size_t>(n)})) {
      case ReplyMatcher::State::reading: break;
      case ReplyMatcher::State::matched: finish(ProbeResult::passed()); return;
      case ReplyMatcher::State::full: finish(ProbeResult::failed("expect mismatch")); return;
    }
  }
}

// The agent's reply: one line, ended by a line feed or by the agent closing
// the connection (HAProxy's agents do either).
void TcpProbe::read_line() {
  char buffer[kLineLimit + 1];
  for (;;) {
    const ssize_t n = receive(buffer, sizeof buffer);
    if (n < 0) return;
    if (n == 0) {
      if (line_.empty()) {
        finish(ProbeResult::failed("connection closed"));
      } else {
        finish(ProbeResult::answered(std::move(line_)));
      }
      return;
    }
    line_.append(buffer, static_cast<size_t>(n));
    if (const size_t end = line_.find('\n'); end != std::string::npos) {
      line_.resize(end);
      if (!line_.empty() && line_.back() == '\r') line_.pop_back();
      finish(ProbeResult::answered(std::move(line_)));
      return;
    }
    if (line_.size() > kLineLimit) {
      finish(ProbeResult::failed("reply too long"));
      return;
    }
  }
}

void TcpProbe::on_deadline() {
  switch (phase_) {
    case Phase::idle: return;
    case Phase::connecting: finish(ProbeResult::failed(failure_reason(ETIMEDOUT))); return;
    case Phase::sending: finish(ProbeResult::failed("timeout")); return;
    case Phase::reading:
      if (exchange_.read_line) {
        finish(ProbeResult::failed("timeout"));  // no line end, and the agent kept the connection
        return;
      }
      // A server that answered, but not with the expected bytes, and kept
      // the connection open (a Redis replica asked for its role): that is a
      // wrong answer, not a silent server.
      finish(ProbeResult::failed(reply_->received() == 0 ? "timeout" : "expect mismatch"));
      return;
  }
}

void TcpProbe::finish(ProbeResult result) {
  phase_ = Phase::idle;
  if (deadline_) event_del(deadline_.get());
  // A reset, not a FIN (as HAProxy's checks): the check has what it came
  // for (CheckSocket::reset).
  socket_.reset();
  done_(std::move(result));
}

}  // namespace fulcrum
