// libFuzzer target for the address parsers (`HOST:PORT`, `[IPv6]:PORT` and
// bare IP literals): any text gives addresses or one error line, never both,
// and each address printed by to_string() parses back to itself. Host names
// are not resolved (numeric_resolver.cpp). The first byte chooses the parser
// and allow_zero_port; the rest is the text. Seeds in corpus/address/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fulcrum/address.hpp"

namespace {

void check(const fulcrum::AddressParse& parsed, bool literal, bool allow_zero_port) {
  if (parsed.addresses.empty() == parsed.error.empty()) std::abort();
  if (parsed.error.find('\n') != std::string::npos) std::abort();
  for (const fulcrum::SocketAddress& address : parsed.addresses) {
    if (literal && address.port() != 0) std::abort();
    if (!literal && address.port() == 0 && !allow_zero_port) std::abort();
    const fulcrum::AddressParse again = literal ? fulcrum::parse_ip_literal(address.host_string())
                                                : fulcrum::parse_address(address.to_string(), true);
    if (again.addresses.size() != 1 || !(again.addresses.front() == address)) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool literal = mode & 1;
  const bool allow_zero_port = mode & 2;
  check(literal ? fulcrum::parse_ip_literal(text) : fulcrum::parse_address(text, allow_zero_port),
        literal, allow_zero_port);
  return 0;
}
