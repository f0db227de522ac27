// The binary upgrade's state blob (src/upgrade/upgrade_state.cpp): every
// field through a round trip, each refusal with its reason, every strict
// prefix refused; the descriptors a state names; and the verdict on the new
// binary's check (judge_binary).
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "fulcrum/upgrade.hpp"
#include "fulcrum/upgrade_state.hpp"
#include "fulcrum/version.hpp"

using namespace fulcrum;

namespace {

// The blob's first bytes; the version (4 bytes, the host's order) follows.
constexpr std::string_view kMagic = "FULCRUM-UPGRADE\n";

SocketAddress address(const char* text) { return parse_address(text).addresses.at(0); }

// ---- field by field equality (the structs have no operator==)

void check_equal(const SocketAddress& a, const SocketAddress& b) {
  CHECK(a.length == b.length);
  CHECK(a.to_string() == b.to_string());
  CHECK(std::memcmp(&a.storage, &b.storage, a.length) == 0);
}

void check_equal(const CarriedListener& a, const CarriedListener& b) {
  check_equal(a.address, b.address);
  CHECK(a.worker == b.worker);
  CHECK(a.fd == b.fd);
}

void check_equal(const CarriedDirection& a, const CarriedDirection& b) {
  CHECK(a.pipe_read == b.pipe_read);
  CHECK(a.pipe_write == b.pipe_write);
  CHECK(a.pipe_capacity == b.pipe_capacity);
  CHECK(a.pipe_bytes == b.pipe_bytes);
  CHECK(a.eof == b.eof);
  CHECK(a.done == b.done);
  CHECK(a.splicing == b.splicing);
  CHECK(a.watching_sink == b.watching_sink);
  CHECK(a.bytes == b.bytes);
}

void check_equal(const CarriedSession& a, const CarriedSession& b) {
  CHECK(a.worker == b.worker);
  CHECK(a.service == b.service);
  CHECK(a.server == b.server);
  CHECK(a.phase == b.phase);
  CHECK(a.client_fd == b.client_fd);
  CHECK(a.server_fd == b.server_fd);
  check_equal(a.client_address, b.client_address);
  REQUIRE(a.peer_address.has_value() == b.peer_address.has_value());
  if (a.peer_address) check_equal(*a.peer_address, *b.peer_address);
  CHECK(a.source_counted == b.source_counted);
  CHECK(a.group == b.group);
  CHECK(a.pending == b.pending);
  CHECK(a.started_ns == b.started_ns);
  CHECK(a.last_activity_ns == b.last_activity_ns);
  CHECK(a.connect_started_ns == b.connect_started_ns);
  CHECK(a.lifetime_end_ns == b.lifetime_end_ns);
  CHECK(a.last_publish_ns == b.last_publish_ns);
  CHECK(a.deadline_ns == b.deadline_ns);
  CHECK(a.published_in == b.published_in);
  CHECK(a.published_out == b.published_out);
  CHECK(a.failed_servers == b.failed_servers);
  CHECK(a.attempt == b.attempt);
  CHECK(a.last_failure == b.last_failure);
  CHECK(a.first_close == b.first_close);
  check_equal(a.c2s, b.c2s);
  check_equal(a.s2c, b.s2c);
}

void check_equal(const CarriedService& a, const CarriedService& b) {
  CHECK(a.name == b.name);
  CHECK(a.total == b.total);
  CHECK(a.rejected == b.rejected);
  CHECK(a.proxy_header_errors == b.proxy_header_errors);
  CHECK(a.denied == b.denied);
  CHECK(a.limited == b.limited);
  CHECK(a.bytes_in == b.bytes_in);
  CHECK(a.bytes_out == b.bytes_out);
  CHECK(a.local_errors == b.local_errors);
  CHECK(a.packets_in == b.packets_in);
  CHECK(a.packets_out == b.packets_out);
  CHECK(a.packets_not_remembered == b.packets_not_remembered);
}

void check_equal(const AgentView& a, const AgentView& b) {
  CHECK(a.says_down == b.says_down);
  CHECK(a.down_reason == b.down_reason);
  CHECK(a.admin == b.admin);
  CHECK(a.weight_percent == b.weight_percent);
  CHECK(a.max_connections == b.max_connections);
  CHECK(a.reply == b.reply);
  CHECK(a.reply_ns == b.reply_ns);
  CHECK(a.error == b.error);
}

void check_equal(const CarriedServer& a, const CarriedServer& b) {
  CHECK(a.service == b.service);
  CHECK(a.name == b.name);
  CHECK(a.status == b.status);
  CHECK(a.admin == b.admin);
  CHECK(a.healthy == b.healthy);
  CHECK(a.assigned_weight == b.assigned_weight);
  CHECK(a.weight_by_operator == b.weight_by_operator);
  CHECK(a.up_since_ns == b.up_since_ns);
  CHECK(a.last_change_ns == b.last_change_ns);
  CHECK(a.last_error == b.last_error);
  CHECK(a.last_error_ns == b.last_error_ns);
  CHECK(a.health_streak == b.health_streak);
  check_equal(a.agent, b.agent);
  CHECK(a.total == b.total);
  CHECK(a.connect_failures == b.connect_failures);
  CHECK(a.connects == b.connects);
  CHECK(a.connect_time_us == b.connect_time_us);
  CHECK(a.bytes_in == b.bytes_in);
  CHECK(a.bytes_out == b.bytes_out);
  CHECK(a.checks_failed == b.checks_failed);
  CHECK(a.local_errors == b.local_errors);
  CHECK(a.closed_on_down == b.closed_on_down);
  CHECK(a.packets_in == b.packets_in);
  CHECK(a.packets_out == b.packets_out);
}

void check_equal(const std::vector<DiscoveredServer>& a, const std::vector<DiscoveredServer>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].name == b[i].name);
    check_equal(a[i].address, b[i].address);
    CHECK(a[i].weight == b[i].weight);
    CHECK(a[i].backup == b[i].backup);
  }
}

