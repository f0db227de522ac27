#include "fulcrum/announcer.hpp"

#include <netinet/in.h>

#include <algorithm>

#include "fulcrum/log.hpp"
#include "fulcrum/rtnetlink.hpp"

namespace fulcrum {

namespace {

bool is_loopback(const SocketAddress& address) {
  if (address.family() == AF_INET) {
    const auto& in4 = reinterpret_cast<const sockaddr_in&>(address.storage);
    return (ntohl(in4.sin_addr.s_addr) >> 24) == 127;
  }
  const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address.storage);
  return IN6_IS_ADDR_LOOPBACK(&in6.sin6_addr);
}

bool has_usable_server(const ServiceRuntime& service) {
  return std::any_of(service.servers.begin(), service.servers.end(), [](const ServerRuntime& s) {
    return s.state->status() == ServerStatus::up && s.state->weight() > 0;
  });
}

}  // namespace

std::vector<Announcer::Vip> announce_plan(const Snapshot& snapshot) {
  std::vector<Announcer::Vip> plan;
  for (const ServiceRuntime& service : snapshot.services) {
    const bool usable = has_usable_server(service);
    for (const SocketAddress& listen : service.config->listen) {
      if (listen.is_wildcard() || is_loopback(listen)) continue;
      const SocketAddress host = listen.with_port(0);
      auto vip = std::find_if(plan.begin(), plan.end(),
                              [&](const Announcer::Vip& v) { return v.address == host; });
      if (vip == plan.end()) vip = plan.insert(plan.end(), Announcer::Vip{host, {}, false, false});
      if (std::find(vip->services.begin(), vip->services.end(), service.config->name) ==
          vip->services.end())
        vip->services.push_back(service.config->name);
      vip->usable = vip->usable || usable;
    }
  }
  return plan;
}

Announcer::~Announcer() { remove(); }

void Announcer::apply(const ChangeSet& changes) {
  const auto& announce = changes.snapshot->config.global.announce;
  if (changes.is_new) set_interface(announce ? announce->interface : std::string());
  if (interface_.empty()) {
    vips_.clear();
    return;
  }
  std::vector<Vip> plan = announce_plan(*changes.snapshot);
  for (Vip& vip : plan) {
    const auto before = std::find_if(vips_.begin(), vips_.end(),
                                     [&](const Vip& v) { return v.address == vip.address; });
    vip.announced = before != vips_.end() && before->announced;
  }
  // Addresses no service listens on any more are withdrawn too.
  for (const Vip& old : vips_) {
    const bool kept = std::any_of(plan.begin(), plan.end(),
                                  [&](const Vip& v) { return v.address == old.address; });
    if (!kept && old.announced) plan.push_back({old.address, {}, false, true});
  }
  vips_ = std::move(plan);
  reconcile();
  std::erase_if(vips_, [](const Vip& v) { return v.services.empty() && !v.announced; });
}

// Withdraws before it announces: a router never sees the new address while
// one it should forget is still there.
void Announcer::reconcile() {
  error_.clear();
  const auto change = [this](Vip& vip, bool announce) {
    const std::string failed = announce ? add_host_address(interface_, vip.address)
                                        : remove_host_address(interface_, vip.address);
    if (!failed.empty()) {
      log_error(announce ? "cannot announce" : "cannot withdraw",
                {{"address", vip.address.host_string()}, {"error", failed}});
      error_ = failed;
      return;
    }
    vip.announced = announce;
    std::string services;
    for (const std::string& name : vip.services) services += (services.empty() ? "" : ",") + name;
    const char* reason = announce               ? "a server is usable"
                         : withdrawn_           ? "stopping"
                         : vip.services.empty() ? "no service listens on it"
                                                : "no usable server";
    log_info(announce ? "vip announced" : "vip withdrawn", {{"address", vip.address.host_string()},
                                                            {"interface", interface_},
                                                            {"services", services},
                                                            {"reason", reason}});
  };
  for (Vip& vip : vips_) {
    const bool wanted = vip.usable && !withdrawn_;
    if (vip.announced && !wanted) change(vip, false);
  }
  for (Vip& vip : vips_) {
    const bool wanted = vip.usable && !withdrawn_;
    if (!vip.announced && wanted) change(vip, true);
  }
}

void Announcer::set_interface(const std::string& name) {
  if (name == interface_) return;
  if (!interface_.empty()) {
    const bool was_withdrawn = withdrawn_;
    withdraw_all();
    withdrawn_ = was_withdrawn;
    remove();
  }
  if (name.empty()) return;
  if (const std::string failed = create_announce_interface(name, kind_); !failed.empty()) {
    log_error("cannot create announce interface", {{"interface", name}, {"error", failed}});
    error_ = failed;
    return;
  }
  interface_ = name;
  log_info("announce interface ready", {{"interface", name}, {"kind", kind_}});
}

bool Announcer::withdraw_all() {
  withdrawn_ = true;
  const bool any =
      std::any_of(vips_.begin(), vips_.end(), [](const Vip& v) { return v.announced; });
  if (!interface_.empty()) reconcile();
  return any;
}

void Announcer::remove() {
  if (interface_.empty()) return;
  if (const std::string failed = delete_interface(interface_); !failed.empty())
    log_error("cannot delete announce interface", {{"interface", interface_}, {"error", failed}});
  interface_.clear();
  kind_.clear();
  vips_.clear();
}

}  // namespace fulcrum
