// fulcrumctl's command line, URLs and output (src/ctl): everything but the
// network, which the e2e test fulcrumctl.py covers. Its token file reader is
// the daemon's too (test_admin.cpp).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "api.hpp"
#include "format.hpp"
#include "json.hpp"
#include "options.hpp"
#include "report.hpp"
#include "url.hpp"

using namespace fulcrum::ctl;

namespace {

CommandLine parse(const std::vector<std::string>& args, const Environment& env = {}) {
  return parse_command_line(args, env);
}

std::string usage_error_of(const std::vector<std::string>& args) {
  const CommandLine line = parse(args);
  if (line.action != CommandLine::Action::usage_error) return "(no usage error)";
  return line.error;
}

Json json(std::string_view text) {
  std::string error;
  auto value = Json::parse(text, &error);
  INFO(error);
  REQUIRE(value.has_value());
  return *value;
}

constexpr const char* kStats =
    R"({"version":"0.1.0","uptime_seconds":7384.2,"config":{"generation":3,"last_reload":)"
    R"({"ok":true,"at":"2026-11-25T16:38:47Z","error":null}},"services":[)"
    R"({"name":"web","listen":["0.0.0.0:80"],"scheduler":"wrr","sessions":{"active":102,"total":1500,"rejected":1},)"
    R"("bytes":{"in":1536,"out":5242880},"rate":{"sessions_per_second":2.5,"bytes_in_per_second":1536.4,)"
    R"("bytes_out_per_second":1048576,"peak_sessions_per_second":120.3},"servers":[)"
    R"({"name":"app1","address":"127.0.0.1:8080","state":"up","weight":3,"backup":false,)"
    R"("sessions":{"active":2,"total":1000,"max":0},"connect_failures":4,"bytes":{"in":1024,"out":4194304},)"
    R"("rate":{"sessions_per_second":2.5,"bytes_in_per_second":1536.4,"bytes_out_per_second":1048576,)"
    R"("peak_sessions_per_second":80},"connect_failures_last_minute":1,)"
    R"("health":{"enabled":true,"checks_failed":7,"checks_failed_last_minute":2,"last_change_seconds":65.5,)"
    R"("last_error":"connect refused","last_error_seconds":12.7}},)"
    R"({"name":"app2","address":"127.0.0.2:8080","state":"drain","weight":0,"backup":false,)"
    R"("sessions":{"active":0,"total":500,"max":0},"connect_failures":0,"bytes":{"in":512,"out":1048576},)"
    R"("rate":{"sessions_per_second":0,"bytes_in_per_second":0,"bytes_out_per_second":0,)"
    R"("peak_sessions_per_second":40.1},"connect_failures_last_minute":0,)"
    R"("health":{"enabled":true,"checks_failed":0,"checks_failed_last_minute":0,"last_change_seconds":3.2,)"
    R"("last_error":null,"last_error_seconds":null}},)"
    R"({"name":"spare","address":"127.0.0.3:8080","state":"up","weight":1,"backup":true,)"
    R"("sessions":{"active":100,"total":100,"max":100},"connect_failures":0,"bytes":{"in":0,"out":0},)"
    R"("rate":{"sessions_per_second":0.1,"bytes_in_per_second":0,"bytes_out_per_second":0,)"
    R"("peak_sessions_per_second":10},"connect_failures_last_minute":0,)"
    R"("health":{"enabled":true,"checks_failed":0,"checks_failed_last_minute":0,"last_change_seconds":3.2,)"
    R"("last_error":null,"last_error_seconds":null}}]},)"
    R"({"name":"db","listen":["127.0.0.1:5432"],"scheduler":"lc","sessions":{"active":0,"total":0,"rejected":0},)"
    R"("bytes":{"in":0,"out":0},"rate":{"sessions_per_second":0,"bytes_in_per_second":0,)"
    R"("bytes_out_per_second":0,"peak_sessions_per_second":0},"servers":[)"
    R"({"name":"db1","address":"127.0.1.1:5432","state":"down","weight":0,"backup":false,)"
    R"("sessions":{"active":0,"total":0,"max":20},"connect_failures":0,"bytes":{"in":0,"out":0},)"
    R"("rate":{"sessions_per_second":0,"bytes_in_per_second":0,"bytes_out_per_second":0,)"
    R"("peak_sessions_per_second":0},"connect_failures_last_minute":0,)"
    R"("health":{"enabled":true,"checks_failed":31,"checks_failed_last_minute":0,"last_change_seconds":7000,)"
    R"("last_error":"connect timeout","last_error_seconds":6990.2}}]}]})";

}  // namespace

