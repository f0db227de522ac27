// The systemd notification protocol (sd_notify(3)): datagrams to the
// socket named by NOTIFY_SOCKET. Spoken directly (a few lines) rather than
// linking libsystemd for it; without NOTIFY_SOCKET every call does nothing.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "fulcrum/fd.hpp"

namespace fulcrum {

class Notifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC (honouring WATCHDOG_PID).
  Notifier();

  // Sends one message (lines separated by '\n'); returns false on failure.
  bool send(std::string_view message) const;

  void ready(std::string_view status) const;
  // RELOADING=1 with MONOTONIC_USEC, as systemd's Type=notify-reload wants.
  void reloading() const;
  void stopping() const;
  void watchdog() const { send("WATCHDOG=1"); }
  // FDSTORE=1 with FDNAME=`name` and `fd` attached (SCM_RIGHTS): systemd
  // keeps a duplicate in the unit's fd store (fd_store.hpp). `name` must
  // be a valid FDNAME (printable ASCII without ':', 255 bytes at most).
  bool store_fd(std::string_view name, int fd) const;
  // FDSTOREREMOVE=1: systemd closes every descriptor it stores under `name`.
  bool remove_stored_fd(std::string_view name) const;
  // How often to send WATCHDOG=1 (half the watchdog timeout), if wanted.
  std::optional<std::chrono::milliseconds> watchdog_interval() const { return watchdog_interval_; }

 private:
  bool send_with_fd(std::string_view message, int fd) const;

  Fd socket_;
  std::string address_;  // the path, with a leading '\0' for the abstract namespace
  std::optional<std::chrono::milliseconds> watchdog_interval_;
};

}  // namespace fulcrum
