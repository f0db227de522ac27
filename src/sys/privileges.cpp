#include "fulcrum/privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "fulcrum/socket.hpp"

namespace fulcrum {

namespace {

// Sets the effective and permitted capabilities to exactly `capability`
// (none inheritable). glibc has no capset wrapper and libcap would be a
// dependency for these few lines.
bool set_only_capability(int capability) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  data[CAP_TO_INDEX(capability)].effective = CAP_TO_MASK(capability);
  data[CAP_TO_INDEX(capability)].permitted = CAP_TO_MASK(capability);
  return ::syscall(SYS_capset, &header, data) == 0;
}

}  // namespace

std::string drop_privileges(const std::string& user, const std::string& group, bool keep_net_raw) {
  const passwd* account = ::getpwnam(user.c_str());
  if (account == nullptr) return "unknown user \"" + user + "\"";
  const uid_t uid = account->pw_uid;
  gid_t gid = account->pw_gid;
  if (!group.empty()) {
    const struct group* entry = ::getgrnam(group.c_str());
    if (entry == nullptr) return "unknown group \"" + group + "\"";
    gid = entry->gr_gid;
  }
  if (::geteuid() != 0) {
    if (::geteuid() == uid && ::getegid() == gid) return "";
    return "not running as root, cannot switch to user \"" + user + "\"";
  }
  // Supplementary groups first (they need root), then the group, then the
  // user: the other order would lose the right to change the rest.
  if (::setgroups(1, &gid) != 0) return std::string("setgroups: ") + std::strerror(errno);
  if (::setgid(gid) != 0) return std::string("setgid: ") + std::strerror(errno);
  // setuid() clears every capability unless asked to keep the permitted
  // ones; they are cut down to CAP_NET_RAW right after.
  if (keep_net_raw && ::prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0) {
    return std::string("prctl(PR_SET_KEEPCAPS): ") + std::strerror(errno);
  }
  if (::setuid(uid) != 0) return std::string("setuid: ") + std::strerror(errno);
  if (keep_net_raw) {
    ::prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);
    if (!set_only_capability(CAP_NET_RAW)) return std::string("capset: ") + std::strerror(errno);
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
