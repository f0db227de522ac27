// libFuzzer target for the configuration loader (YAML text to a validated
// Config): any text gives either a configuration or errors, never both or
// neither, never a crash or an exception, and every error has a position and
// stays on one line (SPEC.md: every error names file, line and column).
// Host names are not resolved (numeric_resolver.cpp). Seeds in
// corpus/config/, dictionary config.dict.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fulcrum/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const fulcrum::ConfigLoad load = fulcrum::load_config_text(text, "fuzz.yaml");
  if (load.config.has_value() == !load.errors.empty()) std::abort();
  for (const fulcrum::ConfigError& error : load.errors) {
    if (error.line < 1 || error.column < 1 || error.message.empty()) std::abort();
    if (error.to_string().find('\n') != std::string_view::npos) std::abort();
  }
  return 0;
}
