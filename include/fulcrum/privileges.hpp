// Dropping root after the sockets are bound (global.user / global.group).
#pragma once

#include <string>

namespace fulcrum {

// Switches the whole process to `user` (and `group`, else the user's own
// group) with setgroups/setgid/setuid, then checks that root cannot be
// regained. Run before any worker thread starts. Returns an empty string on
// success, else the reason. Not running as root: succeeds only if already
// that user. With `keep_net_raw` the process keeps CAP_NET_RAW (and only
// that), which transparent mode needs for IP_TRANSPARENT.
std::string drop_privileges(const std::string& user, const std::string& group, bool keep_net_raw);

}  // namespace fulcrum
