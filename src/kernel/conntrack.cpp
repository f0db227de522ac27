#include "fulcrum/conntrack.hpp"

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>
#include <netinet/in.h>

#include <cstring>
#include <memory>

namespace fulcrum {

namespace {

struct HandleCloser {
  void operator()(nfct_handle* handle) const { nfct_close(handle); }
};
struct EntryFree {
  void operator()(nf_conntrack* entry) const { nfct_destroy(entry); }
};
using Handle = std::unique_ptr<nfct_handle, HandleCloser>;
using Entry = std::unique_ptr<nf_conntrack, EntryFree>;

// The address bytes and port (network order) of `address`.
struct Endpoint {
  int family = AF_UNSPEC;
  unsigned char bytes[16] = {};
  uint16_t port = 0;
};

Endpoint endpoint_of(const SocketAddress& address) {
  Endpoint out;
  out.family = address.family();
  if (out.family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address.storage);
    std::memcpy(out.bytes, &in->sin_addr, 4);
    out.port = in->sin_port;
  } else if (out.family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    std::memcpy(out.bytes, &in6->sin6_addr, 16);
    out.port = in6->sin6_port;
  }
  return out;
}

// True when the entry's address and port attributes equal `endpoint`.
bool matches(const nf_conntrack* entry, const Endpoint& endpoint, nf_conntrack_attr ipv4,
             nf_conntrack_attr ipv6, nf_conntrack_attr port) {
  const size_t length = endpoint.family == AF_INET ? 4 : 16;
  const void* address = nfct_get_attr(entry, endpoint.family == AF_INET ? ipv4 : ipv6);
  return address != nullptr && std::memcmp(address, endpoint.bytes, length) == 0 &&
         nfct_get_attr_u16(entry, port) == endpoint.port;
}

struct Search {
  std::vector<Endpoint> vips;
  Endpoint server;
  uint8_t protocol = 0;
  std::vector<Entry> found;
};

int on_entry(nf_conntrack_msg_type, nf_conntrack* entry, void* data) {
  auto& search = *static_cast<Search*>(data);
  if (nfct_get_attr_u8(entry, ATTR_L4PROTO) != search.protocol) return NFCT_CB_CONTINUE;
  // A TCP connection already closed (TIME_WAIT, CLOSE) is remembered for a
  // while by conntrack, but there is nothing left to close.
  if (search.protocol == IPPROTO_TCP) {
    const uint8_t state = nfct_get_attr_u8(entry, ATTR_TCP_STATE);
    if (state == TCP_CONNTRACK_TIME_WAIT || state == TCP_CONNTRACK_CLOSE) return NFCT_CB_CONTINUE;
  }
  if (!matches(entry, search.server, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC, ATTR_REPL_PORT_SRC)) {
    return NFCT_CB_CONTINUE;
  }
  for (const Endpoint& vip : search.vips) {
    if (matches(entry, vip, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST, ATTR_ORIG_PORT_DST)) {
      search.found.emplace_back(nfct_clone(entry));
      break;
    }
  }
  return NFCT_CB_CONTINUE;
}

}  // namespace

std::optional<uint64_t> forget_flows(const std::vector<SocketAddress>& vips,
                                     const SocketAddress& server, Protocol protocol) {
  Search search;
  for (const SocketAddress& vip : vips) search.vips.push_back(endpoint_of(vip));
  search.server = endpoint_of(server);
  search.protocol = protocol == Protocol::udp ? IPPROTO_UDP : IPPROTO_TCP;

  const Handle handle(nfct_open(CONNTRACK, 0));
  if (!handle) return std::nullopt;
  nfct_callback_register(handle.get(), NFCT_T_ALL, on_entry, &search);
  uint32_t family = search.server.family;
  if (nfct_query(handle.get(), NFCT_Q_DUMP, &family) != 0) return std::nullopt;
  nfct_callback_unregister(handle.get());
  uint64_t deleted = 0;
  for (const Entry& entry : search.found) {
    // Gone meanwhile (the flow ended) is as good as deleted here.
    if (entry && nfct_query(handle.get(), NFCT_Q_DESTROY, entry.get()) == 0) ++deleted;
  }
  return deleted;
}

}  // namespace fulcrum
