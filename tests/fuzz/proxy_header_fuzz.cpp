// libFuzzer target for the PROXY header decoder: any input must give a
// verdict without crashing, an `ok` header never claims more bytes than it
// was given, and a valid header re-encoded parses back to the same source.
// Built with clang -fsanitize=fuzzer (see docs/testing.md); seeds in
// corpus/proxy_header/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fulcrum/proxy_protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const fulcrum::ProxyHeader header = fulcrum::parse_proxy_header(input);
  if (header.status == fulcrum::ProxyHeader::Status::ok) {
    if (header.size == 0 || header.size > size || header.size > fulcrum::kMaxProxyHeader)
      std::abort();
    if (header.source) {
      const std::string again = fulcrum::encode_proxy_v2(*header.source, *header.source);
      const fulcrum::ProxyHeader reparsed = fulcrum::parse_proxy_header(again);
      if (!reparsed.source || reparsed.source->to_string() != header.source->to_string())
        std::abort();
    }
  }
  return 0;
}
