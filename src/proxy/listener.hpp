// A listening socket of one service in one worker. Accepts only what it can
// admit (see Admission): when a limit is reached it stops watching the
// socket, and clients wait in the kernel backlog until a slot frees up.
#pragma once

#include "fulcrum/address.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/fd.hpp"
#include "fulcrum/snapshot.hpp"

namespace fulcrum {

class Worker;

class Listener {
 public:
  Listener(Worker& worker, const ServiceRuntime& service, const SocketAddress& address, Fd fd);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void enable();
  const SocketAddress& address() const { return address_; }
  int fd() const { return fd_.get(); }
  // After a reload: new clients on this (kept) socket belong to `service` of
  // the new snapshot. The socket itself is never closed, so no client is
  // refused.
  void retarget(const ServiceRuntime& service) { service_ = &service; }
  // Resumes a listener paused on a limit if it could now admit a client.
  void resume_if_admissible();

 private:
  void on_readable();
  void pause_for_admission();
  void pause_for_descriptors();
  static void on_readable_cb(evutil_socket_t, short, void* arg);
  static void on_retry_cb(evutil_socket_t, short, void* arg);

  Worker& worker_;
  const ServiceRuntime* service_;
  const SocketAddress address_;
  Fd fd_;
  EventPtr accept_event_;
  EventPtr retry_timer_;
  bool paused_for_admission_ = false;
};

}  // namespace fulcrum
