#include <doctest/doctest.h>

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
  const std::string longest = encode_proxy_v1(address("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
                                              address("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"));
  CHECK(longest.size() == 104);
}

TEST_CASE("PROXY v2 headers, byte for byte") {
  // signature, 0x21 (v2 PROXY), 0x11 (TCP4), length 12, src, dst, ports
  CHECK(hex(encode_proxy_v2(address("127.3.4.5:40000"), address("127.0.0.1:8080"))) ==
        "0d0a0d0a000d0a515549540a" "21" "11" "000c" "7f030405" "7f000001" "9c40" "1f90");
  CHECK(hex(encode_proxy_v2(address("[2001:db8::7]:1"), address("[::1]:443"))) ==
        "0d0a0d0a000d0a515549540a" "21" "21" "0024"
        "20010db8000000000000000000000007" "00000000000000000000000000000001" "0001" "01bb");
}