TEST_CASE("ctl options: commands and their arguments") {
  CommandLine line = parse({"status"});
  REQUIRE(line.action == CommandLine::Action::run);
  CHECK(line.options.command == Command::status);
  CHECK(line.options.url == "http://127.0.0.1:9100");
  CHECK_FALSE(line.options.token_file.has_value());
  CHECK_FALSE(line.options.json);

  line = parse({"--json", "servers"});
  CHECK(line.options.command == Command::servers);
  CHECK(line.options.json);

  line = parse({"drain", "web", "app1", "--token-file", "/t"});
  REQUIRE(line.action == CommandLine::Action::run);
  CHECK(line.options.command == Command::drain);
  CHECK(line.options.service == "web");
  CHECK(line.options.server == "app1");
  CHECK(line.options.token_file == std::optional<std::string>("/t"));

  line = parse({"--url=http://h:1", "weight", "web", "127.0.0.1:8080", "1000"});
  REQUIRE(line.action == CommandLine::Action::run);
  CHECK(line.options.command == Command::weight);
  CHECK(line.options.server == "127.0.0.1:8080");
  CHECK(line.options.weight == 1000);
  CHECK(line.options.url == "http://h:1");

  CHECK(parse({"weight", "web", "a", "0"}).options.weight == 0);
  CHECK(parse({"ready", "web", "a"}).options.command == Command::ready);
  CHECK(parse({"maint", "web", "a"}).options.command == Command::maint);
  CHECK(parse({"reload"}).options.command == Command::reload);
  line = parse({"explain", "web", "198.18.0.7:40001"});
  CHECK(line.options.command == Command::explain);
  CHECK((line.options.service + " " + line.options.client) == "web 198.18.0.7:40001");
  CHECK(parse({"explain", "web"}).error == "explain takes SERVICE CLIENT[:PORT], got 1 argument");
  // `--` ends the options: a server may be named like one.
  line = parse({"drain", "--", "web", "--json"});
  REQUIRE(line.action == CommandLine::Action::run);
  CHECK(line.options.server == "--json");
  CHECK_FALSE(line.options.json);

  CHECK(parse({"--help"}).action == CommandLine::Action::help);
  CHECK(parse({"status", "-h"}).action == CommandLine::Action::help);
  CHECK(parse({"--version"}).action == CommandLine::Action::version);

  CHECK(std::string(state_name(Command::drain)) == "drain");
  CHECK(std::string(state_name(Command::ready)) == "ready");
  CHECK(std::string(state_name(Command::maint)) == "maint");
}

TEST_CASE("ctl options: the environment stands in for --url and --token-file, flags win") {
  const Environment env{std::string("http://env:1"), std::string("/env/token")};
  CommandLine line = parse({"status"}, env);
  CHECK(line.options.url == "http://env:1");
  CHECK(line.options.token_file == std::optional<std::string>("/env/token"));
  line = parse({"--url", "http://flag:2", "--token-file", "/flag/token", "status"}, env);
  CHECK(line.options.url == "http://flag:2");
  CHECK(line.options.token_file == std::optional<std::string>("/flag/token"));
}