void check_equal(const CarriedDiscovery& a, const CarriedDiscovery& b) {
  CHECK(a.service == b.service);
  CHECK(a.status.query == b.status.query);
  check_equal(a.status.current, b.status.current);
  check_equal(a.status.departing, b.status.departing);
  CHECK(a.status.errors == b.status.errors);
  CHECK(a.status.last_success == b.status.last_success);
  CHECK(a.status.last_error == b.status.last_error);
}

template <typename T>
void check_equal(const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("element ", i);
    check_equal(a[i], b[i]);
  }
}

void check_equal(const UpgradeState& a, const UpgradeState& b) {
  CHECK(a.from_version == b.from_version);
  CHECK(a.generation == b.generation);
  CHECK(a.upgrades == b.upgrades);
  CHECK(a.started_ns == b.started_ns);
  CHECK(a.started_wall_ns == b.started_wall_ns);
  CHECK(a.reloads_succeeded == b.reloads_succeeded);
  CHECK(a.reloads_failed == b.reloads_failed);
  CHECK(a.stats_fd == b.stats_fd);
  check_equal(a.listeners, b.listeners);
  check_equal(a.services, b.services);
  check_equal(a.servers, b.servers);
  check_equal(a.discoveries, b.discoveries);
  check_equal(a.sessions, b.sessions);
}

// ---- a state with every kind of entry, its fields away from their defaults

CarriedSession session(CarriedPhase phase, int client_fd) {
  CarriedSession s;
  s.worker = 1;
  s.service = "web";
  s.phase = phase;
  s.client_fd = client_fd;
  s.client_address = address("198.18.0.7:40001");
  s.source_counted = true;
  s.group = 1;
  s.started_ns = 1'000'000'001;
  s.last_activity_ns = 1'000'000'002;
  s.last_publish_ns = 1'000'000'003;
  s.published_in = 11;
  s.published_out = 12;
  return s;
}

