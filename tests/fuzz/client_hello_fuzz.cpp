// libFuzzer target for the ClientHello scan (sni_routes): any input must
// give a verdict without crashing or reading past it; a name it returns is
// a lower-case host name of 1 to 253 bytes; and a hello found complete is
// found incomplete, or complete with the same name, from its first half
// (the scan only ever sees a growing prefix of what the client sent). Seeds in
// corpus/client_hello/: real hellos of openssl s_client and Python's ssl.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "fulcrum/client_hello.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using fulcrum::ClientHelloScan;
  const std::span<const uint8_t> input(data, size);
  const ClientHelloScan scan = fulcrum::scan_client_hello(input);
  if (scan.status == ClientHelloScan::Status::complete) {
    const std::string& name = scan.server_name;
    if (name.size() > 253) std::abort();
    for (const char c : name) {
      if (c >= 'A' && c <= 'Z') std::abort();
    }
    // A prefix is still incomplete, or already the same hello.
    const ClientHelloScan half = fulcrum::scan_client_hello(input.first(size / 2));
    if (half.status != ClientHelloScan::Status::incomplete &&
        (half.status != ClientHelloScan::Status::complete || half.server_name != name))
      std::abort();
  }
  return 0;
}
