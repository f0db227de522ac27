// Reloading the configuration file (SIGHUP or POST /api/v1/reload) without
// dropping a session: the same loading and validation as --check, then the
// checks that need the running process, binding new addresses, and only
// then the new snapshot through the control plane. Any error keeps the
// running configuration.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fulcrum/config.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/host_resolver.hpp"
#include "fulcrum/listeners.hpp"

namespace fulcrum {

// The outcome of the last reload (main thread).
struct ReloadStatus {
  bool ok = true;
  std::chrono::system_clock::time_point at;  // start-up until the first reload
  std::string error;                         // first error of a failed reload
  uint64_t succeeded = 0;
  uint64_t failed = 0;
  // Every error of a failed reload (`FILE:LINE:COL: message` where the file
  // has a place for it), and the warnings of the last reload, applied or
  // not (`FILE:LINE:COL: global.workers changes need a restart...`).
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
};

// The daemon's side of a reload: what changes outside the control plane.
// Main thread.
class ReloadTarget {
 public:
  virtual ~ReloadTarget() = default;
  // A reload begins / has ended, whatever its outcome (systemd's RELOADING=1
  // and READY=1).
  virtual void reload_started() = 0;
  virtual void reload_finished(const ReloadStatus& status) = 0;
  // The control plane has installed `snapshot`: serve it, with the sockets
  // of its new addresses (already bound) and the admin token it names
  // (none: no token file). Must not fail.
  virtual void serve(const std::shared_ptr<const Snapshot>& snapshot,
                     std::vector<BoundAddress> new_addresses,
                     std::optional<std::string> admin_token) = 0;
};

class Reloader {
 public:
  using Done = std::function<void(const ReloadStatus&)>;

  // Reloads `config_path` into `control`, whose snapshot is the start-up
  // configuration; `workers` is the running number of worker threads (a
  // change of global.workers needs a restart).
  Reloader(event_base* base, std::string config_path, unsigned workers, ControlPlane& control,
           ReloadTarget& target);
  // Waits for a file still being read (bounded by the resolver's timeouts).
  ~Reloader();
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

  // Asks for a reload; `done`, if set, gets the outcome on the main loop.
  // The file is read and parsed on a thread of its own (the user and group
  // lookups may ask NSS), its host names resolved by evdns on the main loop
  // without blocking it (host_resolver.hpp), then parsed again with their
  // addresses on a thread; the rest runs on the main loop. A slow resolver
  // so never stalls the loop (stats, health checks, the watchdog). Asked while a
  // reload runs, one more follows it (requests in the meantime share it):
  // every asker's outcome reflects the file as it was after the request.
  void request(std::string asked_by, Done done = {});
  // The daemon is stopping: no further reload is applied; askers waiting
  // get a failure.
  void stop();
  bool running() const { return busy_; }
  const ReloadStatus& status() const { return status_; }
  // A binary upgrade: the counts go on from the old image's.
  void carry_counts(uint64_t succeeded, uint64_t failed) {
    status_.succeeded = succeeded;
    status_.failed = failed;
  }

 private:
  struct Asker {
    std::string who;
    Done done;
  };
  void start_loading();
  void on_loaded();
  // What a reload found: errors (none: applied) and warnings.
  struct Outcome {
    std::vector<std::string> errors;
    std::vector<std::string> warnings;
  };
  // Everything after the file is loaded.
  Outcome apply(ConfigLoad load);
  void finish(Outcome outcome);
  static void on_loaded_cb(evutil_socket_t, short, void* arg);

  std::string config_path_;
  unsigned workers_;
  // What the daemon started with: what a reload cannot change (the user,
  // the stats endpoint) is compared with it.
  const Config started_;
  ControlPlane& control_;
  ReloadTarget& target_;
  ReloadStatus status_;
  EventPtr loaded_event_;  // activated by the loader thread
  // What a loader thread found: the load, or the names it needs first.
  struct Loaded {
    std::optional<ConfigLoad> load;
    std::string text;
    ConfigNames names;
  };
  std::thread loader_;
  std::mutex loaded_mutex_;
  std::optional<Loaded> loaded_;  // the loader thread's result
  HostResolver resolver_;
  bool busy_ = false;           // a reload is between start_loading() and finish()
  std::vector<Asker> current_;  // answered by the reload running now
  std::vector<Asker> next_;     // asked while it ran: one more reload
  bool stopped_ = false;
};

}  // namespace fulcrum