TEST_CASE("ctl options: bad usage") {
  CHECK(usage_error_of({}) == "no command given");
  CHECK(usage_error_of({"--json"}) == "no command given");
  CHECK(usage_error_of({"stats"}) == "unknown command 'stats'");
  CHECK(usage_error_of({"--verbose", "status"}) == "unknown option '--verbose'");
  CHECK(usage_error_of({"status", "web"}) == "status takes no arguments, got 1 argument");
  CHECK(usage_error_of({"drain", "web"}) == "drain takes SERVICE SERVER, got 1 argument");
  CHECK(usage_error_of({"drain", "web", "a", "b"}) ==
        "drain takes SERVICE SERVER, got 3 arguments");
  CHECK(usage_error_of({"weight", "web", "a"}) == "weight takes SERVICE SERVER N, got 2 arguments");
  CHECK(usage_error_of({"weight", "web", "a", "1001"}) ==
        "weight must be an integer 0..1000, got '1001'");
  CHECK(usage_error_of({"weight", "web", "a", "-1"}) ==
        "weight must be an integer 0..1000, got '-1'");
  CHECK(usage_error_of({"weight", "web", "a", "1.5"}) ==
        "weight must be an integer 0..1000, got '1.5'");
  CHECK(usage_error_of({"weight", "web", "a", "+3"}) ==
        "weight must be an integer 0..1000, got '+3'");
  CHECK(usage_error_of({"weight", "web", "a", ""}) == "weight must be an integer 0..1000, got ''");
  CHECK(usage_error_of({"weight", "web", "a", "00001"}) ==
        "weight must be an integer 0..1000, got '00001'");
  CHECK(usage_error_of({"drain", "", "a"}) == "empty SERVICE or SERVER name");
  CHECK(usage_error_of({"status", "--url"}) == "--url needs a value");
  CHECK(usage_error_of({"status", "--token-file"}) == "--token-file needs a value");
  CHECK(usage_error_of({"--token-file=", "status"}) == "--token-file needs a file name");
}

TEST_CASE("ctl url: the forms of --url") {
  std::string error;
  auto url = parse_base_url("http://127.0.0.1:9100", &error);
  REQUIRE(url.has_value());
  CHECK(url->host == "127.0.0.1");
  CHECK(url->port == 9100);
  CHECK(url->host_header == "127.0.0.1:9100");
  CHECK(url->path("/stats") == "/stats");
  CHECK(url->text == "http://127.0.0.1:9100");

  url = parse_base_url("http://[::1]:9100/", &error);
  REQUIRE(url.has_value());
  CHECK(url->host == "::1");
  CHECK(url->host_header == "[::1]:9100");
  CHECK(url->text == "http://[::1]:9100");

  url = parse_base_url("http://lb.example/fulcrum/", &error);
  REQUIRE(url.has_value());
  CHECK(url->host == "lb.example");
  CHECK(url->port == 80);
  CHECK(url->host_header == "lb.example");
  CHECK(url->path("/stats") == "/fulcrum/stats");

  const auto refused = [](std::string_view text) {
    std::string why;
    const bool parsed = parse_base_url(text, &why).has_value();
    INFO(text, ": ", why);
    CHECK_FALSE(parsed);
    CHECK(why.starts_with("invalid URL '" + std::string(text) + "': "));
    return why;
  };
  CHECK(refused("127.0.0.1:9100").ends_with("expected http://HOST[:PORT]"));
  CHECK(refused("https://h:1")
            .ends_with("only http:// is supported (the stats endpoint speaks plain HTTP)"));
  refused("http://h:99999");
  refused("http://h:0");
  refused("http://:80");
  refused("http://u@h:1");
  refused("http://h:1/?x=1");
  refused("");
}

