#include "fulcrum/kernel_plane.hpp"

#include <chrono>
#include <set>

#include "fulcrum/log.hpp"
#include "fulcrum/nft_counters.hpp"

namespace fulcrum {

namespace {

// nft quotes the failing line of the script in its error; a line of Maglev
// slots is long.
constexpr size_t kErrorLimit = 1000;

}  // namespace

void KernelPlane::apply(const ChangeSet& changes) {
  NftRuleset wanted = kernel_ruleset(*changes.snapshot, names_);
  if (wanted.empty() && installed_.empty() && !replaced_) return;  // proxy only, as ever
  const std::string script = nft_transaction(installed_, wanted, !replaced_);
  if (script.empty()) return;
  const auto started = std::chrono::steady_clock::now();
  if (std::string failed = run(script); !failed.empty()) {
    if (failed.size() > kErrorLimit) failed = failed.substr(0, kErrorLimit) + "...";
    error_ = failed;
    log_error("kernel rules not applied", {{"error", error_}});
    return;
  }
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);
  log_debug("kernel rules applied",
            {{"generation", changes.snapshot->generation}, {"took_us", took.count()}});
  if (!error_.empty()) log_info("kernel rules applied again after a failure");
  error_.clear();
  installed_ = std::move(wanted);
  replaced_ = true;
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
  std::map<std::string, NftCounter> counters;
  for (const auto& entry : installed_) {
    std::optional<std::map<std::string, NftCounter>> read = read_nft_counters(entry.first);
    if (!read) return;
    counters.merge(*read);
  }
  for (const ServiceRuntime& service : snapshot.services) {
    if (!in_kernel(service.config->forwarding)) continue;
    uint64_t total = 0;
    uint64_t bytes_in = 0;
    for (const ServerRuntime& server : service.servers) {
      const std::string chain = names_.server(service.config->name, server.config->name);
      if (const auto found = counters.find("c" + chain); found != counters.end()) {
        server.state->total.store(found->second.packets, std::memory_order_relaxed);
        total += found->second.packets;
      }
      // dsr: every packet of a flow passes fulcrum's host, its replies never.
      if (const auto found = counters.find("b" + chain); found != counters.end()) {
        server.state->bytes_in.store(found->second.bytes, std::memory_order_relaxed);
        bytes_in += found->second.bytes;
      }
    }
    service.state->total.store(total, std::memory_order_relaxed);
    if (service.config->forwarding == Forwarding::dsr)
      service.state->bytes_in.store(bytes_in, std::memory_order_relaxed);
  }
}

std::string KernelPlane::run(const std::string& script) {
  if (!nft_) nft_ = std::make_unique<Nftables>();
  return nft_->run(script);
}

}  // namespace fulcrum
