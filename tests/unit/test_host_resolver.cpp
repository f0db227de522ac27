// Host names of the configuration resolved ahead by evdns
// (host_resolver.hpp): the first load collects them, the second uses their
// answers; the resolver answers from /etc/hosts without asking DNS.
#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "config_text.hpp"
#include "fulcrum/event.hpp"
#include "fulcrum/host_resolver.hpp"

using namespace fulcrum;
using namespace fulcrum::test;

namespace {

constexpr std::string_view kText = R"(global:
  resolvers: ["127.0.0.1:5353"]
services:
  - name: web
    listen: 127.0.0.1:8000
    servers:
      - {name: a, address: "alpha.test:80"}
      - {name: b, address: "beta.test:81"}
      - {name: c, address: "198.18.1.3:82"}
)";

}  // namespace

TEST_CASE("host names: collected by a first load, then taken from the answers") {
  const ConfigNames names = config_names(kText, "test.yaml");
  CHECK(names.names == std::set<std::string>{"alpha.test", "beta.test"});
  REQUIRE(names.resolvers.size() == 1);
  CHECK(names.resolvers.front().to_string() == "127.0.0.1:5353");

  HostResolver::Answers answers;
  answers["alpha.test"] = parse_ip_literal("198.18.1.1");
  answers["beta.test"].error = "cannot resolve host \"beta.test\": Name or service not known";
  const ConfigLoad failed = load_config_with_answers(kText, "test.yaml", answers);
  REQUIRE(failed.errors.size() == 1);
  CHECK(failed.errors.front().to_string() ==
        "test.yaml:8:28: cannot resolve host \"beta.test\": Name or service not known");

  answers["beta.test"] = parse_ip_literal("2001:db8::2");
  const ConfigLoad load = load_config_with_answers(kText, "test.yaml", answers);
  REQUIRE(load.config);
  const std::vector<ServerConfig>& servers = load.config->services.front().servers;
  CHECK(servers[0].address.to_string() == "198.18.1.1:80");
  CHECK(servers[1].address.to_string() == "[2001:db8::2]:81");
  CHECK(servers[2].address.to_string() == "198.18.1.3:82");
}

TEST_CASE("host names: evdns answers from /etc/hosts, and says why a name fails") {
  EventBasePtr base(event_base_new());
  HostResolver resolver(base.get());
  // A nameserver where nothing listens: only /etc/hosts can answer.
  const AddressParse dead = parse_address("127.0.0.1:9");
  std::optional<HostResolver::Answers> answers;
  resolver.resolve({"localhost"}, dead.addresses,
                   [&answers](HostResolver::Answers got) { answers = std::move(got); });
  CHECK_FALSE(answers);  // never from within resolve()
  for (int i = 0; i < 1000 && !answers; ++i) event_base_loop(base.get(), EVLOOP_ONCE);
  REQUIRE(answers);
  const AddressParse& localhost = answers->at("localhost");
  CHECK(localhost.error.empty());
  bool loopback = false;
  for (const SocketAddress& address : localhost.addresses)
    loopback = loopback || address.to_string() == "127.0.0.1:0";
  CHECK(loopback);

  answers.reset();
  resolver.resolve({}, dead.addresses,
                   [&answers](HostResolver::Answers got) { answers = std::move(got); });
  for (int i = 0; i < 10 && !answers; ++i) event_base_loop(base.get(), EVLOOP_ONCE);
  REQUIRE(answers);
  CHECK(answers->empty());
}
