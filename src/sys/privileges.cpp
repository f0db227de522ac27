#include "fulcrum/privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fulcrum {

std::string drop_privileges(const std::string& user, const std::string& group) {
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
  if (::setuid(uid) != 0) return std::string("setuid: ") + std::strerror(errno);
  if (uid != 0 && (::setuid(0) == 0 || ::geteuid() == 0)) return "root could be regained after setuid";
  return "";
}

}  // namespace fulcrum