TEST_CASE("ctl url: path segments are percent-encoded") {
  CHECK(encode_path_segment("app1") == "app1");
  CHECK(encode_path_segment("a-b_c.d~e") == "a-b_c.d~e");
  CHECK(encode_path_segment("127.0.0.1:8080") == "127.0.0.1:8080");
  CHECK(encode_path_segment("[::1]:8080") == "%5B::1%5D:8080");
  CHECK(encode_path_segment("a/b c?d#e%") == "a%2Fb%20c%3Fd%23e%25");
  CHECK(encode_path_segment("caf\xC3\xA9") == "caf%C3%A9");
}

TEST_CASE("ctl format: bytes and durations") {
  CHECK(human_bytes(0) == "0B");
  CHECK(human_bytes(1023) == "1023B");
  CHECK(human_bytes(1024) == "1.0KiB");
  CHECK(human_bytes(1536) == "1.5KiB");
  CHECK(human_bytes(1048575) == "1.0MiB");  // not 1024.0KiB
  CHECK(human_bytes(5242880) == "5.0MiB");
  CHECK(human_bytes(uint64_t{3} << 40) == "3.0TiB");
  CHECK(human_bytes(UINT64_MAX) == "16.0EiB");

  CHECK(human_duration(0) == "0s");
  CHECK(human_duration(-3) == "0s");
  CHECK(human_duration(0.999) == "0s");
  CHECK(human_duration(42.7) == "42s");
  CHECK(human_duration(60) == "1m0s");
  CHECK(human_duration(312) == "5m12s");
  CHECK(human_duration(7384.2) == "2h3m");
  CHECK(human_duration(3 * 86400 + 4 * 3600 + 59) == "3d4h");
}

TEST_CASE("ctl format: tables align their columns") {
  Table table;
  table.add_column("NAME");
  table.add_column("COUNT", Table::Align::right);
  table.add_column("NOTE");
  table.add_row({"a", "1", ""});
  table.add_row({"longer", "12345", "x"});
  CHECK(table.render() ==
        "NAME    COUNT  NOTE\n"
        "a           1\n"
        "longer  12345  x\n");
}

TEST_CASE("ctl report: status") {
  CHECK(
      status_report(json(kStats)) ==
      "version      0.1.0\n"
      "uptime       2h3m\n"
      "generation   3\n"
      "last reload  ok at 2026-11-25T16:38:47Z\n"
      "\n"
      "SERVICE  SCHEDULER  ACTIVE  TOTAL  REJECTED  BYTES_IN  BYTES_OUT  SESS/S  PEAK/S    IN/S   "
      "OUT/S   UP\n"
      "web      wrr           102   1500         1    1.5KiB     5.0MiB     2.5   120.3  1.5KiB  "
      "1.0MiB  2/3\n"
      "db       lc              0      0         0        0B         0B     0.0     0.0      0B    "
      "  "
      "0B  0/1\n");
  const std::string failed = status_report(json(
      R"({"version":"0.2.0","uptime_seconds":1,"config":{"generation":1,"last_reload":)"
      R"({"ok":false,"at":"2026-11-25T17:00:00Z","error":"web.yaml:3:5: unknown key"}},"services":[]})"));
  CHECK(failed.find("last reload  failed at 2026-11-25T17:00:00Z: web.yaml:3:5: unknown key\n") !=
        std::string::npos);
}

