#include "fulcrum/conntrack.hpp"

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>
#include <netinet/in.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "fulcrum/kernel_rules.hpp"
#include "fulcrum/socket.hpp"

namespace fulcrum {

namespace {

struct HandleCloser {
  void operator()(nfct_handle* handle) const { nfct_close(handle); }
};
struct EntryFree {
  void operator()(nf_conntrack* entry) const { nfct_destroy(entry); }
};
struct FilterFree {
  void operator()(nfct_filter_dump* filter) const { nfct_filter_dump_destroy(filter); }
};
using Handle = std::unique_ptr<nfct_handle, HandleCloser>;
using Entry = std::unique_ptr<nf_conntrack, EntryFree>;
using DumpFilter = std::unique_ptr<nfct_filter_dump, FilterFree>;

struct Dump {
  const std::set<uint32_t>* forget = nullptr;  // null: count only
  std::map<uint32_t, uint64_t> active;
  std::vector<std::pair<uint32_t, Entry>> doomed;
};

bool closed_tcp(const nf_conntrack* entry) {
  if (nfct_get_attr_u8(entry, ATTR_L4PROTO) != IPPROTO_TCP) return false;
  const uint8_t state = nfct_get_attr_u8(entry, ATTR_TCP_STATE);
  return state == TCP_CONNTRACK_TIME_WAIT || state == TCP_CONNTRACK_CLOSE;
}

int on_entry(nf_conntrack_msg_type, nf_conntrack* entry, void* data) {
  auto& dump = *static_cast<Dump*>(data);
  if (closed_tcp(entry)) return NFCT_CB_CONTINUE;
  const uint32_t mark = nfct_get_attr_u32(entry, ATTR_MARK);
  if (dump.forget == nullptr)
    ++dump.active[mark];
  else if (dump.forget->contains(mark))
    dump.doomed.emplace_back(mark, nfct_clone(entry));
  return NFCT_CB_CONTINUE;
}

// Walks fulcrum's flows: the kernel filters the dump by the mark's tag.
FlowCounts walk(Dump& dump, Handle& handle) {
  FlowCounts out;
  handle.reset(nfct_open(CONNTRACK, 0));
  if (!handle) {
    out.error = "conntrack: " + errno_string(errno);
    return out;
  }
  const DumpFilter filter(nfct_filter_dump_create());
  if (!filter) {
    out.error = "conntrack: out of memory";
    return out;
  }
  nfct_filter_dump_mark mark{kFlowMarkTag, kFlowMarkMask};
  nfct_filter_dump_set_attr(filter.get(), NFCT_FILTER_DUMP_MARK, &mark);
  nfct_callback_register(handle.get(), NFCT_T_ALL, on_entry, &dump);
  const int dumped = nfct_query(handle.get(), NFCT_Q_DUMP_FILTER, filter.get());
  const int dump_errno = errno;
  nfct_callback_unregister(handle.get());
  if (dumped != 0) out.error = "conntrack: " + errno_string(dump_errno);
  return out;
}

}  // namespace

FlowCounts count_flows() {
  Dump dump;
  Handle handle;
  FlowCounts out = walk(dump, handle);
  if (out.error.empty()) out.by_mark = std::move(dump.active);
  return out;
}

FlowCounts forget_flows(const std::set<uint32_t>& marks) {
  Dump dump;
  dump.forget = &marks;
  Handle handle;
  FlowCounts out = walk(dump, handle);
  if (!out.error.empty()) return out;
  for (const auto& [mark, entry] : dump.doomed) {
    // Gone meanwhile (the flow ended) is as good as deleted here.
    if (entry && nfct_query(handle.get(), NFCT_Q_DESTROY, entry.get()) == 0) ++out.by_mark[mark];
  }
  return out;
}

}  // namespace fulcrum
