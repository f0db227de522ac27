// The TCP probe: connect to the server (or to its address on the check's
// `port`), write `send`, then read until the reply contains `expect` — or,
// for the agent check, read the agent's one line. All of it within
// `timeout`, counted from the start. Never sends a PROXY header: a check
// speaks for no client.
#pragma once

#include <sys/types.h>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "check_socket.hpp"
#include "fulcrum/address.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/socket.hpp"
#include "probe.hpp"
#include "reply_match.hpp"

namespace fulcrum {

// What a TcpProbe does once connected. The strings must outlive the probe.
struct TcpExchange {
  uint16_t port = 0;        // 0: the server's own port
  std::string_view send;    // written first (may be empty)
  std::string_view expect;  // then the reply must contain it (empty: passes once sent)
  bool read_line = false;   // instead: read one line, handed over in ProbeResult::reply
  Duration timeout{1000};

  // The health check's send/expect on its `port`.
  static TcpExchange check(const HealthCheckConfig& config);
  // The agent check on the agent's port: its `send` (if any) written, then
  // one line read, all within the check's `timeout`.
  static TcpExchange agent(const AgentCheckConfig& agent, Duration timeout);
};

class TcpProbe final : public Probe {
 public:
  // The longest agent line taken; a longer one fails the check.
  static constexpr size_t kLineLimit = 1024;

  // What `source` points to must outlive the probe.
  TcpProbe(event_base* base, const SocketAddress& server, ConnectSource source,
           TcpExchange exchange, ProbeDone done);
  void start() override;

 private:
  enum class Phase { idle, connecting, sending, reading };

  static void on_io_cb(evutil_socket_t, short, void* arg);
  static void on_deadline_cb(evutil_socket_t, short, void* arg);

  void on_io();
  void on_deadline();
  // Writes what is left of `send`, then reads or passes.
  void send_rest();
  // One non-blocking read: the bytes read, 0 when the server closed, or -1
  // when there is nothing to read yet (the socket's next change calls
  // again) or the read failed (the probe then finished).
  ssize_t receive(char* buffer, size_t size);
  void read_reply();
  void read_line();
  void finish(ProbeResult result);

  SocketAddress target_;
  TcpExchange exchange_;
  ProbeDone done_;
  Phase phase_ = Phase::idle;
  size_t sent_ = 0;
  std::optional<ReplyMatcher> reply_;
  std::string line_;
  CheckSocket socket_;
  EventPtr deadline_;
  timeval timeout_{};  // exchange_.timeout, as libevent's common timeout
};

}  // namespace fulcrum
