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

TcpProbe::TcpProbe(event_base* base, const SocketAddress& server, ConnectSource source,
                   TcpExchange exchange, ProbeDone done)
    : base_(base),
      target_(exchange.port != 0 ? server.with_port(exchange.port) : server),
      source_(source),
      exchange_(exchange),
      done_(std::move(done)) {
  deadline_.reset(evtimer_new(base_, on_deadline_cb, this));
}

void TcpProbe::start() {
  phase_ = Phase::connecting;
  sent_ = 0;
  reply_.reset();
  line_.clear();
  // A bare connect check needs nothing past the server's SYN-ACK: its
  // application is left out of it (start_connect_unacked).
  const bool connect_only =
      exchange_.send.empty() && exchange_.expect.empty() && !exchange_.read_line;
  const int error = connect_only ? start_connect_unacked(target_, source_, socket_)
                                 : start_connect(target_, source_, socket_);
  if (error != 0) {
    finish(ProbeResult::from_error(error));
    return;
  }
  add_with_timeout(deadline_.get(), exchange_.timeout);
  wait_for(EV_WRITE);
}

void TcpProbe::on_io_cb(evutil_socket_t, short, void* arg) { static_cast<TcpProbe*>(arg)->on_io(); }

void TcpProbe::on_deadline_cb(evutil_socket_t, short, void* arg) {
  static_cast<TcpProbe*>(arg)->on_deadline();
}

void TcpProbe::wait_for(short what) {
  io_.reset(event_new(base_, socket_.get(), what, on_io_cb, this));
  if (!io_) {
    finish(ProbeResult::from_error(ENOMEM));  // fulcrum's shortage, not the server's
    return;
  }
  event_add(io_.get(), nullptr);
}

void TcpProbe::on_io() {
  switch (phase_) {
    case Phase::connecting:
      if (int error = pending_socket_error(socket_.get()); error != 0) {
        finish(ProbeResult::from_error(error));
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
    const ssize_t n = ::send(socket_.get(), data.data() + sent_, data.size() - sent_,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait_for(EV_WRITE);
        return;
      }
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
    const ssize_t n = ::recv(socket_.get(), buffer, size, MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      wait_for(EV_READ);
    else
      finish(ProbeResult::from_error(errno));
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
  event_del(deadline_.get());
  io_.reset();
  // A reset, not a FIN (as HAProxy's checks): the check has what it came
  // for, and neither side then runs the FIN exchange or keeps the
  // connection in TIME_WAIT (a thousand servers checked every second
  // would hold some 60,000 such sockets).
  if (socket_) set_linger_reset(socket_.get());
  socket_.reset();
  done_(std::move(result));
}

}  // namespace fulcrum