UpgradeState full_state() {
  UpgradeState state;
  state.from_version = "0.1.0";
  state.generation = 7;
  state.upgrades = 3;
  state.started_ns = 123'456'789'012;
  state.started_wall_ns = 1'796'000'000'123'456'789;
  state.reloads_succeeded = 5;
  state.reloads_failed = 2;
  state.stats_fd = 9;
  state.listeners = {{address("127.0.0.1:8080"), 0, 10}, {address("[2001:db8::1]:8443"), 1, 11}};

  CarriedService web{"web", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  CarriedService dns{"dns", 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
  state.services = {web, dns};

  CarriedServer app1;
  app1.service = "web";
  app1.name = "app1";
  app1.status = ServerStatus::drain;
  app1.admin = AdminState::maint;
  app1.healthy = false;
  app1.assigned_weight = 250;
  app1.weight_by_operator = true;
  app1.up_since_ns = 2'000'000'001;
  app1.last_change_ns = 2'000'000'002;
  app1.last_error = "connect refused";
  app1.last_error_ns = 2'000'000'003;
  app1.health_streak = 2;
  app1.agent.says_down = true;
  app1.agent.down_reason = "agent says down: disk full";
  app1.agent.admin = AdminState::drain;
  app1.agent.weight_percent = 50;
  app1.agent.max_connections = 20;
  app1.agent.reply = "down 50% maxconn:20 # disk full";
  app1.agent.reply_ns = 2'000'000'004;
  app1.agent.error = "agent: connect refused";
  app1.total = 101;
  app1.connect_failures = 102;
  app1.connects = 103;
  app1.connect_time_us = 104;
  app1.bytes_in = 105;
  app1.bytes_out = 106;
  app1.checks_failed = 107;
  app1.local_errors = 108;
  app1.closed_on_down = 109;
  app1.packets_in = 110;
  app1.packets_out = 111;
  CarriedServer app2;  // the defaults: an agent with nothing said
  app2.service = "web";
  app2.name = "[::1]:8080";
  app2.status = ServerStatus::maint;
  state.servers = {app1, app2};

  CarriedDiscovery found;
  found.service = "dns";
  found.status.query = "_dns._udp.dns.test:53";
  found.status.current = {{"a.dns.test:53", address("198.18.1.1:53"), 3, false},
                          {"b.dns.test:53", address("[2001:db8::53]:53"), 1000, true}};
  found.status.departing = {{"c.dns.test:53", address("198.18.1.3:53"), 1, false}};
  found.status.errors = 4;
  found.status.last_success = std::chrono::system_clock::time_point(
      std::chrono::system_clock::duration(1'796'000'000'987'654'321));
  found.status.last_error = "SERVFAIL";
  CarriedDiscovery never;  // asked, never answered
  never.service = "web";
  never.status.query = "web.test:80";
  never.status.errors = 1;
  never.status.last_error = "timeout";
  state.discoveries = {found, never};

  // Reading a PROXY header: no server yet, a deadline.
  CarriedSession proxy = session(CarriedPhase::proxy_header, 20);
  proxy.pending = "PROXY TCP4 198.18";
  proxy.deadline_ns = 3'000'000'001;
  // Reading the ClientHello (bytes of any value), a peer claimed by PROXY.
  CarriedSession hello = session(CarriedPhase::hello, 21);
  hello.pending = std::string("\x16\x03\x01\x00\x00\xff", 6);
  hello.peer_address = address("[2001:db8::7]:443");
  hello.deadline_ns = 3'000'000'002;
  hello.lifetime_end_ns = 3'000'000'003;
  // Connecting to a third server after two failed.
  CarriedSession connecting = session(CarriedPhase::connecting, 22);
  connecting.server = "app3";
  connecting.server_fd = 23;
  connecting.connect_started_ns = 3'000'000'004;
  connecting.failed_servers = {"app1", "app2"};
  connecting.attempt = 2;
  connecting.last_failure = 3;
  // Relaying: a pipe from the client only; the server already closed.
  CarriedSession relaying = session(CarriedPhase::relaying, 24);
  relaying.server = "app1";
  relaying.server_fd = 25;
  relaying.peer_address = address("198.18.0.8:40002");
  relaying.first_close = 2;
  relaying.c2s = {26, 27, 65536, 1000, false, false, true, true, 123'456};
  relaying.s2c.eof = true;
  relaying.s2c.done = true;
  relaying.s2c.bytes = 999;
  state.sessions = {proxy, hello, connecting, relaying};
  return state;
}

std::string error_of(std::string_view blob) {
  const UpgradeStateRead read = decode_upgrade_state(blob);
  if (read.state) return "(decoded)";
  return read.error;
}

std::string error_of(const UpgradeState& state) { return error_of(encode_upgrade_state(state)); }

// The one byte at which the encodings of `a` and `b` differ.
size_t differing_byte(const UpgradeState& a, const UpgradeState& b) {
  const std::string x = encode_upgrade_state(a);
  const std::string y = encode_upgrade_state(b);
  REQUIRE(x.size() == y.size());
  std::vector<size_t> at;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] != y[i]) at.push_back(i);
  }
  REQUIRE(at.size() == 1);
  return at.front();
}

}  // namespace

