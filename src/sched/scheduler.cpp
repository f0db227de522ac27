// What all schedulers share: the factory and the primary/backup split
// wrapped around any algorithm.
#include "fulcrum/scheduler.hpp"

#include <atomic>

#include "algorithms.hpp"

namespace fulcrum {

namespace {

// Primaries serve while any of them is up; otherwise the backups do. A
// session whose every usable primary already failed to connect (or is full)
// goes to a backup rather than back to a primary that failed, so a retry
// absorbs the failure before health checks notice. Each group has its own
// scheduler of the same kind; indices are mapped back to the service's list.
class WithBackups final : public Scheduler {
 public:
  WithBackups(const SchedulerOptions& options, std::vector<SchedServer> servers)
      : servers_(std::move(servers)) {
    std::vector<SchedServer> primaries;
    std::vector<SchedServer> backups;
    for (uint32_t i = 0; i < servers_.size(); ++i) {
      auto& group = servers_[i].backup ? backups : primaries;
      (servers_[i].backup ? backup_index_ : primary_index_).push_back(i);
      group.push_back(servers_[i]);
    }
    primaries_ = make_algorithm(options, std::move(primaries));
    backups_ = make_algorithm(options, std::move(backups));
    update_primaries_up();
  }

  std::optional<uint32_t> pick(const PickContext& context) override {
    std::optional<uint32_t> primary;
    if (primaries_up_.load(std::memory_order_relaxed)) {
      primary = pick_in(*primaries_, primary_index_, context);
      if (primary && !context.avoids(*primary)) return primary;
    }
    const auto backup = pick_in(*backups_, backup_index_, context);
    if (backup && !context.avoids(*backup)) return backup;
    return primary ? primary : backup;
  }

  void continue_from(const Scheduler& previous) override {
    if (const auto* same = dynamic_cast<const WithBackups*>(&previous)) {
      primaries_->continue_from(*same->primaries_);
      backups_->continue_from(*same->backups_);
    }
  }

  void rebuild() override {
    primaries_->rebuild();
    backups_->rebuild();
    update_primaries_up();
  }

  // The table of the group that serves.
  std::optional<uint64_t> table_checksum() const override {
    return primaries_up_.load(std::memory_order_relaxed) ? primaries_->table_checksum()
                                                         : backups_->table_checksum();
  }

 private:
  void update_primaries_up() {
    bool up = false;
    for (uint32_t i : primary_index_) up = up || is_up(servers_[i]);
    primaries_up_.store(up, std::memory_order_relaxed);
  }

  // Picks in one group, with the session's failed servers translated to the
  // group's indices; returns a service index.
  static std::optional<uint32_t> pick_in(Scheduler& group, const std::vector<uint32_t>& index,
                                         const PickContext& context) {
    std::vector<uint32_t> failed;
    for (uint32_t i = 0; i < index.size(); ++i) {
      if (context.avoids(index[i])) failed.push_back(i);
    }
    PickContext inner = context;
    inner.failed = failed;
    const auto picked = group.pick(inner);
    if (!picked) return std::nullopt;
    return index[*picked];
  }

  std::vector<SchedServer> servers_;
  std::vector<uint32_t> primary_index_;  // group index -> service index
  std::vector<uint32_t> backup_index_;
  std::unique_ptr<Scheduler> primaries_;
  std::unique_ptr<Scheduler> backups_;
  std::atomic<bool> primaries_up_{true};
};

}  // namespace

std::unique_ptr<Scheduler> make_algorithm(const SchedulerOptions& options,
                                          std::vector<SchedServer> servers) {
  switch (options.kind) {
    case SchedulerKind::rr: return make_rr_scheduler(std::move(servers));
    case SchedulerKind::wrr: return make_wrr_scheduler(std::move(servers), options.workers);
    case SchedulerKind::lc: return make_lc_scheduler(std::move(servers), false, options.load_index);
    case SchedulerKind::wlc: return make_lc_scheduler(std::move(servers), true, options.load_index);
    case SchedulerKind::maglev:
      return make_maglev_scheduler(std::move(servers), options.hash_key, options.workers);
    case SchedulerKind::p2c: return make_p2c_scheduler(std::move(servers));
  }
  return make_rr_scheduler(std::move(servers));
}

std::unique_ptr<Scheduler> make_scheduler(const SchedulerOptions& options,
                                          std::vector<SchedServer> servers) {
  for (const auto& server : servers) {
    if (server.backup) return std::make_unique<WithBackups>(options, std::move(servers));
  }
  return make_algorithm(options, std::move(servers));
}

}  // namespace fulcrum
