// ctnetlink spoken over libmnl. libnetfilter_conntrack turns every entry of
// a dump into an object with all its attributes, about 2.5 µs each here:
// a table of 100,000 flows took a quarter of a second to count, on the main
// thread. Counting needs two attributes of each message (the mark, the TCP
// state), forgetting a third (the original tuple, sent back as it came), so
// the messages are read in place.
#include "fulcrum/conntrack.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <vector>

#include "fulcrum/kernel_rules.hpp"
#include "fulcrum/netlink_socket.hpp"
#include "fulcrum/socket.hpp"

namespace fulcrum {

namespace {

// What forgetting an entry takes: its family, its original tuple exactly as
// the kernel sent it (a nested attribute) and its id, so that a new flow
// that took the same tuple meanwhile is not the one deleted.
struct Doomed {
  uint32_t mark = 0;
  uint8_t family = 0;
  std::vector<char> tuple;
  std::optional<uint32_t> id;  // network order, as sent
};

struct Dump {
  const std::set<uint32_t>* forget = nullptr;  // null: count only
  std::map<uint32_t, uint64_t> active;
  std::vector<Doomed> doomed;
};

// The attributes of one level, by type; the others are left null.
template <size_t N>
struct Attributes {
  std::array<const nlattr*, N> by_type{};
};

template <size_t N>
int keep_attribute(const nlattr* attribute, void* data) {
  auto& attributes = *static_cast<Attributes<N>*>(data);
  const uint16_t type = mnl_attr_get_type(attribute);
  if (type < N) attributes.by_type[type] = attribute;
  return MNL_CB_OK;
}

template <size_t N>
Attributes<N> nested(const nlattr* attribute) {
  Attributes<N> out;
  if (attribute != nullptr) mnl_attr_parse_nested(attribute, keep_attribute<N>, &out);
  return out;
}

// TCP connections already closed (TIME_WAIT, CLOSE): not active, nothing
// to close. Only TCP entries carry a TCP state.
bool closed_tcp(const nlattr* protoinfo) {
  const nlattr* tcp = nested<CTA_PROTOINFO_MAX + 1>(protoinfo).by_type[CTA_PROTOINFO_TCP];
  const nlattr* state = nested<CTA_PROTOINFO_TCP_MAX + 1>(tcp).by_type[CTA_PROTOINFO_TCP_STATE];
  if (state == nullptr) return false;
  const uint8_t value = mnl_attr_get_u8(state);
  return value == TCP_CONNTRACK_TIME_WAIT || value == TCP_CONNTRACK_CLOSE;
}

// mnl_cb_run's callback: one conntrack entry per message.
int on_entry(const nlmsghdr* message, void* data) {
  auto& dump = *static_cast<Dump*>(data);
  Attributes<CTA_MAX + 1> entry;
  if (mnl_attr_parse(message, sizeof(nfgenmsg), keep_attribute<CTA_MAX + 1>, &entry) < 0)
    return MNL_CB_OK;
  const nlattr* mark = entry.by_type[CTA_MARK];
  if (mark == nullptr || closed_tcp(entry.by_type[CTA_PROTOINFO])) return MNL_CB_OK;
  const uint32_t flow_mark = ntohl(mnl_attr_get_u32(mark));
  if (dump.forget == nullptr) {
    ++dump.active[flow_mark];
    return MNL_CB_OK;
  }
  const nlattr* tuple = entry.by_type[CTA_TUPLE_ORIG];
  if (!dump.forget->contains(flow_mark) || tuple == nullptr) return MNL_CB_OK;
  Doomed doomed;
  doomed.mark = flow_mark;
  doomed.family = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(message))->nfgen_family;
  const auto* bytes = reinterpret_cast<const char*>(tuple);
  doomed.tuple.assign(bytes, bytes + mnl_attr_get_len(tuple));
  if (const nlattr* id = entry.by_type[CTA_ID]) doomed.id = mnl_attr_get_u32(id);
  dump.doomed.push_back(std::move(doomed));
  return MNL_CB_OK;
}

// A ctnetlink request: header, nfgenmsg of `family`.
nlmsghdr* put_request(char* buffer, uint16_t message, uint16_t flags, uint8_t family,
                      uint32_t sequence) {
  nlmsghdr* request = mnl_nlmsg_put_header(buffer);
  request->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | message;
  request->nlmsg_flags = NLM_F_REQUEST | flags;
  request->nlmsg_seq = sequence;
  auto* header = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(request, sizeof(nfgenmsg)));
  header->nfgen_family = family;
  header->version = NFNETLINK_V0;
  header->res_id = 0;
  return request;
}

