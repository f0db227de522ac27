// systemd's fd store (fd_store.hpp): the listeners a start takes up from
// it, and keeping every listener there while serving.
#include <unistd.h>

#include <algorithm>

#include "daemon_class.hpp"
#include "fulcrum/log.hpp"

namespace fulcrum {

// The listeners systemd's fd store kept from the last process (fd_store.hpp),
// those of addresses still configured, with sockets joined for workers
// they lack; after an upgrade, none: the old image's are the ones in use.
std::vector<CarriedListener> Daemon::take_stored_listeners(const Config& config) {
  std::vector<CarriedListener> stored = std::exchange(stored_.listeners, {});
  if (carried_ || stored.empty()) {
    for (const CarriedListener& listener : stored) ::close(listener.fd);
    if (carried_ && stored_.stats) ::close(std::exchange(stored_.stats->fd, -1));
    return {};
  }
  std::vector<CarriedListener> kept = take_carried_listeners(stored, config);
  const size_t taken = kept.size();
  join_missing_workers(kept, config);
  log_info("listeners taken from the fd store",
           {{"listeners", taken},
            {"added", kept.size() - taken},
            {"closed", stored.size() - taken + stored_.discarded.size()}});
  return kept;
}

// Every listener and the stats port in systemd's fd store, each address's
// first worker's socket before any second one (a store too small for all
// still keeps every address open across a restart); whatever else the
// store held is removed. Before the workers take the listeners.
void Daemon::keep_in_fd_store(const std::vector<BoundAddress>& addresses) {
  if (!fd_store_.enabled()) return;
  std::vector<std::string> stale = stored_.names;
  std::vector<StoreEntry> entries;
  const auto in_store = [this](const std::string& name) {
    return std::find(stored_.names.begin(), stored_.names.end(), name) != stored_.names.end();
  };
  if (stats_) {
    const std::string name = stats_fd_name(snapshot().config.stats.listen);
    entries.push_back({name, stats_->listening_fd(), stats_from_store_});
    // After an upgrade the old image may have stored it under this name.
    if (carried_) stale.push_back(name);
  }
  if (carried_) {
    for (const CarriedListener& listener : carried_->listeners)
      stale.push_back(listener_fd_name(listener.address, listener.worker));
  }
  for (unsigned w = 0; w < workers_count_; ++w) {
    for (const BoundAddress& address : addresses)
      entries.push_back({listener_fd_name(address.address, w), address.per_worker[w].get(), false});
    // Under the number of the worker that takes it (start_workers), which
    // a store of more workers than now renames.
    for (const CarriedListener& listener : carried_listeners_) {
      if (listener.worker % workers_count_ != w) continue;
      const std::string name = listener_fd_name(listener.address, w);
      entries.push_back({name, listener.fd, !carried_ && listener.worker == w && in_store(name)});
    }
  }
  report_fd_store_full(fd_store_.begin(entries, stale, stored_.discarded));
  stored_.names.clear();
  stored_.discarded.clear();
}

// A reload: the listeners of addresses no longer served leave the store,
// the new ones join it.
void Daemon::follow_in_fd_store(const Snapshot& next,
                                const std::vector<BoundAddress>& new_addresses) {
  if (!fd_store_.enabled()) return;
  fd_store_.remove_if([&next](const StoredName& name) {
    return name.kind == StoredName::Kind::listener &&
           next.service_listening_on(name.address) == nullptr;
  });
  std::vector<StoreEntry> entries;
  for (unsigned w = 0; w < workers_count_; ++w) {
    for (const BoundAddress& address : new_addresses)
      entries.push_back({listener_fd_name(address.address, w), address.per_worker[w].get(), false});
  }
  report_fd_store_full(fd_store_.add(entries));
}

void Daemon::report_fd_store_full(size_t not_stored) const {
  if (not_stored == 0) return;
  log_warn("fd store full", {{"capacity", fd_store_.capacity()},
                             {"stored", fd_store_.size()},
                             {"not_stored", not_stored}});
}

}  // namespace fulcrum
