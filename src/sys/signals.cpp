#include "fulcrum/signals.hpp"

#include <pthread.h>

#include <csignal>

namespace fulcrum {

namespace {

void set_reload_signal_blocked(bool blocked) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}

}  // namespace

void hold_reload_signal() { set_reload_signal_blocked(true); }

SignalEvents::SignalEvents(event_base* base, std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)) {
  for (int signal : {SIGTERM, SIGINT, SIGHUP}) {
    events_.emplace_back(evsignal_new(base, signal, on_signal_cb, this));
    event_add(events_.back().get(), nullptr);
  }
  // libevent's handler is installed: a SIGHUP held since start-up is
  // delivered now and becomes a reload on the loop's first turn.
  set_reload_signal_blocked(false);
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
    default: return "signal";
  }
}

}  // namespace fulcrum