class Conntrack {
 public:
  // Empty, or why the socket could not be had.
  std::string open() {
    socket_.reset(mnl_socket_open(NETLINK_NETFILTER));
    if (!socket_ || mnl_socket_bind(socket_.get(), 0, MNL_SOCKET_AUTOPID) < 0)
      return "conntrack: " + errno_string(errno);
    port_ = mnl_socket_get_portid(socket_.get());
    return "";
  }

  // Walks fulcrum's flows, both families: the kernel filters the dump by
  // the mark's tag. Empty, or why it failed.
  std::string walk(Dump& dump) {
    nlmsghdr* request =
        put_request(buffer_.data(), IPCTNL_MSG_CT_GET, NLM_F_DUMP, AF_UNSPEC, ++sequence_);
    mnl_attr_put_u32(request, CTA_MARK, htonl(kFlowMarkTag));
    mnl_attr_put_u32(request, CTA_MARK_MASK, htonl(kFlowMarkMask));
    if (mnl_socket_sendto(socket_.get(), request, request->nlmsg_len) < 0)
      return "conntrack: " + errno_string(errno);
    for (;;) {
      const ssize_t received = mnl_socket_recvfrom(socket_.get(), buffer_.data(), buffer_.size());
      if (received < 0 && errno == EINTR) continue;
      if (received <= 0) return "conntrack: " + errno_string(received < 0 ? errno : EPIPE);
      const int status = mnl_cb_run(buffer_.data(), static_cast<size_t>(received), sequence_, port_,
                                    on_entry, &dump);
      if (status == MNL_CB_STOP) return "";  // the dump's end
      if (status < 0) return "conntrack: " + errno_string(errno);
    }
  }

  // True when the kernel deleted the entry; false also when it was gone.
  bool forget(const Doomed& doomed) {
    nlmsghdr* request =
        put_request(buffer_.data(), IPCTNL_MSG_CT_DELETE, NLM_F_ACK, doomed.family, ++sequence_);
    std::memcpy(mnl_nlmsg_get_payload_tail(request), doomed.tuple.data(), doomed.tuple.size());
    request->nlmsg_len += MNL_ALIGN(doomed.tuple.size());
    if (doomed.id) mnl_attr_put_u32(request, CTA_ID, *doomed.id);
    if (mnl_socket_sendto(socket_.get(), request, request->nlmsg_len) < 0) return false;
    const ssize_t received = mnl_socket_recvfrom(socket_.get(), buffer_.data(), buffer_.size());
    if (received <= 0) return false;
    return mnl_cb_run(buffer_.data(), static_cast<size_t>(received), sequence_, port_, nullptr,
                      nullptr) >= 0;
  }

 private:
  NetlinkSocket socket_;
  unsigned port_ = 0;
  uint32_t sequence_ = static_cast<uint32_t>(std::time(nullptr));
  // Big enough that a dump arrives in few reads.
  std::vector<char> buffer_ = std::vector<char>(32 * MNL_SOCKET_BUFFER_SIZE);
};

std::optional<uint64_t> read_number(const char* path) {
  std::ifstream file(path);
  uint64_t value = 0;
  if (!(file >> value)) return std::nullopt;
  return value;
}

}  // namespace

FlowCounts count_flows() {
  Dump dump;
  Conntrack conntrack;
  FlowCounts out;
  out.error = conntrack.open();
  if (out.error.empty()) out.error = conntrack.walk(dump);
  if (out.error.empty()) out.by_mark = std::move(dump.active);
  return out;
}

FlowCounts forget_flows(const std::set<uint32_t>& marks) {
  Dump dump;
  dump.forget = &marks;
  Conntrack conntrack;
  FlowCounts out;
  out.error = conntrack.open();
  if (out.error.empty()) out.error = conntrack.walk(dump);
  if (!out.error.empty()) return out;
  for (const Doomed& doomed : dump.doomed) {
    if (conntrack.forget(doomed)) ++out.by_mark[doomed.mark];
  }
  return out;
}

std::optional<ConntrackFill> conntrack_fill() {
  const std::optional<uint64_t> entries = read_number("/proc/sys/net/netfilter/nf_conntrack_count");
  const std::optional<uint64_t> max = read_number("/proc/sys/net/netfilter/nf_conntrack_max");
  if (!entries || !max || *max == 0) return std::nullopt;
  return ConntrackFill{*entries, *max};
}

}  // namespace fulcrum
