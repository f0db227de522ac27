#include "fulcrum/signals.hpp"

#include <pthread.h>

#include <csignal>
#include <initializer_list>

namespace fulcrum {

namespace {

void set_blocked(std::initializer_list<int> signals, bool blocked) {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : signals) sigaddset(&set, signal);
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}

}  // namespace

void hold_reload_signal() { set_blocked({SIGHUP, SIGUSR2, SIGQUIT}, true); }

SignalEvents::SignalEvents(event_base* base, std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)) {
  for (int signal : {SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGQUIT}) {
    events_.emplace_back(evsignal_new(base, signal, on_signal_cb, this));
    event_add(events_.back().get(), nullptr);
  }
  // libevent's handlers are installed: a SIGHUP or SIGUSR2 held since
  // start-up (and a stop signal held across an upgrade's exec) is
  // delivered now and handled on the loop's first turn.
  set_blocked({SIGHUP, SIGUSR2, SIGTERM, SIGINT, SIGQUIT}, false);
}

void SignalEvents::on_signal_cb(evutil_socket_t signal, short, void* arg) {
  static_cast<SignalEvents*>(arg)->on_signal_(static_cast<int>(signal));
}

AllSignalsBlocked::AllSignalsBlocked() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous_);
}

AllSignalsBlocked::~AllSignalsBlocked() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }

const char* signal_name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    case SIGUSR2: return "SIGUSR2";
    case SIGQUIT: return "SIGQUIT";
    default: return "signal";
  }
}

}  // namespace fulcrum
