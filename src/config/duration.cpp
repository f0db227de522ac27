// Durations as written in the configuration: `<digits><unit>`.
#include "fulcrum/duration.hpp"

#include <algorithm>
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

const Unit* find_unit(std::string_view suffix) {
  for (const Unit& unit : kUnits) {
    if (unit.suffix == suffix) return &unit;
  }
  return nullptr;
}

// `text` read as a sum of two or more `<digits><unit>` parts (`1h30m`), in
// milliseconds; nullopt when it is not of that form. Only to suggest the
// single-unit form in an error: the sum is capped so it cannot overflow.
std::optional<int64_t> compound_milliseconds(std::string_view text) {
  int64_t total = 0;
  int parts = 0;
  while (!text.empty()) {
    std::size_t digits = 0;
    while (digits < text.size() && is_digit(text[digits])) ++digits;
    std::size_t letters = digits;
    while (letters < text.size() && !is_digit(text[letters])) ++letters;
    const Unit* unit = find_unit(text.substr(digits, letters - digits));
    uint64_t count = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, count);
    if (digits == 0 || !unit || ec != std::errc{} || end != text.data() + digits)
      return std::nullopt;
    const auto limit = static_cast<uint64_t>(kMaxMilliseconds / unit->milliseconds);
    total += static_cast<int64_t>(std::min(count, limit + 1)) * unit->milliseconds;
    total = std::min(total, kMaxMilliseconds + 1);
    ++parts;
    text.remove_prefix(letters);
  }
  if (parts < 2) return std::nullopt;
  return total;
}

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

  const Unit* unit = find_unit(suffix);
  if (!unit) {
    if (const std::optional<int64_t> total = compound_milliseconds(text)) {
      if (*total > kMaxMilliseconds) return fail("longer than 365 days");
      return fail("compound durations are not supported, use " + format_duration(Duration(*total)));
    }
    return fail("unknown unit " + quote(suffix) + " (expected ms, s, m or h)");
  }

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
