#include "fulcrum/kernel_plane.hpp"

#include <algorithm>
#include <chrono>
#include <set>

#include "fulcrum/conntrack.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/nft_counters.hpp"

namespace fulcrum {

namespace {

// nft quotes the failing line of the script in its error; a line of Maglev
// slots is long.
constexpr size_t kErrorLimit = 1000;

std::string shortened(std::string error) {
  if (error.size() > kErrorLimit) error = error.substr(0, kErrorLimit) + "...";
  return error;
}

bool touches_kernel(const ChangeSet& changes) {
  return changes.is_new ||
         std::any_of(changes.services.begin(), changes.services.end(),
                     [](const ServiceRuntime* s) { return in_kernel(s->config->forwarding); });
}

int64_t microseconds_since(std::chrono::steady_clock::time_point started) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                               started)
      .count();
}

// A kernel server's `active` is its conntrack count, which only
// count_active_flows() writes. One that a reload removes, or hands to a
// proxy service, is no longer counted: its count goes back to 0, or the
// registry would never forget its state, and proxy sessions would count on
// top of flows of another mode.
void forget_active_counts(const Snapshot& previous, const Snapshot& next) {
  std::set<const void*> still_counted;
  for (const ServiceRuntime& service : next.services) {
    if (!in_conntrack(service.config->forwarding)) continue;
    still_counted.insert(service.state.get());
    for (const ServerRuntime& server : service.servers) still_counted.insert(server.state.get());
  }
  for (const ServiceRuntime& service : previous.services) {
    if (!in_conntrack(service.config->forwarding)) continue;
    if (!still_counted.contains(service.state.get()))
      service.state->active.store(0, std::memory_order_relaxed);
    for (const ServerRuntime& server : service.servers) {
      if (!still_counted.contains(server.state.get()))
        server.state->active.store(0, std::memory_order_relaxed);
    }
  }
}

}  // namespace

std::string KernelPlane::check(const ChangeSet& changes) {
  KernelNames names = names_;  // a rejected reload leaves no name behind
  NftRuleset wanted = kernel_ruleset(*changes.snapshot, names);
  if (wanted.empty() || wanted == checked_) return "";
  // The difference from what is installed costs what the change costs; the
  // whole table, if that fails, tells a table someone else changed from
  // rules the kernel refuses.
  std::string failed;
  if (replaced_) failed = run(nft_transaction(installed_, wanted), true);
  if (!replaced_ || !failed.empty()) failed = run(nft_transaction({}, wanted, true), true);
  if (!failed.empty()) return "kernel rules refused: " + shortened(std::move(failed));
  checked_ = std::move(wanted);
  return "";
}

void KernelPlane::apply(const ChangeSet& changes) {
  if (changes.previous) forget_active_counts(*changes.previous, *changes.snapshot);
  // A health or weight change in proxy services only: nothing to render.
  if (!touches_kernel(changes)) return;
  const auto started = std::chrono::steady_clock::now();
  NftRuleset wanted = kernel_ruleset(*changes.snapshot, names_);
  if (wanted.empty() && installed_.empty() && !replaced_) return;  // proxy only, as ever
  std::string failed = install(wanted, !replaced_);
  if (!failed.empty() && replaced_) {
    const std::string change_failed = shortened(std::move(failed));
    failed = install(wanted, true);
    if (failed.empty())
      log_warn("kernel rules replaced after a failed change", {{"error", change_failed}});
  }
  if (!failed.empty()) {
    error_ = shortened(std::move(failed));
    log_error("kernel rules not applied", {{"error", error_}});
    return;
  }
  log_debug("kernel rules applied", {{"generation", changes.snapshot->generation},
                                     {"took_us", microseconds_since(started)}});
  if (!error_.empty()) log_info("kernel rules applied again after a failure");
  error_.clear();
  replaced_ = true;
}

std::string KernelPlane::install(NftRuleset& wanted, bool replace) {
  const std::string script = nft_transaction(installed_, wanted, replace);
  if (script.empty()) return "";
  std::string failed = run(script);
  if (failed.empty()) installed_ = std::move(wanted);
  return failed;
}

void KernelPlane::remove() {
  if (installed_.empty()) return;
  std::set<std::string> families;
  for (const auto& entry : installed_) families.insert(entry.first);
  if (const std::string failed = run(nft_delete_tables(families)); !failed.empty()) {
    log_error("cannot remove kernel rules", {{"error", failed}});
    return;
  }
  installed_.clear();
}

void KernelPlane::read_counters(const Snapshot& snapshot) {
  if (installed_.empty()) return;
  read_nft_counters_into(snapshot);
  count_active_flows(snapshot);
}