TEST_CASE("ctl report: servers") {
  // BACKUP and MAX (`-`: no limit, FULL: reached), the daemon's rates, and
  // below the table the last error of each server that has one. This
  // document, from a daemon older than health.agent and
  // sessions.closed_on_down, has neither: no `agent` or `closed` line.
  CHECK(servers_report(json(kStats)) ==
        "SERVICE  SERVER  ADDRESS         STATE  WEIGHT  BACKUP  ACTIVE   MAX  TOTAL  SESS/S  "
        "PEAK/S  "
        "  IN/S   OUT/S  FAILURES  CHECKS_FAILED  LAST_CHANGE\n"
        "web      app1    127.0.0.1:8080  up          3  no           2     -   1000     2.5    "
        "80.0  "
        "1.5KiB  1.0MiB         4              7         1m5s\n"
        "web      app2    127.0.0.2:8080  drain       0  no           0     -    500     0.0    "
        "40.1  "
        "    0B      0B         0              0           3s\n"
        "web      spare   127.0.0.3:8080  up          1  yes        100  FULL    100     0.1    "
        "10.0  "
        "    0B      0B         0              0           3s\n"
        "db       db1     127.0.1.1:5432  down        0  no           0    20      0     0.0     "
        "0.0  "
        "    0B      0B         0             31        1h56m\n"
        "\n"
        "last error  web/app1: connect refused, 12s ago (last minute: failed checks 2, failed "
        "connects 1)\n"
        "last error  db/db1: connect timeout, 1h56m ago (last minute: failed checks 0, failed "
        "connects 0)\n");
}

namespace {

// One server of /stats for the notes below the servers table: `health`
// members after last_change_seconds, `sessions` after max.
std::string server_json(const std::string& name, const std::string& sessions,
                        const std::string& health) {
  return R"({"name":")" + name +
         R"(","address":"127.0.0.2:80","state":"up","weight":1,"backup":false,)"
         R"("sessions":{"active":0,"total":0,"max":0)" +
         sessions +
         R"(},"connect_failures":0,"bytes":{"in":0,"out":0},)"
         R"("rate":{"sessions_per_second":0,"bytes_in_per_second":0,"bytes_out_per_second":0,)"
         R"("peak_sessions_per_second":0},"connect_failures_last_minute":0,)"
         R"("health":{"enabled":true,"checks_failed":0,"checks_failed_last_minute":0,)"
         R"("last_change_seconds":1)" +
         health + "}}";
}

}  // namespace

TEST_CASE("ctl report: servers' agents and sessions closed on down") {
  const std::string none = R"(,"last_error":null,"last_error_seconds":null)";
  const std::string stats =
      R"({"services":[{"name":"web","servers":[)" +
      // The agent's last reply and its age.
      server_json("a", R"(,"closed_on_down":0)",
                  none + R"(,"agent":{"reply":"drain 50%","reply_seconds":2.9,"says":"up",)"
                         R"("admin":"drain","weight_percent":50,"max_connections":null,)"
                         R"("last_error":null})") +
      "," +
      // A reply, then a failed check: both.
      server_json("b", R"(,"closed_on_down":1)",
                  none + R"(,"agent":{"reply":"80%","reply_seconds":75,"says":"up",)"
                         R"("admin":"ready","weight_percent":80,"max_connections":null,)"
                         R"("last_error":"agent: connect refused"})") +
      "," +
      // No reply yet.
      server_json("c", R"(,"closed_on_down":3)",
                  R"(,"last_error":"connect refused","last_error_seconds":4)"
                  R"(,"agent":{"reply":null,"reply_seconds":null,"says":"up","admin":"ready",)"
                  R"("weight_percent":null,"max_connections":null,)"
                  R"("last_error":"agent reply not understood"})") +
      "," +
      // No agent, nothing closed: no note.
      server_json("d", R"(,"closed_on_down":0)", none + R"(,"agent":null)") + "]}]}";
  const std::string report = servers_report(json(stats));
  const std::string notes = report.substr(report.find("\n\n") + 2);
  CHECK(notes ==
        "agent       web/a: said \"drain 50%\", 2s ago\n"
        "agent       web/b: said \"80%\", 1m15s ago; last error: agent: connect refused\n"
        "closed      web/b: 1 session closed when it went down\n"
        "last error  web/c: connect refused, 4s ago (last minute: failed checks 0, failed "
        "connects 0)\n"
        "agent       web/c: no reply yet; last error: agent reply not understood\n"
        "closed      web/c: 3 sessions closed when it went down\n");
}

