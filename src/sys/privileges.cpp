#include "fulcrum/privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "fulcrum/socket.hpp"

namespace fulcrum {

namespace {

// Sets the effective and permitted capabilities to exactly `capabilities`
// (none inheritable). glibc has no capset wrapper and libcap would be a
// dependency for these few lines.
bool set_only_capabilities(const std::vector<int>& capabilities) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  for (const int capability : capabilities) {
    data[CAP_TO_INDEX(capability)].effective |= CAP_TO_MASK(capability);
    data[CAP_TO_INDEX(capability)].permitted |= CAP_TO_MASK(capability);
  }
  return ::syscall(SYS_capset, &header, data) == 0;
}

// The process's capability sets, or nullopt (errno set).
std::optional<std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3>> capability_sets() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
  if (::syscall(SYS_capget, &header, data.data()) != 0) return std::nullopt;
  return data;
}

bool has(const std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3>& data,
         uint32_t __user_cap_data_struct::*set, int capability) {
  return (data[CAP_TO_INDEX(capability)].*set & CAP_TO_MASK(capability)) != 0;
}

}  // namespace

std::string keep_capabilities_across_exec() {
  if (::geteuid() == 0) return {};  // root keeps them through the exec
  auto sets = capability_sets();
  if (!sets) return std::string("capget: ") + std::strerror(errno);
  // Under systemd's AmbientCapabilities= every one is ambient already, and
  // the unit's system call filter refuses capset (it is in @privileged):
  // the upgrade failed with "capset: Operation not permitted".
  bool all_ambient = true;
  for (int capability = 0; capability <= CAP_LAST_CAP; ++capability) {
    if (has(*sets, &__user_cap_data_struct::permitted, capability) &&
        ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, capability, 0L, 0L) != 1)
      all_ambient = false;
  }
  if (all_ambient) return {};
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  for (auto& set : *sets) set.inheritable = set.permitted;
  if (::syscall(SYS_capset, &header, sets->data()) != 0)
    return std::string("capset: ") + std::strerror(errno);
  for (int capability = 0; capability <= CAP_LAST_CAP; ++capability) {
    if (!has(*sets, &__user_cap_data_struct::permitted, capability)) continue;
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, capability, 0L, 0L) != 0)
      return std::string("prctl(PR_CAP_AMBIENT_RAISE): ") + std::strerror(errno);
  }
  return {};
}

namespace {

struct Identity {
  uid_t uid = 0;
  gid_t gid = 0;
};

// `user`'s uid and `group`'s gid (else the user's own group), or the reason
// there are none.
std::optional<Identity> look_up(const std::string& user, const std::string& group,
                                std::string& error) {
  const passwd* account = ::getpwnam(user.c_str());
  if (account == nullptr) {
    error = "unknown user \"" + user + "\"";
    return std::nullopt;
  }
  Identity identity{account->pw_uid, account->pw_gid};
  if (!group.empty()) {
    const struct group* entry = ::getgrnam(group.c_str());
    if (entry == nullptr) {
      error = "unknown group \"" + group + "\"";
      return std::nullopt;
    }
    identity.gid = entry->gr_gid;
  }
  return identity;
}

// Without root the process can only already be `identity`.
std::string unreachable_without_root(const Identity& identity, const std::string& user) {
  if (::geteuid() == identity.uid && ::getegid() == identity.gid) return "";
  return "not running as root, cannot switch to user \"" + user + "\"";
}

}  // namespace

std::string cannot_become(const std::string& user, const std::string& group) {
  std::string error;
  const std::optional<Identity> identity = look_up(user, group, error);
  if (!identity) return error;
  return ::geteuid() == 0 ? "" : unreachable_without_root(*identity, user);
}

