#include "fulcrum/host_resolver.hpp"

#include <event2/dns.h>
#include <event2/util.h>
#include <netdb.h>

#include <algorithm>

#include "fulcrum/event.hpp"
#include "fulcrum/quote.hpp"

namespace fulcrum {

namespace {

constexpr const char* kResolvConf = "/etc/resolv.conf";

// The reason getaddrinfo gives for the same failure (the operator's
// messages stay the same whoever resolves).
std::string reason_of(int result) {
  switch (result) {
    case EVUTIL_EAI_NONAME: return gai_strerror(EAI_NONAME);
    case EVUTIL_EAI_AGAIN: return gai_strerror(EAI_AGAIN);
    case EVUTIL_EAI_FAIL: return gai_strerror(EAI_FAIL);
    case EVUTIL_EAI_MEMORY: return gai_strerror(EAI_MEMORY);
    default: return evutil_gai_strerror(result);
  }
}

// What one name's answer becomes: its addresses in the resolver's order
// without repeats (port 0), or the error parse_address would give.
AddressParse answer_of(const std::string& name, int result, const evutil_addrinfo* list) {
  AddressParse out;
  if (result != 0) {
    out.error = "cannot resolve host " + quote(name) + ": " + reason_of(result);
    return out;
  }
  for (const evutil_addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    const SocketAddress address =
        SocketAddress::from_sockaddr(ai->ai_addr, static_cast<socklen_t>(ai->ai_addrlen));
    if (std::find(out.addresses.begin(), out.addresses.end(), address) == out.addresses.end())
      out.addresses.push_back(address.with_port(0));
  }
  if (out.addresses.empty())
    out.error = "cannot resolve host " + quote(name) + ": no IPv4 or IPv6 address";
  return out;
}

}  // namespace

struct HostResolver::Batch {
  struct Request {
    Batch* batch;
    std::string name;
  };
  evdns_base* dns = nullptr;
  Done done;
  Answers answers;
  size_t pending = 0;
  std::vector<std::unique_ptr<Request>> requests;
  EventPtr finished;  // calls `done` from the loop

  static void on_answer(int result, evutil_addrinfo* list, void* arg) {
    auto* request = static_cast<Request*>(arg);
    if (result == EVUTIL_EAI_CANCEL) {
      if (list != nullptr) evutil_freeaddrinfo(list);
      return;  // the batch is being dropped
    }
    Batch& batch = *request->batch;
    batch.answers[request->name] = answer_of(request->name, result, list);
    if (list != nullptr) evutil_freeaddrinfo(list);
    if (--batch.pending == 0) event_active(batch.finished.get(), EV_TIMEOUT, 0);
  }
};

HostResolver::HostResolver(event_base* base) : base_(base) {}

HostResolver::~HostResolver() {
  if (batch_ && batch_->dns != nullptr) evdns_base_free(batch_->dns, 1);
}

void HostResolver::resolve(const std::set<std::string>& names,
                           const std::vector<SocketAddress>& nameservers, Done done) {
  if (batch_ && batch_->dns != nullptr) evdns_base_free(batch_->dns, 1);
  batch_ = std::make_unique<Batch>();
  Batch& batch = *batch_;
  batch.done = std::move(done);
  batch.finished.reset(event_new(
      base_, -1, 0,
      [](evutil_socket_t, short, void* arg) {
        auto* self = static_cast<HostResolver*>(arg);
        // Freed from the loop, outside evdns' own callbacks.
        std::unique_ptr<Batch> finished = std::move(self->batch_);
        evdns_base_free(finished->dns, 0);
        finished->dns = nullptr;
        finished->done(std::move(finished->answers));
      },
      this));
  // A base of its own per batch: resolv.conf and /etc/hosts as they are now.
  batch.dns = evdns_base_new(base_, 0);
  if (nameservers.empty()) {
    evdns_base_resolv_conf_parse(batch.dns, DNS_OPTIONS_ALL, kResolvConf);
  } else {
    for (const SocketAddress& server : nameservers)
      evdns_base_nameserver_sockaddr_add(batch.dns, server.sockaddr_ptr(), server.length, 0);
    evdns_base_load_hosts(batch.dns, nullptr);
  }
  batch.pending = names.size() + 1;  // + 1: none answers before all are asked
  for (const std::string& name : names) {
    batch.requests.push_back(std::make_unique<Batch::Request>(Batch::Request{&batch, name}));
    evutil_addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    evdns_getaddrinfo(batch.dns, name.c_str(), nullptr, &hints, Batch::on_answer,
                      batch.requests.back().get());
  }
  if (--batch.pending == 0) event_active(batch.finished.get(), EV_TIMEOUT, 0);
}

ConfigLoad load_config_with_answers(std::string_view text, const std::string& path,
                                    const HostResolver::Answers& answers) {
  HostNameTable table;
  table.answers = answers;
  const HostNameScope scope(table);
  return load_config_text(text, path);
}

ConfigNames config_names(std::string_view text, const std::string& path) {
  HostNameTable table;
  table.placeholders = true;
  ConfigLoad first;
  {
    const HostNameScope scope(table);
    first = load_config_text(text, path);
  }
  ConfigNames out;
  out.names = std::move(table.missing);
  if (first.config) out.resolvers = first.config->global.resolvers;
  return out;
}

ConfigLoad load_config_file_resolved(const std::string& path) {
  ConfigLoad failed;
  const std::optional<std::string> text = read_config_file(path, failed);
  if (!text) return failed;
  const ConfigNames names = config_names(*text, path);
  if (names.names.empty()) return load_config_text(*text, path);
  const EventBasePtr base(event_base_new());
  HostResolver::Answers answers;
  bool done = false;
  {
    HostResolver resolver(base.get());
    resolver.resolve(names.names, names.resolvers, [&](HostResolver::Answers got) {
      answers = std::move(got);
      done = true;
    });
    while (!done) event_base_loop(base.get(), EVLOOP_ONCE);
  }
  return load_config_with_answers(*text, path, answers);
}

}  // namespace fulcrum