namespace {

// A service of /stats as a daemon with kernel forwarding writes it:
// `forwarding` and `protocol`, and `packets` (`packets` empty: none, as for
// a proxy) beside the bytes of the service and of each server.
std::string kernel_server(const std::string& name, const std::string& packets) {
  return R"({"name":")" + name +
         R"(","address":"198.18.1.11:80","state":"up","weight":1,"backup":false,)"
         R"("sessions":{"active":1,"total":4,"max":0,"closed_on_down":0},"connect_failures":0,)"
         R"("bytes":{"in":2048,"out":4096},)" +
         packets +
         R"("rate":{"sessions_per_second":0.4,"bytes_in_per_second":0,"bytes_out_per_second":0,)"
         R"("peak_sessions_per_second":0.4},"connect_failures_last_minute":0,)"
         R"("health":{"enabled":false,"checks_failed":0,"checks_failed_last_minute":0,)"
         R"("last_change_seconds":5,"last_error":null,"last_error_seconds":null,"agent":null}})";
}

std::string kernel_service(const std::string& name, const std::string& scheduler,
                           const std::string& forwarding, const std::string& protocol,
                           const std::string& packets, const std::string& servers) {
  return R"({"name":")" + name + R"(","listen":["198.18.10.10:80"],"scheduler":")" + scheduler +
         R"(","forwarding":")" + forwarding + R"(","protocol":")" + protocol +
         R"(","sessions":{"active":1,"total":4,"rejected":0,"proxy_header_errors":0},)"
         R"("bytes":{"in":2048,"out":4096},)" +
         packets +
         R"("local_errors":0,"rate":{"sessions_per_second":0.4,"bytes_in_per_second":0,)"
         R"("bytes_out_per_second":0,"peak_sessions_per_second":0.4},"servers":[)" +
         servers + "]}";
}

std::string stats_of(const std::string& services) {
  return R"({"version":"0.3.0","uptime_seconds":90,"config":{"generation":1,"last_reload":)"
         R"({"ok":true,"at":"2026-12-04T10:00:00Z","error":null}},"services":[)" +
         services + "]}";
}

}  // namespace

