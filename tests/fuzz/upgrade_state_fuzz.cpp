// libFuzzer target for the binary upgrade's state decoder: any input is a
// state or one error line, never both or neither; a decoded state names
// only valid descriptors, and written again it is the very input (a state
// has one encoding), so it decodes again to the same. Seeds in
// corpus/upgrade_state/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fulcrum/upgrade_state.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const fulcrum::UpgradeStateRead read = fulcrum::decode_upgrade_state(input);
  if (read.state.has_value() == !read.error.empty()) std::abort();
  if (!read.state) {
    if (read.error.find('\n') != std::string::npos) std::abort();
    return 0;
  }
  for (int fd : fulcrum::carried_descriptors(*read.state)) {
    if (fd < 0) std::abort();
  }
  if (fulcrum::encode_upgrade_state(*read.state) != input) std::abort();
  return 0;
}
