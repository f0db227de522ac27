// One kind of active health check (a probe): started by the checker once
// every interval against one server, it reports exactly one result per
// start, on the checker's event loop. The TCP probe (connect, send/expect)
// is one; the HTTP(S) probe (checker.cpp) is the other.
#pragma once

#include <functional>
#include <string>

namespace fulcrum {

struct ProbeResult {
  enum class Outcome {
    passed,
    failed,       // the server failed it: `reason` says how
    local_error,  // fulcrum's own resources failed (descriptors, memory,
                  // source ports): no verdict on the server; `reason` is
                  // the system's error text
  };
  Outcome outcome = Outcome::passed;
  std::string reason;
  // What the server said, for probes that hand it on (the agent's line).
  std::string reply;

  static ProbeResult passed() { return {}; }
  static ProbeResult answered(std::string reply) { return {Outcome::passed, {}, std::move(reply)}; }
  static ProbeResult failed(std::string reason) { return {Outcome::failed, std::move(reason), {}}; }
  // An errno of a socket call: fulcrum's own (is_local_error) or the server's.
  static ProbeResult from_error(int error);
};

// The reason of a failed connect or socket call: `connect refused`,
// `connect timeout`, else the system's text starting in lower case.
std::string failure_reason(int error);

using ProbeDone = std::function<void(ProbeResult)>;

class Probe {
 public:
  virtual ~Probe() = default;
  // Starts one check; `done` (given at construction) is called once with its
  // result, from within start() when it fails at once (a socket that could
  // not be made). Not called while one is running.
  // Destroying the probe abandons a running check without a result.
  virtual void start() = 0;
};

}  // namespace fulcrum
