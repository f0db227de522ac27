// The kernel's data plane (SPEC.md "Forwarding in the kernel"): applies
// each change set of the control plane to fulcrum's nftables tables, in one
// transaction that carries only the difference from what it installed
// last. Services of `forwarding: proxy` never touch nftables: without a
// kernel service, no netlink socket is even opened.
#pragma once

#include <memory>
#include <string>

#include "fulcrum/data_plane.hpp"
#include "fulcrum/kernel_rules.hpp"
#include "fulcrum/nft_ruleset.hpp"
#include "fulcrum/nftables.hpp"

namespace fulcrum {

class KernelPlane final : public DataPlane {
 public:
  // The first transaction replaces any table a previous run left (a crash)
  // with this snapshot's; later ones send the difference. A failed
  // transaction changes nothing in the kernel: it is logged, kept in
  // error(), and the next change set tries again from what is installed.
  void apply(const ChangeSet& changes) override;

  // The last transaction's failure, or empty when the kernel has what the
  // last change set asked for.
  const std::string& error() const { return error_; }
  // Stop: deletes the tables this process installed, nothing else.
  void remove();
  // Reads the servers' counters of new flows into their state's
  // `total` (and each service's, their sum): /stats, /metrics and the
  // dashboard show kernel services as the proxy's. Main thread, periodic.
  void read_counters(const Snapshot& snapshot);

 private:
  std::string run(const std::string& script);

  std::unique_ptr<Nftables> nft_;  // made on first use
  KernelNames names_;
  NftRuleset installed_;
  bool replaced_ = false;  // the start's replacing transaction went through
  std::string error_;
};

}  // namespace fulcrum
