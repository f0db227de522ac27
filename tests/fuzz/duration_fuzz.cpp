// libFuzzer target for the duration parser: any text is a duration of at
// most 365 days or one error line, and a parsed duration printed by
// format_duration parses back to itself. Seeds in corpus/duration/.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fulcrum/duration.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto duration = fulcrum::parse_duration(text, &error);
  if (!duration) {
    if (error.empty() || error.find('\n') != std::string::npos) std::abort();
    return 0;
  }
  if (duration->count() < 0 || *duration > std::chrono::hours(24 * 365)) std::abort();
  if (fulcrum::parse_duration(fulcrum::format_duration(*duration)) != duration) std::abort();
  return 0;
}
