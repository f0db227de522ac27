// How much the log says (global.log_level): a line is written when its
// level is at most the configured one.
#pragma once

#include <string_view>

namespace fulcrum {

enum class LogLevel { error, warn, info, debug };

// "error", "warn", "info" or "debug", as in the configuration and the log.
std::string_view to_string(LogLevel level);

}  // namespace fulcrum