TEST_CASE("ctl report: kernel forwarding, its mode and packets") {
  // nat over TCP and UDP, dsr (its replies go direct: no packets out) and a
  // proxy: MODE for each, packets where /stats has them, `-` elsewhere.
  const std::string stats =
      stats_of(kernel_service("vip", "rr", "nat", "tcp", R"("packets":{"in":40,"out":38},)",
                              kernel_server("a", R"("packets":{"in":25,"out":24},)") + "," +
                                  kernel_server("b", R"("packets":{"in":15,"out":14},)")) +
               "," +
               kernel_service("dns", "rr", "nat", "udp", R"("packets":{"in":10,"out":10},)",
                              kernel_server("a", R"("packets":{"in":10,"out":10},)")) +
               "," +
               kernel_service("dl", "maglev", "dsr", "tcp", R"("packets":{"in":1234567,"out":0},)",
                              kernel_server("a", R"("packets":{"in":1234567,"out":0},)")) +
               "," + kernel_service("web", "wrr", "proxy", "tcp", "", kernel_server("a", "")));
  const std::string status = status_report(json(stats));
  CHECK(status.substr(status.find("\n\n") + 2) ==
        "SERVICE  SCHEDULER  MODE       ACTIVE  TOTAL  REJECTED  BYTES_IN  BYTES_OUT  PACKETS_IN  "
        "PACKETS_OUT  SESS/S  PEAK/S  IN/S  OUT/S   UP\n"
        "vip      rr         nat/tcp         1      4         0    2.0KiB     4.0KiB          40  "
        "         38     0.4     0.4    0B     0B  2/2\n"
        "dns      rr         nat/udp         1      4         0    2.0KiB     4.0KiB          10  "
        "         10     0.4     0.4    0B     0B  1/1\n"
        "dl       maglev     dsr/tcp         1      4         0    2.0KiB     4.0KiB     1234567  "
        "          -     0.4     0.4    0B     0B  1/1\n"
        "web      wrr        proxy/tcp       1      4         0    2.0KiB     4.0KiB           -  "
        "          -     0.4     0.4    0B     0B  1/1\n");
  CHECK(servers_report(json(stats)) ==
        "SERVICE  SERVER  ADDRESS         STATE  WEIGHT  BACKUP  ACTIVE  MAX  TOTAL  SESS/S  "
        "PEAK/S  IN/S  OUT/S  PACKETS_IN  PACKETS_OUT  FAILURES  CHECKS_FAILED  LAST_CHANGE\n"
        "vip      a       198.18.1.11:80  up          1  no           1    -      4     0.4     "
        "0.4    0B     0B          25           24         0              0           5s\n"
        "vip      b       198.18.1.11:80  up          1  no           1    -      4     0.4     "
        "0.4    0B     0B          15           14         0              0           5s\n"
        "dns      a       198.18.1.11:80  up          1  no           1    -      4     0.4     "
        "0.4    0B     0B          10           10         0              0           5s\n"
        "dl       a       198.18.1.11:80  up          1  no           1    -      4     0.4     "
        "0.4    0B     0B     1234567            -         0              0           5s\n"
        "web      a       198.18.1.11:80  up          1  no           1    -      4     0.4     "
        "0.4    0B     0B           -            -         0              0           5s\n");

  // Proxies only, from a daemon that names their forwarding: the tables of
  // a daemon before kernel forwarding, no MODE and no packets.
  const std::string proxies =
      stats_of(kernel_service("web", "wrr", "proxy", "tcp", "", kernel_server("a", "")));
  CHECK(status_report(json(proxies))
            .find("SERVICE  SCHEDULER  ACTIVE  TOTAL  REJECTED  BYTES_IN  "
                  "BYTES_OUT  SESS/S  PEAK/S  IN/S  OUT/S   UP\n") != std::string::npos);
  CHECK(servers_report(json(proxies))
            .starts_with("SERVICE  SERVER  ADDRESS         STATE  WEIGHT  BACKUP  ACTIVE  MAX  "
                         "TOTAL  SESS/S  PEAK/S  "
                         "IN/S  OUT/S  FAILURES  CHECKS_FAILED  LAST_CHANGE\n"));
}

TEST_CASE("ctl format: rates") {
  CHECK(human_rate(0) == "0.0");
  CHECK(human_rate(-1) == "0.0");
  CHECK(human_rate(0.1) == "0.1");
  CHECK(human_rate(2.5) == "2.5");
  CHECK(human_rate(1234.56) == "1234.6");
}

TEST_CASE("ctl report: explain") {
  CHECK(explain_report(
            json(R"({"service":"web","scheduler":"maglev","client":"198.18.0.7:40001",)"
                 R"("hash_key":"source_ip_port","slot":31907,"table_checksum":"00ff00ff00ff00ff",)"
                 R"("group":"primaries","server":{"name":"app2","state":"up","weight":1},)"
                 R"("all_up":{"name":"app1","state":"down","weight":1},)"
                 R"("skipped":[{"name":"app1","state":"down","weight":1}],"reason":"because"})")) ==
        "web: client 198.18.0.7:40001 -> slot 31907 of the Maglev table 00ff00ff00ff00ff "
        "(source_ip_port, primaries)\n"
        "server: app2 (up, weight 1)\n"
        "skipped: app1 (down, weight 1)\n"
        "why: because\n");
  CHECK(explain_report(json(R"({"service":"turns","scheduler":"rr","client":"198.18.0.7",)"
                            R"("server":null,"reason":"rr picks per session"})")) ==
        "turns: 198.18.0.7: rr picks per session\n");
}