TEST_CASE("upgrade state: every field through encode and decode") {
  const UpgradeState state = full_state();
  const std::string blob = encode_upgrade_state(state);
  CHECK(blob.starts_with(kMagic));
  const UpgradeStateRead read = decode_upgrade_state(blob);
  INFO(read.error);
  REQUIRE(read.state.has_value());
  CHECK(read.error.empty());
  check_equal(*read.state, state);
  // And written again, the same bytes.
  CHECK(encode_upgrade_state(*read.state) == blob);

  // The empty state too.
  const UpgradeStateRead empty = decode_upgrade_state(encode_upgrade_state(UpgradeState{}));
  REQUIRE(empty.state.has_value());
  check_equal(*empty.state, UpgradeState{});
}

TEST_CASE("upgrade state: a blob of another kind or version is refused") {
  const std::string blob = encode_upgrade_state(full_state());
  CHECK(error_of("") == "not an upgrade state");
  CHECK(error_of("FULCRUM-UPGRADE") == "not an upgrade state");
  std::string other = blob;
  other[0] = 'f';
  CHECK(error_of(other) == "not an upgrade state");

  // The version after the magic: another one, however the rest reads.
  other = blob;
  const uint32_t next = kUpgradeStateVersion + 1;
  std::memcpy(other.data() + kMagic.size(), &next, sizeof next);
  CHECK(error_of(other) == "state version " + std::to_string(next) + ", this build reads " +
                               std::to_string(kUpgradeStateVersion));
  CHECK(error_of(std::string(kMagic) + std::string(4, '\0')) ==
        "state version 0, this build reads " + std::to_string(kUpgradeStateVersion));
}

TEST_CASE("upgrade state: every strict prefix is refused, a byte more too") {
  const std::string blob = encode_upgrade_state(full_state());
  for (size_t size = 0; size < blob.size(); ++size) {
    INFO("prefix of ", size, " of ", blob.size(), " bytes");
    const std::string error = error_of(std::string_view(blob).substr(0, size));
    if (size < kMagic.size()) {
      CHECK(error == "not an upgrade state");
    } else {
      CHECK((error == "truncated" || error == "a text runs past the end" ||
             error == "a list runs past the end"));
    }
  }
  CHECK(error_of(blob + '\0') == "bytes after the end");
  CHECK(error_of(blob + blob) == "bytes after the end");
}

TEST_CASE("upgrade state: values the types cannot rule out are refused") {
  // A flag byte other than 0 and 1.
  UpgradeState a;
  a.servers.resize(1);
  UpgradeState b = a;
  b.servers[0].healthy = !a.servers[0].healthy;
  std::string blob = encode_upgrade_state(a);
  blob[differing_byte(a, b)] = 2;
  CHECK(error_of(blob) == "a flag is neither 0 nor 1");

  // Addresses: the family must be IPv4 or IPv6, with its own length.
  UpgradeState state = full_state();
  state.listeners[0].address.storage.ss_family = AF_UNIX;
  CHECK(error_of(state) == "an address is neither IPv4 nor IPv6");
  state = full_state();
  state.sessions[0].client_address.length = sizeof(sockaddr_in6);  // an IPv4 one
  CHECK(error_of(state) == "an address is neither IPv4 nor IPv6");
  state = full_state();
  state.sessions[1].peer_address->storage.ss_family = AF_INET;  // an IPv6 one
  CHECK(error_of(state) == "an address is neither IPv4 nor IPv6");

  // Descriptors.
  state = full_state();
  state.sessions[3].client_fd = -1;
  CHECK(error_of(state) == "a session descriptor is bad");
  state = full_state();
  state.sessions[2].server_fd = -2;
  CHECK(error_of(state) == "a session descriptor is bad");
  state = full_state();
  state.listeners[1].fd = -1;
  CHECK(error_of(state) == "a listener has no descriptor");
  state = full_state();
  state.stats_fd = -2;
  CHECK(error_of(state) == "a descriptor is negative");
  state.stats_fd = -1;  // none: fine
  CHECK(error_of(state) == "(decoded)");

  // Pipes: both ends or neither, never more bytes than room.
  state = full_state();
  state.sessions[3].c2s.pipe_write = -1;
  CHECK(error_of(state) == "a session pipe is bad");
  state = full_state();
  state.sessions[3].s2c.pipe_read = 28;
  CHECK(error_of(state) == "a session pipe is bad");
  state = full_state();
  state.sessions[3].c2s.pipe_bytes = state.sessions[3].c2s.pipe_capacity + 1;
  CHECK(error_of(state) == "a session pipe holds more than it can");
  state.sessions[3].c2s.pipe_bytes = state.sessions[3].c2s.pipe_capacity;  // full: fine
  CHECK(error_of(state) == "(decoded)");

  // Enumerations one past their last value.
  state = full_state();
  state.servers[1].status = static_cast<ServerStatus>(4);
  CHECK(error_of(state) == "a server state is unknown");
  state = full_state();
  state.servers[0].admin = static_cast<AdminState>(3);
  CHECK(error_of(state) == "a server state is unknown");
  state = full_state();
  state.servers[0].agent.admin = static_cast<AdminState>(3);
  CHECK(error_of(state) == "a server state is unknown");
  state = full_state();
  state.sessions[0].phase = static_cast<CarriedPhase>(4);
  CHECK(error_of(state) == "a session phase is unknown");
}

