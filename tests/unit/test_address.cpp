#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>

#include "fulcrum/address.hpp"

using fulcrum::AddressParse;
using fulcrum::parse_address;
using fulcrum::parse_ip_literal;
using fulcrum::SocketAddress;

namespace {

// The one address `text` parses to; fails the test otherwise.
SocketAddress only_address(std::string_view text) {
  const AddressParse parsed = parse_address(text);
  REQUIRE_MESSAGE(parsed.error.empty(), parsed.error);
  REQUIRE(parsed.addresses.size() == 1);
  return parsed.addresses.front();
}

std::string error_of(std::string_view text, bool allow_zero_port = false) {
  const AddressParse parsed = parse_address(text, allow_zero_port);
  CHECK(parsed.addresses.empty() == !parsed.error.empty());
  return parsed.error;
}

}  // namespace

TEST_CASE("IPv4 addresses with a port") {
  const SocketAddress a = only_address("127.0.0.1:8080");
  CHECK(a.family() == AF_INET);
  CHECK(a.port() == 8080);
  CHECK(a.length == sizeof(sockaddr_in));
  CHECK(a.to_string() == "127.0.0.1:8080");
  CHECK(a.host_string() == "127.0.0.1");
  CHECK(only_address("0.0.0.0:1").to_string() == "0.0.0.0:1");
  CHECK(only_address("198.18.2.3:65535").port() == 65535);
  CHECK(only_address("127.0.0.1:080").port() == 80);
}

TEST_CASE("IPv6 addresses in brackets") {
  const SocketAddress a = only_address("[::1]:80");
  CHECK(a.family() == AF_INET6);
  CHECK(a.port() == 80);
  CHECK(a.length == sizeof(sockaddr_in6));
  CHECK(a.to_string() == "[::1]:80");
  CHECK(a.host_string() == "::1");
  CHECK(only_address("[2001:DB8:0:0::1]:443").to_string() == "[2001:db8::1]:443");
  CHECK(only_address("[::]:9000").to_string() == "[::]:9000");
  CHECK(only_address("[::ffff:198.18.0.1]:1").to_string() == "[::ffff:198.18.0.1]:1");
}

TEST_CASE("host names resolve through the local resolver") {
  const SocketAddress a = only_address("localhost:9001");
  CHECK(a.to_string() == "127.0.0.1:9001");
  // A label over DNS's 63 bytes fails inside the resolver library: no query
  // leaves the machine (tests stay on loopback).
  CHECK(
      error_of(
          "label-longer-than-the-63-bytes-that-dns-allows-so-no-query-is-ever-sent.invalid:80") ==
      R"(cannot resolve host "label-longer-than-the-63-bytes-that-dns-allows-so-no-query-is-ever-sent.invalid": Name or service not known)");
}

TEST_CASE("ports outside 1..65535 are rejected") {
  CHECK(error_of("127.0.0.1:99999") == R"(invalid port "99999", expected 1 to 65535)");
  CHECK(error_of("127.0.0.1:65536") == R"(invalid port "65536", expected 1 to 65535)");
  CHECK(error_of("127.0.0.1:0") == R"(invalid port "0", expected 1 to 65535)");
  CHECK(error_of("127.0.0.1:-1") == R"(invalid port "-1", expected 1 to 65535)");
  CHECK(error_of("127.0.0.1:+80") == R"(invalid port "+80", expected 1 to 65535)");
  CHECK(error_of("127.0.0.1:http") == R"(invalid port "http", expected 1 to 65535)");
  CHECK(error_of("127.0.0.1:99999999999999999999") ==
        R"(invalid port "99999999999999999999", expected 1 to 65535)");
  CHECK(error_of("[::1]:0") == R"(invalid port "0", expected 1 to 65535)");
}

TEST_CASE("port 0 only when allowed") {
  const AddressParse parsed = parse_address("127.0.0.1:0", true);
  REQUIRE(parsed.error.empty());
  CHECK(parsed.addresses.at(0).port() == 0);
  CHECK(error_of("127.0.0.1:65536", true) == R"(invalid port "65536", expected 0 to 65535)");
}

TEST_CASE("malformed addresses say what is wrong") {
  CHECK(error_of("") == "empty address, expected HOST:PORT");
  CHECK(error_of("127.0.0.1") == R"(missing port in "127.0.0.1", expected HOST:PORT)");
  CHECK(error_of("127.0.0.1:") == R"(missing port in "127.0.0.1:")");
  CHECK(error_of(":80") == R"(missing host in ":80")");
  CHECK(error_of("[::1]") == R"(missing port in "[::1]", expected [ADDRESS]:PORT)");
  CHECK(error_of("[::1]:") == R"(missing port in "[::1]:")");
  CHECK(error_of("[::1]80") == R"(expected ":" and a port after "]" in "[::1]80")");
  CHECK(error_of("[::1:80") == R"(missing "]" in "[::1:80")");
  CHECK(error_of("[]:80") == R"(missing host in "[]:80")");
  CHECK(error_of("[127.0.0.1]:80") == R"(invalid IPv6 address "127.0.0.1")");
  CHECK(error_of("[localhost]:80") == R"(invalid IPv6 address "localhost")");
  CHECK(error_of("127.1:80") == R"(invalid IPv4 address "127.1")");
  CHECK(error_of("256.0.0.1:80") == R"(invalid IPv4 address "256.0.0.1")");
  CHECK(error_of("1.2.3.4.5:80") == R"(invalid IPv4 address "1.2.3.4.5")");
  CHECK(error_of("bad host:80") == R"(invalid host name "bad host")");
  CHECK(error_of(" 127.0.0.1:80") == R"(invalid host name " 127.0.0.1")");
}

