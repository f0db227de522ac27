// The TCP probe: connect to the server (or to its address on the check's
// `port`), write `send`, then read until the reply contains `expect`. All
// of it within `timeout`, counted from the start. Never sends a PROXY
// header: a check speaks for no client.
#pragma once

#include <cstddef>
#include <optional>

#include "fulcrum/address.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"
#include "fulcrum/socket.hpp"
#include "probe.hpp"
#include "reply_match.hpp"

namespace fulcrum {

class TcpProbe final : public Probe {
 public:
  // `config` and what `source` points to must outlive the probe.
  TcpProbe(event_base* base, const SocketAddress& server, ConnectSource source,
           const HealthCheckConfig& config, ProbeDone done);
  void start() override;

 private:
  enum class Phase { connecting, sending, reading };

  static void on_io_cb(evutil_socket_t, short, void* arg);
  static void on_deadline_cb(evutil_socket_t, short, void* arg);

  void on_io();
  void on_deadline();
  // Writes what is left of `send`, then reads or passes.
  void send_rest();
  void read_reply();
  void wait_for(short what);
  void finish(ProbeResult result);

  event_base* base_;
  SocketAddress target_;
  ConnectSource source_;
  const HealthCheckConfig& config_;
  ProbeDone done_;
  Phase phase_ = Phase::connecting;
  size_t sent_ = 0;
  std::optional<ReplyMatcher> reply_;
  Fd socket_;
  EventPtr io_;
  EventPtr deadline_;
};

}  // namespace fulcrum
