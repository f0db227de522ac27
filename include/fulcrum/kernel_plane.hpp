// The kernel's data plane (SPEC.md "Forwarding in the kernel"): applies
// each change set of the control plane to fulcrum's nftables tables, in one
// transaction that carries only the difference from what it installed
// last. Services of `forwarding: proxy` never touch nftables: without a
// kernel service, no netlink socket is even opened.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fulcrum/data_plane.hpp"
#include "fulcrum/flow_counter.hpp"
#include "fulcrum/kernel_rules.hpp"
#include "fulcrum/nft_ruleset.hpp"
#include "fulcrum/nftables.hpp"
#include "fulcrum/server_down_plane.hpp"

namespace fulcrum {

class KernelPlane final : public DataPlane {
 public:
  // A reload's snapshot, before it is installed: its rules, with every
  // server up, are sent to the kernel in a dry run (nft --check) as the
  // difference from what is installed (else as a whole table), so that a
  // configuration the kernel refuses is a rejected reload, not a running
  // one without rules. Skipped when those rules are the ones the kernel
  // last accepted.
  std::string check(const ChangeSet& changes) override;
  // The first transaction replaces any table a previous run left (a crash)
  // with this snapshot's; later ones send the difference. A failed
  // difference (someone deleted or changed fulcrum's table) is followed at
  // once by a replacing transaction. A failed transaction changes nothing
  // in the kernel: it is logged, kept in error(), and the next change set
  // tries again from what is installed.
  void apply(const ChangeSet& changes) override;

  // The last transaction's failure, or empty when the kernel has what the
  // last change set asked for.
  const std::string& error() const { return error_; }
  // Stop: deletes the tables this process installed, nothing else.
  void remove();
  // Main thread, periodic: reads the servers' counters (new flows, bytes
  // and packets per direction) and counts their active flows in conntrack,
  // into their states: /stats, /metrics and the dashboard show kernel
  // services as the proxy's. The active flows are the last count of a
  // thread of their own (flow_counter.hpp). Warns when the conntrack table
  // is nearly full (new flows get dropped), and when a dsr service's flow
  // memory is full (at most once a minute per service).
  void read_counters(const Snapshot& snapshot);
  // on_server_down: close for nat and fullnat: forgets the conntrack
  // entries of the servers just marked down (one conntrack dump for all),
  // counts them in closed_on_down and logs one line per server.
  void forget_flows_of(const std::vector<ServerDownPlane::Down>& down);

 private:
  std::string run(const std::string& script, bool dry_run = false);
  // Tries the transaction from `installed_` (or a replacing one) to
  // `wanted`; empty or nft's error.
  std::string install(NftRuleset& wanted, bool replace);
  void read_nft_counters_into(const Snapshot& snapshot);
  void count_active_flows(const Snapshot& snapshot);
  void watch_conntrack_fill();
  void watch_flow_memory(const ServiceRuntime& service, uint64_t not_remembered);

  std::unique_ptr<Nftables> nft_;  // made on first use
  KernelNames names_;
  NftRuleset installed_;
  NftRuleset checked_;     // the last rules a dry run accepted
  bool replaced_ = false;  // the start's replacing transaction went through
  std::string error_;
  std::string flow_count_error_;  // logged once per failure streak
  FlowCounter flow_counter_;
  bool conntrack_nearly_full_ = false;  // warned; told again once below 80 %
  // Per dsr service: packets not remembered when its last warning was
  // logged, and when.
  struct FlowMemoryWarning {
    uint64_t logged = 0;
    std::chrono::steady_clock::time_point at{};
  };
  std::map<std::string, FlowMemoryWarning> flow_memory_warnings_;
};

}  // namespace fulcrum
