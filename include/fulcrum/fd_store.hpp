// systemd's file descriptor store (systemd.service(5) FileDescriptorStoreMax=,
// sd_notify(3) FDSTORE=1): the service manager keeps a duplicate of each
// listening socket fulcrum hands it and passes them back to the next main
// process (sd_listen_fds(3)). Across a `systemctl restart` or a restart
// after a crash the sockets therefore never close: clients wait in their
// backlog while one process stops and the next starts, instead of being
// refused. Here: the names the sockets are stored under, reading what a
// start inherited, and what this process keeps in the store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/notify.hpp"
#include "fulcrum/upgrade_state.hpp"

namespace fulcrum {

// The first descriptor systemd passes (SD_LISTEN_FDS_START).
inline constexpr int kListenFdsStart = 3;

// What a stored descriptor is, read from its name.
struct StoredName {
  enum class Kind { listener, stats };
  Kind kind = Kind::listener;
  SocketAddress address;
  uint32_t worker = 0;  // listeners only
};

// The name a worker's listening socket is stored under:
// `listen_127.0.0.1_8080_w0`, or `listen_--1_8080_w1` for [::1]:8080 (an
// FDNAME must not hold ':', so IPv6 addresses have '-' instead; a scope
// follows as `%INDEX`).
std::string listener_fd_name(const SocketAddress& address, uint32_t worker);
// The stats port's: `stats_127.0.0.1_9100`.
std::string stats_fd_name(const SocketAddress& address);
// The inverse of both; nullopt for any other name, a spelling the two
// would not write included (leading zeros, a port 0, IPv4 in IPv6 form).
std::optional<StoredName> parse_fd_name(std::string_view name);

// What a start under systemd inherited from the store.
struct StoredFds {
  // Each a listening TCP socket bound to the address its name says,
  // close-on-exec. Their names are listener_fd_name(address, worker).
  std::vector<CarriedListener> listeners;
  std::optional<CarriedListener> stats;  // `worker` unused
  // Every name systemd passed, and those of the descriptors closed here
  // (a name fulcrum does not write, or a socket that is not what its name
  // says): the store still holds those until they are removed by name.
  std::vector<std::string> names;
  std::vector<std::string> discarded;
};

// Takes the descriptors systemd passed this process (sd_listen_fds(3)):
// with LISTEN_PID this process's PID, LISTEN_FDS descriptors from
// `first_fd` on, named by LISTEN_FDNAMES. Unsets the three variables (they
// are not for any child), whoever they were for. Without names for all of
// them, or for another PID, takes none.
StoredFds take_stored_fds(int first_fd = kListenFdsStart);

// One descriptor to keep in the store, under `name`.
struct StoreEntry {
  std::string name;
  int fd = -1;
  bool stored = false;  // systemd holds it under `name` already (StoredFds)
};

// What this process keeps in the store, and the messages that change it.
// Every name systemd may hold for the unit is known here once begin() ran,
// so that a reload or a stop can remove exactly those.
class FdStore {
 public:
  // `capacity`: how many descriptors the unit lets the store hold; 0: no
  // store, and nothing is ever sent (systemd 252 logs a warning for each
  // message a unit without FileDescriptorStoreMax= sends).
  FdStore(const Notifier& notifier, size_t capacity);

  // $FDSTORE: systemd 254 and later set it to FileDescriptorStoreMax=;
  // fulcrum's unit sets it itself for older ones. 0 when unset or invalid.
  static size_t capacity_from_environment();

  bool enabled() const { return capacity_ > 0; }
  size_t capacity() const { return capacity_; }
  size_t size() const { return size_; }

  // At start-up: makes the store hold `entries` (in this order while there
  // is room) and nothing else. `stale` names what it may hold besides: the
  // names systemd passed, or those an upgrade's old image stored under;
  // those no entry keeps are removed, and so are `discarded` ones (an entry
  // under such a name is stored again after the removal). Returns how many
  // entries did not fit.
  size_t begin(const std::vector<StoreEntry>& entries, const std::vector<std::string>& stale,
               const std::vector<std::string>& discarded);
  // Adds entries (a reload's new listeners); returns how many did not fit.
  size_t add(const std::vector<StoreEntry>& entries);
  // Removes every name stored under which `gone` is true.
  void remove_if(const std::function<bool(const StoredName&)>& gone);
  // Removes everything stored: a stop that no start follows.
  void remove_all();

 private:
  bool store(const StoreEntry& entry);
  void remove(const std::string& name);

  const Notifier& notifier_;
  const size_t capacity_;
  std::map<std::string, size_t> stored_;  // name -> descriptors systemd holds under it
  size_t size_ = 0;
};

}  // namespace fulcrum
