// The signals the daemon handles (SPEC.md "Signals and systemd"), delivered
// on its main loop through libevent.
#pragma once

#include <csignal>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "fulcrum/event.hpp"

namespace fulcrum {

// First thing in main(): blocks SIGHUP, SIGUSR2 and SIGQUIT, so that a
// reload, upgrade or restart signal sent while fulcrum starts stays pending
// until SignalEvents handles it, instead of killing the process by the
// default action.
void hold_reload_signal();

// SIGTERM, SIGINT, SIGHUP, SIGUSR2 and SIGQUIT as events of `base`; then
// releases any of them held (hold_reload_signal, an upgrade's exec).
// SIGQUIT is the stop of a restart (the unit's RestartKillSignal=): like
// SIGTERM, except that the listening sockets stay in systemd's fd store for
// the next process (fd_store.hpp).
class SignalEvents {
 public:
  SignalEvents(event_base* base, std::function<void(int signal)> on_signal);
  SignalEvents(const SignalEvents&) = delete;
  SignalEvents& operator=(const SignalEvents&) = delete;

 private:
  static void on_signal_cb(evutil_socket_t signal, short, void* arg);

  std::function<void(int)> on_signal_;
  std::vector<EventPtr> events_;
};

// Blocks every signal in the calling thread for its lifetime, then puts
// the previous mask back.
class AllSignalsBlocked {
 public:
  AllSignalsBlocked();
  ~AllSignalsBlocked();
  AllSignalsBlocked(const AllSignalsBlocked&) = delete;
  AllSignalsBlocked& operator=(const AllSignalsBlocked&) = delete;

 private:
  sigset_t previous_;
};

// A thread that takes no signal from its first instruction on (it inherits
// the blocked mask): the daemon's signals always reach the main thread's
// loop, and SIGPIPE becomes EPIPE. Blocking them inside the new thread
// instead would leave a window where the kernel may pick it for a signal.
template <typename Function>
std::thread thread_without_signals(Function&& function) {
  const AllSignalsBlocked blocked;
  return std::thread(std::forward<Function>(function));
}

// "SIGTERM", "SIGINT", "SIGHUP", "SIGUSR2", "SIGQUIT" (else "signal"), for the log.
const char* signal_name(int signal);

}  // namespace fulcrum