// Found by the address fuzz target: the resolver reads C strings, so a NUL
// (a YAML "\0" escape) cut the host short and the rest went unchecked.
TEST_CASE("a NUL inside an address is rejected, not cut off") {
  using namespace std::string_view_literals;
  CHECK(error_of("[::1\0junk]:80"sv) == R"(invalid IPv6 address "::1\u0000junk")");
  CHECK(error_of("::1\0:80"sv) ==
        R"(invalid address "::1\u0000:80", expected HOST:PORT or [IPv6]:PORT)");
  CHECK(error_of("127.0.0.1\0:80"sv) == R"(invalid host name "127.0.0.1\u0000")");
  CHECK(parse_ip_literal("127.0.0.1\0junk"sv).error ==
        R"(invalid IP address "127.0.0.1\u0000junk")");
  CHECK(parse_ip_literal("::1\0junk"sv).error == R"(invalid IP address "::1\u0000junk")");
}

TEST_CASE("IPv6 without brackets suggests the bracketed form") {
  CHECK(error_of("::1:80") == "IPv6 address must be in brackets: [::1]:80");
  CHECK(error_of("2001:db8::1:443") == "IPv6 address must be in brackets: [2001:db8::1]:443");
  CHECK(error_of("::1") == "IPv6 address must be in brackets and have a port: [::1]:PORT");
  CHECK(error_of("a:b:c") == R"(invalid address "a:b:c", expected HOST:PORT or [IPv6]:PORT)");
}

TEST_CASE("IP literals for source addresses") {
  const AddressParse v4 = parse_ip_literal("198.18.0.7");
  REQUIRE(v4.error.empty());
  REQUIRE(v4.addresses.size() == 1);
  CHECK(v4.addresses[0].family() == AF_INET);
  CHECK(v4.addresses[0].port() == 0);
  CHECK(v4.addresses[0].host_string() == "198.18.0.7");

  const AddressParse v6 = parse_ip_literal("2001:db8::7");
  REQUIRE(v6.error.empty());
  CHECK(v6.addresses.at(0).family() == AF_INET6);
  CHECK(v6.addresses.at(0).to_string() == "[2001:db8::7]:0");

  CHECK(parse_ip_literal("").error == "empty IP address");
  CHECK(parse_ip_literal("localhost").error == R"(invalid IP address "localhost")");
  CHECK(parse_ip_literal("127.0.0.1:80").error == R"(invalid IP address "127.0.0.1:80")");
  CHECK(parse_ip_literal("127.1").error == R"(invalid IP address "127.1")");
  CHECK(parse_ip_literal("[::1]").error ==
        R"(invalid IP address "[::1]", write it without brackets)");
  CHECK(parse_ip_literal("::1").addresses.size() == 1);
}

TEST_CASE("equality compares family, address and port") {
  CHECK(only_address("127.0.0.1:80") == only_address("127.0.0.1:80"));
  CHECK_FALSE(only_address("127.0.0.1:80") == only_address("127.0.0.1:81"));
  CHECK_FALSE(only_address("127.0.0.1:80") == only_address("127.0.0.2:80"));
  CHECK(only_address("[::1]:80") == only_address("[0::1]:80"));
  CHECK_FALSE(only_address("[::1]:80") == only_address("[::2]:80"));
  CHECK_FALSE(only_address("[::ffff:127.0.0.1]:80") == only_address("127.0.0.1:80"));
  CHECK(SocketAddress{} == SocketAddress{});
  CHECK_FALSE(SocketAddress{} == only_address("127.0.0.1:80"));
}

TEST_CASE("from_sockaddr copies a kernel address") {
  sockaddr_in raw{};
  raw.sin_family = AF_INET;
  raw.sin_port = htons(4242);
  REQUIRE(inet_pton(AF_INET, "198.18.0.9", &raw.sin_addr) == 1);
  const SocketAddress a =
      SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&raw), sizeof raw);
  CHECK(a.to_string() == "198.18.0.9:4242");
  CHECK(a == only_address("198.18.0.9:4242"));
  CHECK(SocketAddress::from_sockaddr(nullptr, 0).to_string().empty());
}

TEST_CASE("an unset address prints as empty") {
  CHECK(SocketAddress{}.to_string().empty());
  CHECK(SocketAddress{}.host_string().empty());
  CHECK(SocketAddress{}.port() == 0);
}
