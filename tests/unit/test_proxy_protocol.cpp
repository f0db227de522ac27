#include <doctest/doctest.h>

#include <netinet/in.h>

#include <string>

#include "fulcrum/proxy_protocol.hpp"

using namespace fulcrum;

namespace {

SocketAddress address(const char* text) { return parse_address(text).addresses.at(0); }

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

}  // namespace

TEST_CASE("PROXY v1 headers, byte for byte") {
  CHECK(encode_proxy_v1(address("127.3.4.5:40000"), address("127.0.0.1:8080")) ==
        "PROXY TCP4 127.3.4.5 127.0.0.1 40000 8080\r\n");
  CHECK(encode_proxy_v1(address("[2001:db8::7]:65535"), address("[::1]:443")) ==
        "PROXY TCP6 2001:db8::7 ::1 65535 443\r\n");
  // The longest possible line stays within the specification's 107 bytes.
  const std::string longest =
      encode_proxy_v1(address("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
                      address("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"));
  CHECK(longest.size() == 104);
}

TEST_CASE("PROXY v2 headers, byte for byte") {
  // signature, 0x21 (v2 PROXY), 0x11 (TCP4), length 12, src, dst, ports
  CHECK(hex(encode_proxy_v2(address("127.3.4.5:40000"), address("127.0.0.1:8080"))) ==
        "0d0a0d0a000d0a515549540a"
        "21"
        "11"
        "000c"
        "7f030405"
        "7f000001"
        "9c40"
        "1f90");
  CHECK(hex(encode_proxy_v2(address("[2001:db8::7]:1"), address("[::1]:443"))) ==
        "0d0a0d0a000d0a515549540a"
        "21"
        "21"
        "0024"
        "20010db8000000000000000000000007"
        "00000000000000000000000000000001"
        "0001"
        "01bb");
}

TEST_CASE("PROXY headers round trip through the decoder") {
  for (const char* client : {"127.3.4.5:40000", "[2001:db8::7]:1"}) {
    const SocketAddress source = address(client);
    const SocketAddress local =
        address(source.family() == AF_INET ? "127.0.0.1:8080" : "[::1]:443");
    for (const std::string& header :
         {encode_proxy_v1(source, local), encode_proxy_v2(source, local)}) {
      const ProxyHeader parsed = parse_proxy_header(header + "client bytes");
      REQUIRE(parsed.status == ProxyHeader::Status::ok);
      CHECK(parsed.size == header.size());
      REQUIRE(parsed.source);
      CHECK(parsed.source->to_string() == source.to_string());
      // Every strict prefix is incomplete, never invalid.
      for (size_t n = 1; n < header.size(); ++n) {
        CHECK(parse_proxy_header(header.substr(0, n)).status == ProxyHeader::Status::incomplete);
      }
    }
  }
}

TEST_CASE("bad PROXY headers are rejected with a reason") {
  const auto reason = [](std::string_view data) {
    const ProxyHeader parsed = parse_proxy_header(data);
    CHECK(parsed.status == ProxyHeader::Status::invalid);
    return parsed.reason;
  };
  CHECK(reason("GET / HTTP/1.1\r\n") == "not a PROXY protocol header");
  CHECK(reason("PROXZ TCP4") == "not a PROXY protocol header");
  CHECK(reason("PROXY TCP4 " + std::string(200, '1')) == "v1 header longer than 107 bytes");
  CHECK(reason("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n") == "v1 header without CRLF");
  CHECK(reason("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n") == "malformed v1 header");
  CHECK(reason("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n") == "malformed v1 header");
  CHECK(reason("PROXY TCP4 1.2.3.4 5.6.7.8 0 2\r\n") == "bad port in v1 header");
  CHECK(reason("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n") == "bad port in v1 header");
  CHECK(reason("PROXY TCP4 ::1 5.6.7.8 1 2\r\n") == "bad address in v1 header");
  CHECK(reason("PROXY TCP6 1.2.3.4 ::1 1 2\r\n") == "bad address in v1 header");
  CHECK(reason("PROXY TCP6 ::%7 :: 11 3\r\n") ==
        "bad address in v1 header");  // found by the fuzzer
  CHECK(reason("PROXY TCP4 localhost 1.2.3.4 1 2\r\n") == "bad address in v1 header");
  CHECK(reason(std::string("\r\n\r\n\x00\r\nQUIX\n", 12)) == "not a PROXY protocol header");
  std::string v2("\r\n\r\n\x00\r\nQUIT\n", 12);
  CHECK(reason(v2 + "\x31\x11" + std::string("\x00\x0c", 2)) == "unsupported v2 version");
  CHECK(reason(v2 + "\x22\x11" + std::string("\x00\x0c", 2)) == "unsupported v2 command");
  CHECK(reason(v2 + "\x21\x11" + std::string("\x02\x01", 2)) == "v2 header longer than 528 bytes");
  CHECK(reason(v2 + "\x21\x11" + std::string("\x00\x04", 2) + "abcd") ==
        "v2 TCP4 header too short");
  CHECK(reason(v2 + "\x21\x31" + std::string("\x00\x0c", 2) + std::string(12, 'x')) ==
        "unsupported v2 address family");
}

TEST_CASE("PROXY UNKNOWN and v2 LOCAL keep the connection's own address") {
  ProxyHeader parsed = parse_proxy_header("PROXY UNKNOWN\r\nrest");
  CHECK(parsed.status == ProxyHeader::Status::ok);
  CHECK(parsed.size == 15);
  CHECK_FALSE(parsed.source);
  const std::string local =
      std::string("\r\n\r\n\x00\r\nQUIT\n", 12) + "\x20" + std::string("\x00\x00\x00", 3);
  parsed = parse_proxy_header(local);
  CHECK(parsed.status == ProxyHeader::Status::ok);
  CHECK(parsed.size == 16);
  CHECK_FALSE(parsed.source);
}

// A client address learnt from an incoming PROXY header may be of the other
// family than the listener it came through. The header then names both as
// IPv6, the IPv4 one mapped (::ffff:a.b.c.d), as HAProxy does: a v1 line has
// one protocol word for both addresses, and v2 one address block.
TEST_CASE("PROXY headers for every pair of address families") {
  struct Case {
    const char* client;
    const char* local;
    const char* v1;
    const char* v2_addresses;  // after the signature and the 0x21 command byte
  };
  const Case cases[] = {
      {"127.3.4.5:40000", "127.0.0.1:8080", "PROXY TCP4 127.3.4.5 127.0.0.1 40000 8080\r\n",
       "11"
       "000c"
       "7f030405"
       "7f000001"
       "9c40"
       "1f90"},
      {"[2001:db8::7]:40000", "[::1]:443", "PROXY TCP6 2001:db8::7 ::1 40000 443\r\n",
       "21"
       "0024"
       "20010db8000000000000000000000007"
       "00000000000000000000000000000001"
       "9c40"
       "01bb"},
      {"[2001:db8::7]:40000", "127.0.0.1:8080",
       "PROXY TCP6 2001:db8::7 ::ffff:127.0.0.1 40000 8080\r\n",
       "21"
       "0024"
       "20010db8000000000000000000000007"
       "00000000000000000000ffff7f000001"
       "9c40"
       "1f90"},
      {"127.3.4.5:40000", "[::1]:443", "PROXY TCP6 ::ffff:127.3.4.5 ::1 40000 443\r\n",
       "21"
       "0024"
       "00000000000000000000ffff7f030405"
       "00000000000000000000000000000001"
       "9c40"
       "01bb"},
  };
  const std::string v2_prefix = "0d0a0d0a000d0a515549540a21";  // signature, v2 PROXY
  for (const Case& c : cases) {
    const std::string pair = std::string(c.client) + " to " + c.local;
    CAPTURE(pair);
    const SocketAddress client = address(c.client);
    const SocketAddress local = address(c.local);
    const std::string v1 = encode_proxy_v1(client, local);
    CHECK(v1 == c.v1);
    CHECK(hex(encode_proxy_v2(client, local)) == v2_prefix + c.v2_addresses);
    // What fulcrum sends, fulcrum (and any strict reader) accepts.
    const ProxyHeader parsed = parse_proxy_header(v1);
    CHECK(parsed.status == ProxyHeader::Status::ok);
    CHECK(parsed.size == (parsed.status == ProxyHeader::Status::ok ? v1.size() : 0));
  }
}

TEST_CASE("a PROXY v1 line carries no IPv6 scope") {
  // A link-local client (fe80::1 on interface 1) on an IPv6 listener: the
  // scope is local to fulcrum's host and `%lo` would make the line invalid.
  SocketAddress client = address("[fe80::1]:40000");
  reinterpret_cast<sockaddr_in6*>(&client.storage)->sin6_scope_id = 1;
  const std::string v1 = encode_proxy_v1(client, address("[::1]:443"));
  CHECK(v1 == "PROXY TCP6 fe80::1 ::1 40000 443\r\n");
  CHECK(parse_proxy_header(v1).status == ProxyHeader::Status::ok);
}
