// GET /explain (explain.hpp): which server a client maps to, and why.
#include <doctest/doctest.h>

#include <string>

#include "config_text.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/explain.hpp"
#include "fulcrum/scheduler.hpp"

using namespace fulcrum;
using namespace fulcrum::test;

namespace {

Config maglev_config() {
  return valid(R"(
services:
  - name: web
    listen: 198.18.10.20:80
    scheduler: maglev
    hash_key: source_ip_port
    servers:
      - {name: app1, address: 127.0.0.1:9001}
      - {name: app2, address: 127.0.0.1:9002}
      - {name: app3, address: 127.0.0.1:9003}
  - name: turns
    listen: 198.18.10.21:80
    scheduler: rr
    servers: [{name: app1, address: 127.0.0.1:9001}]
)");
}

}  // namespace

TEST_CASE("explain: the client's Maglev slot, its server, and the server skipped") {
  ControlPlane control{1};
  const auto t0 = std::chrono::steady_clock::now();
  control.install(maglev_config(), t0);
  // The slot the golden test of test_sched.cpp pins for this client.
  const std::vector<std::string> names{"app1", "app2", "app3"};
  const std::vector<uint32_t> table = build_maglev_table(names, {1, 1, 1});
  const std::string owner = names[table[31907]];

  ExplainReply reply = explain_client(*control.snapshot(), "web", "198.18.0.7:40001");
  CHECK(reply.status == 200);
  CHECK(reply.body ==
        "{\"service\":\"web\",\"scheduler\":\"maglev\",\"client\":\"198.18.0.7:40001\","
        "\"hash_key\":\"source_ip_port\",\"slot\":31907,\"table_checksum\":\"" +
            [&] {
              char text[24];
              std::snprintf(text, sizeof text, "%016llx",
                            static_cast<unsigned long long>(maglev_table_checksum(names, table)));
              return std::string(text);
            }() +
            "\",\"group\":\"primaries\",\"server\":{\"name\":\"" + owner +
            "\",\"state\":\"up\",\"weight\":1},\"all_up\":{\"name\":\"" + owner +
            "\",\"state\":\"up\",\"weight\":1},\"skipped\":[],\"reason\":\"the slot's server, as "
            "with every server up\"}");

  // Its server down: the slot moves to another server, and says why.
  const auto down = control.snapshot()->find("web", owner);
  control.report_health(*down.service, *down.server, false, t0);
  reply = explain_client(*control.snapshot(), "web", "198.18.0.7:40001");
  CHECK(reply.status == 200);
  CHECK(reply.body.find("\"skipped\":[{\"name\":\"" + owner +
                        "\",\"state\":\"down\",\"weight\":") != std::string::npos);
  CHECK(reply.body.find("takes no new session now; the table without it gives app") !=
        std::string::npos);
  CHECK(reply.body.find("\"server\":{\"name\":\"" + owner + "\"") == std::string::npos);
}

TEST_CASE("explain: other schedulers, and what it refuses") {
  ControlPlane control{1};
  control.install(maglev_config(), std::chrono::steady_clock::now());
  const Snapshot& snapshot = *control.snapshot();
  const ExplainReply rr = explain_client(snapshot, "turns", "198.18.0.7");
  CHECK(rr.status == 200);
  CHECK(rr.body ==
        "{\"service\":\"turns\",\"scheduler\":\"rr\",\"client\":\"198.18.0.7\",\"server\":null,"
        "\"reason\":\"scheduler rr picks a server for each new session, whatever the client; only "
        "maglev maps a client to a server\"}");
  const ExplainReply no_port = explain_client(snapshot, "web", "198.18.0.7");
  CHECK(no_port.status == 400);
  CHECK(no_port.body ==
        "service \"web\" hashes the client's address and port (hash_key source_ip_port): give "
        "CLIENT:PORT");
  const ExplainReply bad = explain_client(snapshot, "web", "client-7");
  CHECK(bad.status == 400);
  CHECK(bad.body ==
        "client \"client-7\" is not an IP address, nor an address and port "
        "(198.18.0.7, 198.18.0.7:40000, [2001:db8::7]:40000)");
  const ExplainReply missing = explain_client(snapshot, "wbe", "198.18.0.7:1");
  CHECK(missing.status == 404);
  CHECK(missing.body == "no such service \"wbe\"; did you mean \"web\"?");
}

TEST_CASE("explain: with sni_routes, the service's own servers and their table") {
  ControlPlane control{1};
  control.install(valid(R"(
services:
  - name: tls
    listen: 198.18.10.22:443
    scheduler: maglev
    hash_key: source_ip_port
    servers:
      - {name: app1, address: 127.0.0.1:9001}
      - {name: app2, address: 127.0.0.1:9002}
      - {name: app3, address: 127.0.0.1:9003}
    sni_routes:
      - names: [api.test]
        servers: [{name: api1, address: 127.0.0.1:9004}]
)"),
                  std::chrono::steady_clock::now());
  const ExplainReply reply = explain_client(*control.snapshot(), "tls", "198.18.0.7:40001");
  CHECK(reply.status == 200);
  // The table of app1..app3 alone (a route's server is in its route's).
  const std::vector<std::string> names{"app1", "app2", "app3"};
  const std::vector<uint32_t> table = build_maglev_table(names, {1, 1, 1});
  char checksum[24];
  std::snprintf(checksum, sizeof checksum, "%016llx",
                static_cast<unsigned long long>(maglev_table_checksum(names, table)));
  CHECK(reply.body.find(std::string("\"table_checksum\":\"") + checksum + "\"") !=
        std::string::npos);
  CHECK(reply.body.find("\"server\":{\"name\":\"" + names[table[31907]] + "\"") !=
        std::string::npos);
  CHECK(reply.body.find("api1") == std::string::npos);
  CHECK(reply.body.ends_with(
      "the slot's server, as with every server up; this is for clients whose TLS server name "
      "matches no sni_routes entry\"}"));
}