void KernelPlane::read_nft_counters_into(const Snapshot& snapshot) {
  std::map<std::string, NftCounter> counters;
  for (const auto& entry : installed_) {
    std::optional<std::map<std::string, NftCounter>> read = read_nft_counters(entry.first);
    if (!read) return;
    counters.merge(*read);
  }
  const auto value = [&](const std::string& name) {
    const auto found = counters.find(name);
    return found == counters.end() ? NftCounter{} : found->second;
  };
  for (const ServiceRuntime& service : snapshot.services) {
    if (!in_kernel(service.config->forwarding)) continue;
    ServiceState& totals = *service.state;
    NftCounter flows, in, out;
    for (const ServerRuntime& server : service.servers) {
      const std::string chain = names_.server(service.config->name, server.config->name);
      // nat, fullnat: i and o count every packet of the server's flows;
      // dsr: b counts what passes this host, the clients' side only.
      const NftCounter server_flows = value("c" + chain);
      const NftCounter server_in =
          value((service.config->forwarding == Forwarding::dsr ? "b" : "i") + chain);
      const NftCounter server_out = value("o" + chain);
      ServerState& state = *server.state;
      state.total.store(server_flows.packets, std::memory_order_relaxed);
      state.bytes_in.store(server_in.bytes, std::memory_order_relaxed);
      state.bytes_out.store(server_out.bytes, std::memory_order_relaxed);
      state.packets_in.store(server_in.packets, std::memory_order_relaxed);
      state.packets_out.store(server_out.packets, std::memory_order_relaxed);
      flows.packets += server_flows.packets;
      in.bytes += server_in.bytes;
      in.packets += server_in.packets;
      out.bytes += server_out.bytes;
      out.packets += server_out.packets;
    }
    totals.total.store(flows.packets, std::memory_order_relaxed);
    totals.bytes_in.store(in.bytes, std::memory_order_relaxed);
    totals.bytes_out.store(out.bytes, std::memory_order_relaxed);
    totals.packets_in.store(in.packets, std::memory_order_relaxed);
    totals.packets_out.store(out.packets, std::memory_order_relaxed);
    if (service.config->forwarding == Forwarding::dsr) {
      const uint64_t not_remembered = value("f" + names_.service(service.config->name)).packets;
      totals.packets_not_remembered.store(not_remembered, std::memory_order_relaxed);
      watch_flow_memory(service, not_remembered);
    }
  }
}

void KernelPlane::watch_flow_memory(const ServiceRuntime& service, uint64_t not_remembered) {
  FlowMemoryWarning& warning = flow_memory_warnings_[service.config->name];
  // The counter lives as long as the service: a smaller value is a new
  // service of the same name.
  if (not_remembered < warning.logged) warning = {};
  const auto now = std::chrono::steady_clock::now();
  if (not_remembered == warning.logged || now - warning.at < std::chrono::minutes(1)) return;
  log_warn("dsr flow memory full", {{"service", service.config->name},
                                    {"packets", not_remembered - warning.logged},
                                    {"flows", service.config->dsr->flows}});
  warning = {not_remembered, now};
}

void KernelPlane::count_active_flows(const Snapshot& snapshot) {
  const bool any =
      std::any_of(snapshot.services.begin(), snapshot.services.end(),
                  [](const ServiceRuntime& s) { return in_conntrack(s.config->forwarding); });
  if (!any) return;
  watch_conntrack_fill();
  flow_counter_.start();
  const std::optional<FlowCounts> latest = flow_counter_.latest();
  if (!latest) return;
  const FlowCounts& counted = *latest;
  if (!counted.error.empty()) {
    if (counted.error != flow_count_error_)
      log_error("cannot count active flows", {{"error", counted.error}});
    flow_count_error_ = counted.error;
    return;
  }
  flow_count_error_.clear();
  for (const ServiceRuntime& service : snapshot.services) {
    if (!in_conntrack(service.config->forwarding)) continue;
    uint64_t active = 0;
    for (const ServerRuntime& server : service.servers) {
      const auto found =
          counted.by_mark.find(names_.flow_mark(service.config->name, server.config->name));
      const uint64_t flows = found == counted.by_mark.end() ? 0 : found->second;
      server.state->active.store(static_cast<uint32_t>(flows), std::memory_order_relaxed);
      active += flows;
    }
    service.state->active.store(active, std::memory_order_relaxed);
  }
}

void KernelPlane::forget_flows_of(const std::vector<ServerDownPlane::Down>& down) {
  std::set<uint32_t> marks;
  for (const auto& [service, server] : down)
    marks.insert(names_.flow_mark(service->config->name, server->config->name));
  const FlowCounts forgotten = forget_flows(marks);
  for (const auto& [service, server] : down) {
    const std::string& service_name = service->config->name;
    const std::string& server_name = server->config->name;
    if (!forgotten.error.empty()) {
      log_error("cannot forget flows",
                {{"service", service_name}, {"server", server_name}, {"error", forgotten.error}});
      continue;
    }
    const auto found = forgotten.by_mark.find(names_.flow_mark(service_name, server_name));
    const uint64_t flows = found == forgotten.by_mark.end() ? 0 : found->second;
    server->state->closed_on_down.fetch_add(flows, std::memory_order_relaxed);
    log_info("flows forgotten",
             {{"service", service_name}, {"server", server_name}, {"flows", flows}});
  }
}

void KernelPlane::watch_conntrack_fill() {
  const std::optional<ConntrackFill> fill = conntrack_fill();
  if (!fill) return;
  // Warn at 90 %, tell once below 80 %: a table hovering at the line
  // does not repeat the warning every second.
  if (!conntrack_nearly_full_ && fill->entries * 10 >= fill->max * 9) {
    conntrack_nearly_full_ = true;
    log_warn("conntrack table nearly full", {{"entries", fill->entries}, {"max", fill->max}});
  } else if (conntrack_nearly_full_ && fill->entries * 10 < fill->max * 8) {
    conntrack_nearly_full_ = false;
    log_info("conntrack table has room again", {{"entries", fill->entries}, {"max", fill->max}});
  }
}

std::string KernelPlane::run(const std::string& script, bool dry_run) {
  if (!nft_) nft_ = std::make_unique<Nftables>();
  return nft_->run(script, dry_run);
}

}  // namespace fulcrum