TEST_CASE("upgrade state: the descriptors a state names") {
  std::vector<int> fds = carried_descriptors(full_state());
  std::sort(fds.begin(), fds.end());
  // stats 9, listeners 10 and 11, clients 20, 21, 22, 24, servers 23 and
  // 25, one pipe 26/27.
  CHECK(fds == std::vector<int>{9, 10, 11, 20, 21, 22, 23, 24, 25, 26, 27});
  CHECK(carried_descriptors(UpgradeState{}).empty());
}

TEST_CASE("upgrade: the verdict on the new binary's check") {
  // Wait statuses as waitpid writes them, the inverse of the W* macros:
  // an exit code in the second byte, a signal's number alone (no core).
  const auto exited = [](int code) { return code << 8; };
  const auto killed = [](int signal) { return signal; };
  CHECK((WIFEXITED(exited(1)) && WEXITSTATUS(exited(1)) == 1));
  CHECK((WIFSIGNALED(killed(SIGSEGV)) && WTERMSIG(killed(SIGSEGV)) == SIGSEGV));
  const std::string state_version = std::to_string(kUpgradeStateVersion);

  BinaryVerdict verdict = judge_binary(
      exited(0), "configuration ok\nstate version " + state_version + " (fulcrum 0.1.0+next)\n");
  CHECK(verdict.error.empty());
  CHECK(verdict.version == "0.1.0+next");
  // This build's own line.
  CHECK(state_version_line() ==
        "state version " + state_version + " (fulcrum " + fulcrum::version() + ")");
  verdict = judge_binary(exited(0), "configuration ok\n" + state_version_line() + "\n");
  CHECK(verdict.error.empty());
  CHECK(verdict.version == fulcrum::version());

  verdict = judge_binary(exited(1), "/etc/fulcrum/fulcrum.yaml:3:5: unknown key \"x\" in global\n");
  CHECK(verdict.error ==
        "the check exited with 1: /etc/fulcrum/fulcrum.yaml:3:5: unknown key \"x\" in global");
  CHECK(verdict.version.empty());
  // Several lines, joined; the state line is not one of the errors.
  CHECK(judge_binary(exited(1),
                     "F:1:1: a\nstate version " + state_version + " (fulcrum 1)\nF:2:1: b\n")
            .error == "the check exited with 1: F:1:1: a; F:2:1: b");
  CHECK(judge_binary(exited(3), "").error == "the check exited with 3");

  CHECK(judge_binary(killed(SIGSEGV), "configuration ok\n").error ==
        "the check was killed by signal " + std::to_string(SIGSEGV));
  CHECK(judge_binary(killed(SIGKILL), "").error ==
        "the check was killed by signal " + std::to_string(SIGKILL));

  const std::string no_state =
      "the binary does not say which upgrade state it reads (not an upgradable fulcrum)";
  CHECK(judge_binary(exited(0), "configuration ok\n").error == no_state);
  CHECK(judge_binary(exited(0), "").error == no_state);
  // Only at the start of a line.
  CHECK(
      judge_binary(exited(0), "configuration ok; state version " + state_version + " (fulcrum 1)\n")
          .error == no_state);

  const uint32_t other = kUpgradeStateVersion + 6;
  verdict = judge_binary(
      exited(0), "configuration ok\nstate version " + std::to_string(other) + " (fulcrum 9.0.0)\n");
  CHECK(verdict.error == "the binary reads upgrade state version " + std::to_string(other) +
                             ", this one writes " + state_version);
  CHECK(verdict.version == "9.0.0");

  // It could not run, or ran past its time: the reason as given.
  CHECK(judge_binary(-1, "cannot run /usr/sbin/fulcrum: No such file or directory").error ==
        "cannot run /usr/sbin/fulcrum: No such file or directory");
  CHECK(judge_binary(-1, "").error == "the check did not run");
}
