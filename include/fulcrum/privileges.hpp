// Dropping root after the sockets are bound (global.user / global.group).
#pragma once

#include <string>
#include <vector>

#include "fulcrum/config.hpp"

namespace fulcrum {

// Switches the whole process to `user` (and `group`, else the user's own
// group) with setgroups/setgid/setuid, then checks that root cannot be
// regained. Run before any worker thread starts. Returns an empty string on
// success, else the reason. Not running as root: succeeds only if already
// that user. The process keeps exactly the capabilities in `keep`
// (capabilities_to_keep), effective and permitted.
std::string drop_privileges(const std::string& user, const std::string& group,
                            const std::vector<int>& keep);

// What a process switching to global.user keeps: CAP_NET_RAW for
// transparent services (IP_TRANSPARENT), CAP_NET_ADMIN for services
// forwarded in the kernel (nftables, conntrack). Nothing else.
std::vector<int> capabilities_to_keep(const Config& config);

// Before a binary upgrade's exec: a process that is not root loses its
// capabilities at execve(2) unless they are ambient, so every permitted one
// is made inheritable and ambient. Returns the reason it could not (empty:
// done, or nothing to keep).
std::string keep_capabilities_across_exec();

// Why this process could not switch to `user` (and `group`) as
// drop_privileges would, without changing anything: an unknown user or
// group, or not being root while not already them. Empty when it could.
std::string cannot_become(const std::string& user, const std::string& group);

// True when some service of `config` uses address_mode transparent.
bool any_transparent(const Config& config);
// True when some service of `config` is forwarded in the kernel.
bool any_in_kernel(const Config& config);

// Services forwarded in the kernel and global.announce need CAP_NET_ADMIN:
// among the permitted capabilities when root will switch to global.user
// (drop_privileges keeps it), else in the effective set. Returns an empty
// string or the reason (to follow "service NAME: forwarding MODE ";
// preflight words global.announce's own).
std::string kernel_capability_missing(const Config& config);

// Transparent services need CAP_NET_RAW or CAP_NET_ADMIN for
// IP_TRANSPARENT; read from the process's capability sets (capget), no
// socket: CAP_NET_RAW among the permitted ones when root will switch to
// global.user (drop_privileges keeps that one), else either in the
// effective set. Returns an empty string or the reason.
std::string transparent_capability_missing(const Config& config);

// Transparent services need IP_TRANSPARENT for each address family of their
// servers: tried on a socket once start-up's privileges are final, the
// kernel's word after transparent_capability_missing's reading, so that a
// missing capability stops the start with a clear reason instead of failing
// every session. Returns an empty string or the reason.
std::string check_transparent_capability(const Config& config);

}  // namespace fulcrum
