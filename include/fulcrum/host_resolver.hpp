// Host names of the configuration (servers, listen addresses, source)
// resolved with libevent's evdns, which never blocks a thread: queries run on
// an event loop, with the nameservers of global.resolvers or else those of
// /etc/resolv.conf (its timeout and attempts options too), and /etc/hosts.
// A file is loaded twice: once to collect its names (HostNameTable with
// placeholders), once with their answers.
#pragma once

#include <event2/event.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/config.hpp"

namespace fulcrum {

class HostResolver {
 public:
  using Answers = std::map<std::string, AddressParse>;
  using Done = std::function<void(Answers)>;

  explicit HostResolver(event_base* base);
  ~HostResolver();
  HostResolver(const HostResolver&) = delete;
  HostResolver& operator=(const HostResolver&) = delete;

  // Resolves every name of `names` (A and AAAA); `done` gets each one's
  // addresses or error, from the loop. One batch at a time.
  void resolve(const std::set<std::string>& names, const std::vector<SocketAddress>& nameservers,
               Done done);

 private:
  struct Batch;
  event_base* base_;
  std::unique_ptr<Batch> batch_;
};

// A configuration's text loaded with its host names resolved by `answers`;
// a name without one fails to resolve.
ConfigLoad load_config_with_answers(std::string_view text, const std::string& path,
                                    const HostResolver::Answers& answers);
// The first pass: the host names the text names, and the nameservers its
// global.resolvers gives (empty: /etc/resolv.conf's).
struct ConfigNames {
  std::set<std::string> names;
  std::vector<SocketAddress> resolvers;
};
ConfigNames config_names(std::string_view text, const std::string& path);
// Reads `path` and loads it, its names resolved by evdns on an event loop
// of its own (start-up and --check, before the daemon's loop exists).
ConfigLoad load_config_file_resolved(const std::string& path);

}  // namespace fulcrum
