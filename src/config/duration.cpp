// Durations as written in the configuration: `<digits><unit>`.
#include "fulcrum/duration.hpp"

#include <charconv>
#include <cstdint>

#include "fulcrum/quote.hpp"

namespace fulcrum {
namespace {

struct Unit {
  std::string_view suffix;
  int64_t milliseconds;
};

// Largest first, the order format_duration tries them in.
constexpr Unit kUnits[] = {
    {"h", 3'600'000},
    {"m", 60'000},
    {"s", 1'000},
    {"ms", 1},
};

constexpr int64_t kMaxMilliseconds = int64_t{365} * 24 * 3'600'000;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<Duration> parse_duration(std::string_view text, std::string* error) {
  const auto fail = [&](std::string_view reason) -> std::optional<Duration> {
    if (error) *error = "invalid duration " + quote(text) + ": " + std::string(reason);
    return std::nullopt;
  };
  if (text.empty()) return fail("empty, expected a number and a unit (ms, s, m or h)");
  if (text.find_first_of(" \t\r\n") != std::string_view::npos)
    return fail("spaces are not allowed");
  if (text.front() == '+' || text.front() == '-') return fail("a sign is not allowed");

  std::size_t digits = 0;
  while (digits < text.size() && is_digit(text[digits])) ++digits;
  if (digits == 0) return fail("expected a number and a unit (ms, s, m or h)");
  const std::string_view suffix = text.substr(digits);
  if (suffix.empty()) return fail("missing unit (ms, s, m or h)");
  if (suffix.front() == '.' || suffix.front() == ',') {
    return fail("fractions are not allowed, use a smaller unit");
  }

  const Unit* unit = nullptr;
  for (const Unit& candidate : kUnits) {
    if (candidate.suffix == suffix) unit = &candidate;
  }
  if (!unit) return fail("unknown unit " + quote(suffix) + " (expected ms, s, m or h)");

  uint64_t count = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, count);
  if (ec != std::errc{} || end != text.data() + digits ||
      count > static_cast<uint64_t>(kMaxMilliseconds / unit->milliseconds)) {
    return fail("longer than 365 days");
  }
  return Duration(static_cast<int64_t>(count) * unit->milliseconds);
}

std::string format_duration(Duration d) {
  const int64_t ms = d.count();
  if (ms == 0) return "0s";
  const Unit* unit = kUnits;
  while (ms % unit->milliseconds != 0) ++unit;  // stops at ms at the latest
  return std::to_string(ms / unit->milliseconds) + std::string(unit->suffix);
}

}  // namespace fulcrum
