// The ClientHello scan (client_hello.hpp) on real hellos, captured from
// openssl s_client and Python's ssl into tests/fuzz/corpus/client_hello/
// (also the fuzzer's seeds), and on every way a hello can arrive or break.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fulcrum/client_hello.hpp"

using namespace fulcrum;
using Status = ClientHelloScan::Status;

namespace {

std::vector<uint8_t> seed(const std::string& name) {
  std::ifstream file(std::string(FULCRUM_SOURCE_DIR) + "/tests/fuzz/corpus/client_hello/" + name,
                     std::ios::binary);
  REQUIRE_MESSAGE(file, name);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

ClientHelloScan scan(const std::vector<uint8_t>& bytes) { return scan_client_hello(bytes); }

// The same hello in records of at most `size` bytes of handshake each (a
// client may fragment it so; TLS allows it).
std::vector<uint8_t> fragmented(const std::vector<uint8_t>& hello, size_t size) {
  const std::vector<uint8_t> body(hello.begin() + 5, hello.end());
  std::vector<uint8_t> out;
  for (size_t at = 0; at < body.size(); at += size) {
    const size_t n = std::min(size, body.size() - at);
    out.insert(out.end(), {22, 3, 1, static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)});
    out.insert(out.end(), body.begin() + static_cast<std::ptrdiff_t>(at),
               body.begin() + static_cast<std::ptrdiff_t>(at + n));
  }
  return out;
}

}  // namespace

TEST_CASE("client hello: the server names of real hellos, lowered") {
  CHECK(scan(seed("openssl-api.test")).server_name == "api.test");
  CHECK(scan(seed("openssl-tls12-upper")).server_name == "www.apps.test");
  CHECK(scan(seed("python-shop.apps.test")).server_name == "shop.apps.test");
  CHECK(scan(seed("python-tls13-long-name")).server_name ==
        "a-rather-long-label-for-testing.some.deeply.nested.apps.test");
  const ClientHelloScan none = scan(seed("openssl-noname"));
  CHECK(none.status == Status::complete);
  CHECK(none.server_name.empty());
}

TEST_CASE("client hello: every prefix is incomplete, every fragmentation whole") {
  const std::vector<uint8_t> hello = seed("python-shop.apps.test");
  for (size_t n = 0; n < hello.size(); ++n) {
    const ClientHelloScan prefix = scan_client_hello(std::span(hello.data(), n));
    REQUIRE_MESSAGE(prefix.status == Status::incomplete, n);
  }
  CHECK(scan(hello).status == Status::complete);
  for (const size_t size : {1, 2, 3, 7, 100, 511}) {
    const std::vector<uint8_t> pieces = fragmented(hello, size);
    const ClientHelloScan whole = scan(pieces);
    CHECK_MESSAGE(whole.server_name == "shop.apps.test", size);
    // The last byte missing: still waiting.
    CHECK(scan_client_hello(std::span(pieces.data(), pieces.size() - 1)).status ==
          Status::incomplete);
  }
}

TEST_CASE("client hello: not TLS, and broken hellos") {
  CHECK(scan({'G', 'E', 'T', ' ', '/'}).status == Status::not_tls);
  CHECK(scan({22, 2, 0}).status == Status::not_tls);  // SSL 2-ish version byte
  CHECK(scan({}).status == Status::incomplete);
  const std::vector<uint8_t> hello = seed("openssl-api.test");
  const auto broken = [&](size_t at, uint8_t value) {
    std::vector<uint8_t> copy = hello;
    copy[at] = value;
    return scan(copy);
  };
  CHECK(broken(5, 2).reason == "first handshake message is not ClientHello");
  CHECK(broken(3, 0x40).reason == "record length out of range");
  // The handshake length one past its record: another record must follow,
  // and the data ends there.
  CHECK(broken(8, static_cast<uint8_t>(hello[8] + 1)).status == Status::incomplete);
  // A record of another type where the rest of the hello should be.
  std::vector<uint8_t> alert = fragmented(hello, 100);
  alert[105] = 21;
  CHECK(scan(alert).reason == "a record other than handshake inside the hello");
  // An oversized hello is refused from its header.
  CHECK(scan({22, 3, 1, 0, 4, 1, 0, 0x40, 1}).reason == "ClientHello longer than 16384 bytes");
}
