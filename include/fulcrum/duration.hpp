// Durations as written in the configuration: an unsigned integer and a unit,
// `250ms`, `3s`, `10m`, `1h`.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace fulcrum {

using Duration = std::chrono::milliseconds;

// Parses `<digits><unit>` with unit ms, s, m or h. Returns nullopt and sets
// `error` (when given) on anything else: missing unit, sign, fraction,
// whitespace, overflow beyond 365 days.
std::optional<Duration> parse_duration(std::string_view text, std::string* error = nullptr);

// Shortest exact form: `0s`, `250ms`, `3s`, `10m`, `1h`.
std::string format_duration(Duration d);

}  // namespace fulcrum
