#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "fulcrum/duration.hpp"

using fulcrum::Duration;
using fulcrum::format_duration;
using fulcrum::parse_duration;

namespace {

// The error parse_duration reports for `text` (empty when it parses).
std::string error_of(std::string_view text) {
  std::string error;
  if (parse_duration(text, &error)) return {};
  return error;
}

}  // namespace

TEST_CASE("durations parse with every unit") {
  CHECK(parse_duration("250ms") == Duration(250));
  CHECK(parse_duration("3s") == Duration(3'000));
  CHECK(parse_duration("10m") == Duration(600'000));
  CHECK(parse_duration("1h") == Duration(3'600'000));
  CHECK(parse_duration("0s") == Duration(0));
  CHECK(parse_duration("0ms") == Duration(0));
  CHECK(parse_duration("007s") == Duration(7'000));
}

TEST_CASE("durations up to 365 days are accepted, longer ones are not") {
  CHECK(parse_duration("8760h") == Duration(int64_t{8760} * 3'600'000));
  CHECK(parse_duration("31536000000ms") == Duration(31'536'000'000));
  CHECK(error_of("8761h") == R"(invalid duration "8761h": longer than 365 days)");
  CHECK(error_of("31536000001ms") == R"(invalid duration "31536000001ms": longer than 365 days)");
  CHECK(error_of("99999999999999999999999s") ==
        R"(invalid duration "99999999999999999999999s": longer than 365 days)");
}

TEST_CASE("malformed durations are rejected with the reason") {
  CHECK(error_of("") ==
        R"(invalid duration "": empty, expected a number and a unit (ms, s, m or h))");
  CHECK(error_of("5") == R"(invalid duration "5": missing unit (ms, s, m or h))");
  CHECK(error_of("5x") == R"(invalid duration "5x": unknown unit "x" (expected ms, s, m or h))");
  CHECK(error_of("5sec") ==
        R"(invalid duration "5sec": unknown unit "sec" (expected ms, s, m or h))");
  CHECK(error_of("1h30m") ==
        R"(invalid duration "1h30m": compound durations are not supported, use 90m)");
  CHECK(error_of("1m30s") ==
        R"(invalid duration "1m30s": compound durations are not supported, use 90s)");
  CHECK(error_of("2h0m") ==
        R"(invalid duration "2h0m": compound durations are not supported, use 2h)");
  CHECK(error_of("1s500ms") ==
        R"(invalid duration "1s500ms": compound durations are not supported, use 1500ms)");
  CHECK(error_of("8760h1ms") == R"(invalid duration "8760h1ms": longer than 365 days)");
  CHECK(error_of("1h30") ==
        R"(invalid duration "1h30": unknown unit "h30" (expected ms, s, m or h))");
  CHECK(error_of("1h30x") ==
        R"(invalid duration "1h30x": unknown unit "h30x" (expected ms, s, m or h))");
  CHECK(error_of("5S") == R"(invalid duration "5S": unknown unit "S" (expected ms, s, m or h))");
  CHECK(error_of("-5s") == R"(invalid duration "-5s": a sign is not allowed)");
  CHECK(error_of("+5s") == R"(invalid duration "+5s": a sign is not allowed)");
  CHECK(error_of("1.5s") ==
        R"(invalid duration "1.5s": fractions are not allowed, use a smaller unit)");
  CHECK(error_of("5 s") == R"(invalid duration "5 s": spaces are not allowed)");
  CHECK(error_of(" 5s") == R"(invalid duration " 5s": spaces are not allowed)");
  CHECK(error_of("s") == R"(invalid duration "s": expected a number and a unit (ms, s, m or h))");
  CHECK(error_of("5s\n") == R"(invalid duration "5s\n": spaces are not allowed)");
}

TEST_CASE("parse_duration works without an error string") {
  CHECK_FALSE(parse_duration("bogus").has_value());
}

TEST_CASE("format_duration picks the largest exact unit") {
  CHECK(format_duration(Duration(0)) == "0s");
  CHECK(format_duration(Duration(250)) == "250ms");
  CHECK(format_duration(Duration(1'500)) == "1500ms");
  CHECK(format_duration(Duration(3'000)) == "3s");
  CHECK(format_duration(Duration(90'000)) == "90s");
  CHECK(format_duration(Duration(600'000)) == "10m");
  CHECK(format_duration(Duration(3'600'000)) == "1h");
  CHECK(format_duration(Duration(5'400'000)) == "90m");
}

TEST_CASE("format_duration and parse_duration round-trip") {
  const std::initializer_list<int64_t> samples = {0,      1,      999,       1'000,
                                                  61'000, 60'000, 7'200'000, 31'536'000'000};
  for (const int64_t ms : samples) {
    CAPTURE(ms);
    CHECK(parse_duration(format_duration(Duration(ms))) == Duration(ms));
  }
}