TEST_CASE("ctl report: confirmations") {
  CHECK(server_change_report("web", json(R"({"name":"app1","state":"drain","weight":3})")) ==
        "web/app1: state drain, weight 3\n");
  CHECK(reload_report(json(R"({"ok":true,"message":"reloaded: generation 2"})")) ==
        "reloaded: generation 2\n");
  CHECK(reload_report(json(R"({"ok":true,"generation":2})")) ==
        "reloaded: configuration generation 2\n");
  CHECK(reload_report(json(R"({"ok":true})")) == "reloaded\n");
  CHECK(reload_report(json(
            R"({"ok":true,"generation":4,"errors":[],"warnings":["f.yaml:2:3: global.workers )"
            R"(changes need a restart; 2 workers keep running, not 4","f.yaml:5:3: stats.listen )"
            R"(changes need a restart; the stats endpoint stays off"]})")) ==
        "reloaded: configuration generation 4\n"
        "warning: f.yaml:2:3: global.workers changes need a restart; 2 workers keep running, not "
        "4\n"
        "warning: f.yaml:5:3: stats.listen changes need a restart; the stats endpoint stays off\n");
}

TEST_CASE("ctl report: a reply without a field it shows is an error naming the field") {
  const auto error_of = [](auto report, std::string_view text) -> std::string {
    try {
      report(json(text));
    } catch (const std::exception& e) {
      return e.what();
    }
    return "(no error)";
  };
  CHECK(error_of(servers_report, R"({"services":[{"name":"web","servers":[{"name":"a"}]}]})") ==
        "services[0].servers[0].sessions is missing");
  CHECK(error_of(servers_report, R"({"services":{}})") ==
        "services is an object, expected an array");
  CHECK(error_of(status_report, R"([])") == "the reply is an array, expected an object");
  CHECK(error_of([](const Json& j) { return server_change_report("web", j); },
                 R"({"name":"a","state":"up","weight":-1})") ==
        "weight is a number, expected a non-negative integer");
}

TEST_CASE("ctl api: error bodies are cut to one short line") {
  CHECK(body_summary("no such service or server\n") == "no such service or server");
  CHECK(body_summary("  first\nsecond\n") == "first");
  CHECK(body_summary("") == "");
  CHECK(body_summary("a\tb") == "a?b");
  CHECK(body_summary(std::string(300, 'x')) == std::string(200, 'x') + "...");
}

TEST_CASE("ctl api: a refused reload shows every error and warning") {
  CHECK(reload_failure(
            R"({"ok":false,"generation":3,"error":"f.yaml:2:3: unknown key \"x\" in global",)"
            R"("errors":["f.yaml:2:3: unknown key \"x\" in global"],"warnings":[]})") ==
        "reload failed: f.yaml:2:3: unknown key \"x\" in global (the running configuration "
        "stays, generation 3)");
  CHECK(reload_failure(R"({"ok":false,"generation":3,"error":"E1","errors":["E1","E2","E3"],)"
                       R"("warnings":["W1"]})") ==
        "reload failed: 3 errors (the running configuration stays, generation 3)\n"
        "error: E1\nerror: E2\nerror: E3\nwarning: W1");
  // A daemon from before the lists.
  CHECK(reload_failure(R"({"ok":false,"generation":2,"error":"E1"})") ==
        "reload failed: E1 (the running configuration stays, generation 2)");
  CHECK(reload_failure("stopping\n").empty());
}

TEST_CASE("ctl api: a 404 says which name is unknown when the daemon does") {
  CHECK(not_found("no such server \"alpah\" in service \"web\"; did you mean \"alpha\"?\n",
                  "web/alpah") ==
        "no such server \"alpah\" in service \"web\"; did you mean \"alpha\"? (404)");
  CHECK(not_found("no such service \"wbe\"\n", "wbe/a") == "no such service \"wbe\" (404)");
  CHECK(not_found("no such service or server\n", "web/x") ==
        "no such service or server: web/x (404)");
  CHECK(not_found("", "web/x") == "no such service or server: web/x (404)");
}
