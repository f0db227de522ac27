// The binary upgrade's moving parts (SPEC.md "Upgrading the binary"): ask
// the new binary whether it takes this configuration and reads this state
// version, exec it with the state, and, in the new image, take the state
// up. The daemon strings them together (docs/operations.md "Upgrading").
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fulcrum/event.hpp"
#include "fulcrum/upgrade_state.hpp"

namespace fulcrum {

// The environment variable that names the state's descriptor in the new
// image.
inline constexpr const char* kUpgradeStateVariable = "FULCRUM_UPGRADE_STATE";

// This PID's upgrades, for /stats, /metrics and the dashboard.
struct UpgradeStatus {
  uint64_t upgrades = 0;     // exec'd into a new binary since the PID started
  bool in_progress = false;  // a check or the hand-over is under way
  // The last upgrade this image gave up (none since it started: unset).
  std::optional<std::chrono::system_clock::time_point> last_failure_at;
  std::string last_error;
};

// The answer to an upgrade request (SIGUSR2, POST /api/v1/upgrade).
struct UpgradeAnswer {
  enum class Outcome {
    started,   // the new binary passed its check: the hand-over follows
    refused,   // it did not (error)
    busy,      // an upgrade or a reload is under way
    stopping,  // a stop has begun
  };
  Outcome outcome = Outcome::started;
  std::string error;
  std::string binary;   // the path exec'd
  std::string version;  // the new binary's version, from its check
  // `started` only: to call once the answer has left (or its client is
  // gone); the exec, which closes the connection, waits for it.
  std::function<void()> sent;
};
using UpgradeDone = std::function<void(const UpgradeAnswer&)>;

// The line `fulcrum --check --state-version` prints after `configuration ok`.
std::string state_version_line();

// What the new binary answered to `--check --state-version -c CONFIG`.
struct BinaryVerdict {
  std::string error;    // empty: it takes the configuration and reads this state
  std::string version;  // its own version, from its answer
};
// Reads the check's exit status and output: refuses a failed check (with
// its error lines), a binary that did not answer the state line (an older
// fulcrum, or no fulcrum at all) and one that reads another state version.
BinaryVerdict judge_binary(int wait_status, const std::string& output);

// Runs `binary --check --state-version -c config` on a thread of its own,
// never blocking the loop, killing it after `timeout`; hands the verdict to
// `done` on `base`'s loop.
class BinaryCheck {
 public:
  BinaryCheck(event_base* base, std::function<void(BinaryVerdict)> done);
  ~BinaryCheck();
  BinaryCheck(const BinaryCheck&) = delete;
  BinaryCheck& operator=(const BinaryCheck&) = delete;

  void start(const std::string& binary, const std::string& config,
             std::chrono::milliseconds timeout);
  bool busy() const { return thread_.joinable(); }

 private:
  static void on_done_cb(evutil_socket_t, short, void* arg);

  std::function<void(BinaryVerdict)> done_;
  EventPtr done_event_;
  BinaryVerdict verdict_;  // written by the thread before it activates done_event_
  std::thread thread_;
};

// The executable this process runs, as installed: /proc/self/exe's target,
// without the " (deleted)" the kernel adds once a new file replaced it.
std::string own_executable();

// Hands `state` to `binary`: writes it into a memfd, clears close-on-exec
// on it and on every descriptor the state names, keeps the capabilities
// across the exec, and execs `binary` with `arguments` (argv[0] included)
// and the memfd named in kUpgradeStateVariable. Returns only when that
// failed: the reason, with every descriptor closed-on-exec again.
std::string exec_with_state(const std::string& binary, const std::vector<std::string>& arguments,
                            const UpgradeState& state);

// In the new image: the state the old one handed over (its variable
// removed from the environment, its memfd closed); none without one.
struct InheritedState {
  std::optional<UpgradeState> state;
  std::string error;  // the variable was set, the state unreadable
};
InheritedState take_inherited_state();

}  // namespace fulcrum