std::string drop_privileges(const std::string& user, const std::string& group,
                            const std::vector<int>& keep) {
  const bool keep_any = !keep.empty();
  std::string error;
  const std::optional<Identity> identity = look_up(user, group, error);
  if (!identity) return error;
  const uid_t uid = identity->uid;
  const gid_t gid = identity->gid;
  if (::geteuid() != 0) return unreachable_without_root(*identity, user);
  // Supplementary groups first (they need root), then the group, then the
  // user: the other order would lose the right to change the rest.
  if (::setgroups(1, &gid) != 0) return std::string("setgroups: ") + std::strerror(errno);
  if (::setgid(gid) != 0) return std::string("setgid: ") + std::strerror(errno);
  // setuid() clears every capability unless asked to keep the permitted
  // ones; they are cut down to `keep` right after.
  if (keep_any && ::prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0) {
    return std::string("prctl(PR_SET_KEEPCAPS): ") + std::strerror(errno);
  }
  if (::setuid(uid) != 0) return std::string("setuid: ") + std::strerror(errno);
  if (keep_any) {
    ::prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);
    if (!set_only_capabilities(keep)) return std::string("capset: ") + std::strerror(errno);
  }
  if (uid != 0 && (::setuid(0) == 0 || ::geteuid() == 0))
    return "root could be regained after setuid";
  return "";
}

bool any_transparent(const Config& config) {
  return std::any_of(config.services.begin(), config.services.end(), [](const ServiceConfig& s) {
    return s.address_mode == AddressMode::transparent;
  });
}

bool any_in_kernel(const Config& config) {
  return std::any_of(config.services.begin(), config.services.end(),
                     [](const ServiceConfig& s) { return in_kernel(s.forwarding); });
}

std::vector<int> capabilities_to_keep(const Config& config) {
  std::vector<int> keep;
  if (any_transparent(config)) keep.push_back(CAP_NET_RAW);
  if (any_in_kernel(config) || config.global.announce) keep.push_back(CAP_NET_ADMIN);
  return keep;
}

std::string transparent_capability_missing(const Config& config) {
  if (!any_transparent(config)) return "";
  const auto data = capability_sets();
  if (!data) return std::string("capget: ") + std::strerror(errno);
  // Root switching to global.user keeps CAP_NET_RAW (drop_privileges).
  const bool switching = !config.global.user.empty() && ::geteuid() == 0;
  const bool enough = switching ? has(*data, &__user_cap_data_struct::permitted, CAP_NET_RAW)
                                : has(*data, &__user_cap_data_struct::effective, CAP_NET_RAW) ||
                                      has(*data, &__user_cap_data_struct::effective, CAP_NET_ADMIN);
  if (enough) return "";
  return switching ? "address_mode transparent needs CAP_NET_RAW, which fulcrum keeps when it "
                     "switches to user \"" +
                         config.global.user + "\"; this process does not have it"
                   : "address_mode transparent needs CAP_NET_RAW or CAP_NET_ADMIN";
}

std::string kernel_capability_missing(const Config& config) {
  if (!any_in_kernel(config) && !config.global.announce) return "";
  const auto data = capability_sets();
  if (!data) return std::string("capget: ") + std::strerror(errno);
  const bool switching = !config.global.user.empty() && ::geteuid() == 0;
  if (has(*data,
          switching ? &__user_cap_data_struct::permitted : &__user_cap_data_struct::effective,
          CAP_NET_ADMIN)) {
    return "";
  }
  return "needs CAP_NET_ADMIN to program nftables";
}

std::string check_transparent_capability(const Config& config) {
  for (const ServiceConfig& service : config.services) {
    if (service.address_mode != AddressMode::transparent) continue;
    for (const ServerConfig& server : service.servers) {
      const int family = server.address.family();
      if (int e = check_transparent_allowed(family); e != 0) {
        return "service " + service.name +
               ": address_mode transparent needs CAP_NET_RAW or CAP_NET_ADMIN (" +
               (family == AF_INET6 ? "IPV6_TRANSPARENT: " : "IP_TRANSPARENT: ") + errno_string(e) +
               ")";
      }
    }
  }
  return "";
}

}  // namespace fulcrum
