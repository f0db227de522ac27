// The few rtnetlink requests announcing VIPs needs (SPEC.md "Announcing
// VIPs to routers"): an interface of fulcrum's own, up, without IPv6
// link-local address, and host addresses (/32, /128) on it. Each request
// waits for the kernel's answer on a socket of its own: they are rare (a
// start, a stop, a service gaining or losing its last usable server) and
// take microseconds. Every function returns an empty string or the
// kernel's error.
#pragma once

#include <string>
#include <vector>

#include "fulcrum/address.hpp"

namespace fulcrum {

// Creates interface `name` of kind `dummy`, or where the kernel has no
// dummy driver a bridge without ports (both hold addresses and carry no
// traffic); up, IPv6 addresses not generated. An interface of that name
// left by an earlier run is taken over: brought up, its addresses
// removed. `kind` gets the kind created or found.
std::string create_announce_interface(const std::string& name, std::string& kind);

// Deletes interface `name`; one that does not exist is not an error.
std::string delete_interface(const std::string& name);

// Adds or removes the host address of `address` (its port is ignored):
// /32 or /128, IPv6 without duplicate address detection. Adding one that
// is there, or removing one that is not, is not an error.
std::string add_host_address(const std::string& interface, const SocketAddress& address);
std::string remove_host_address(const std::string& interface, const SocketAddress& address);

// The addresses on `interface` (ports 0), or an error in `error`.
std::vector<SocketAddress> interface_addresses(const std::string& interface, std::string& error);

}  // namespace fulcrum
