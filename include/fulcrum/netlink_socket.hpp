// A libmnl netlink socket that closes itself: the counters' dump
// (nft_counters.cpp) and conntrack's (conntrack.cpp) both speak netfilter
// netlink through one.
#pragma once

#include <libmnl/libmnl.h>

#include <memory>

namespace fulcrum {

struct NetlinkSocketCloser {
  void operator()(mnl_socket* socket) const { mnl_socket_close(socket); }
};
using NetlinkSocket = std::unique_ptr<mnl_socket, NetlinkSocketCloser>;

}  // namespace fulcrum
