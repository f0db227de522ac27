// fulcrumctl's strict JSON reader (src/ctl/json.cpp).
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "json.hpp"

using fulcrum::ctl::Json;

namespace {

// The error for `text` (empty when it parses).
std::string error_of(std::string_view text) {
  std::string error;
  if (Json::parse(text, &error)) return {};
  return error;
}

Json parse_ok(std::string_view text) {
  std::string error;
  auto value = Json::parse(text, &error);
  INFO("text: ", std::string(text), " error: ", error);
  REQUIRE(value.has_value());
  return *value;
}

std::string string_of(std::string_view text) {
  const Json value = parse_ok(text);
  REQUIRE(value.is_string());
  return value.text();
}

}  // namespace

TEST_CASE("json: literals and numbers") {
  CHECK(parse_ok("null").is_null());
  CHECK(parse_ok("true").as_bool());
  CHECK_FALSE(parse_ok("false").as_bool());
  CHECK(parse_ok(" \t\r\n true \n").is_bool());

  CHECK(parse_ok("0").as_uint64() == uint64_t{0});
  CHECK(parse_ok("42").as_uint64() == uint64_t{42});
  CHECK(parse_ok("18446744073709551615").as_uint64() == UINT64_MAX);
  CHECK_FALSE(
      parse_ok("18446744073709551616").as_uint64().has_value());  // a number, but not a count
  CHECK_FALSE(parse_ok("-1").as_uint64().has_value());
  CHECK_FALSE(parse_ok("1.5").as_uint64().has_value());
  CHECK_FALSE(parse_ok("1e3").as_uint64().has_value());
  CHECK(parse_ok("-0").as_double() == 0.0);
  CHECK(parse_ok("1.5").as_double() == 1.5);
  CHECK(parse_ok("-2.25e2").as_double() == -225.0);
  CHECK(parse_ok("1E+2").as_double() == 100.0);
  CHECK(parse_ok("12.500").text() == "12.500");  // the text as written
  // Counters past 2^53 stay exact.
  CHECK(parse_ok("9007199254740993").as_uint64() == uint64_t{9007199254740993ULL});
}

TEST_CASE("json: strings and escapes") {
  CHECK(string_of(R"("")").empty());
  CHECK(string_of(R"("plain text")") == "plain text");
  CHECK(string_of(R"("\" \\ \/ \b \f \n \r \t")") == "\" \\ / \b \f \n \r \t");
  CHECK(string_of(R"("\u0041\u00e9\u20AC")") == "A\xC3\xA9\xE2\x82\xAC");
  CHECK(string_of(R"("\ud83d\ude00")") == "\xF0\x9F\x98\x80");  // a surrogate pair
  CHECK(string_of(R"("\u0000")") == std::string(1, '\0'));
  CHECK(string_of("\"caf\xC3\xA9 \xF0\x9F\x98\x80\"") ==
        "caf\xC3\xA9 \xF0\x9F\x98\x80");  // raw UTF-8
}

TEST_CASE("json: arrays and objects keep their order") {
  const Json value = parse_ok(R"({"b": [1, "two", null, [], {}], "a": {"x": true}})");
  REQUIRE(value.is_object());
  CHECK(value.keys() == std::vector<std::string>{"b", "a"});
  const Json* b = value.find("b");
  REQUIRE(b != nullptr);
  REQUIRE(b->is_array());
  REQUIRE(b->size() == 5);
  CHECK(b->items()[0].as_uint64() == uint64_t{1});
  CHECK(b->items()[1].text() == "two");
  CHECK(b->items()[2].is_null());
  CHECK(b->items()[3].is_array());
  CHECK(b->items()[3].size() == 0);
  CHECK(b->items()[4].is_object());
  const Json* a = value.find("a");
  REQUIRE(a != nullptr);
  REQUIRE(a->find("x") != nullptr);
  CHECK(a->find("x")->as_bool());
  CHECK(value.find("missing") == nullptr);
  CHECK(b->find("x") == nullptr);  // not an object
}

TEST_CASE("json: a /stats document") {
  const Json stats = parse_ok(
      R"({"version":"0.1.0","uptime_seconds":12.345,"config":{"generation":1,"last_reload":)"
      R"({"ok":true,"at":"2026-11-25T16:38:47Z","error":null}},"services":[{"name":"web",)"
      R"("listen":["127.0.0.1:80"],"scheduler":"wrr","sessions":{"active":0,"total":3,"rejected":0},)"
      R"("bytes":{"in":10,"out":20},"servers":[]}]})"
      "\n");
  CHECK(stats.find("version")->text() == "0.1.0");
  CHECK(stats.find("uptime_seconds")->as_double() == doctest::Approx(12.345));
  CHECK(stats.find("config")->find("last_reload")->find("error")->is_null());
  CHECK(stats.find("services")->items()[0].find("sessions")->find("total")->as_uint64() ==
        uint64_t{3});
}

TEST_CASE("json: errors name the line and column") {
  CHECK(error_of("") == "line 1, column 1: expected a value, found the end of the text");
  CHECK(error_of("   ") == "line 1, column 4: expected a value, found the end of the text");
  CHECK(error_of("{\n  \"a\": 1,\n  \"b\" 2\n}") ==
        "line 3, column 7: expected ':' after an object key, found '2'");
  CHECK(error_of("[1 2]") == "line 1, column 4: expected ',' or ']' in an array, found '2'");
  CHECK(error_of("{\"a\":1 \"b\":2}") ==
        "line 1, column 8: expected ',' or '}' in an object, found '\"'");
  CHECK(error_of("nul") == "line 1, column 1: expected a value, found 'n'");
  CHECK(error_of("true false") == "line 1, column 6: unexpected text after the value");
}

TEST_CASE("json: what the grammar forbids") {
  // Structure.
  CHECK(error_of("[1,]") == "line 1, column 4: trailing comma in an array");
  CHECK(error_of("{\"a\":1,}") == "line 1, column 8: trailing comma in an object");
  CHECK(error_of("[,1]") != "");
  CHECK(error_of("{,}") != "");
  CHECK(error_of("{a:1}") == "line 1, column 2: expected a string key in an object, found 'a'");
  CHECK(error_of("{'a':1}") != "");
  CHECK(error_of("[1] // comment") != "");
  CHECK(error_of("/* c */ 1") != "");
  CHECK(error_of("[1") != "");
  CHECK(error_of("{\"a\":1") != "");
  CHECK(error_of("{\"a\":1,\"a\":2}") == "line 1, column 8: duplicate key \"a\" in an object");
  // Literals.
  CHECK(error_of("True") != "");
  CHECK(error_of("nan") != "");
  CHECK(error_of("undefined") != "");
  // Numbers.
  CHECK(error_of("01") == "line 1, column 2: leading zero in a number");
  CHECK(error_of("-") == "line 1, column 2: expected a digit, found the end of the text");
  CHECK(error_of("+1") != "");
  CHECK(error_of(".5") != "");
  CHECK(error_of("1.") != "");
  CHECK(error_of("1.e5") != "");
  CHECK(error_of("1e") != "");
  CHECK(error_of("1e+") != "");
  CHECK(error_of("0x10") != "");
  CHECK(error_of("Infinity") != "");
  CHECK(error_of("- 1") != "");
}

TEST_CASE("json: what strings may not hold") {
  CHECK(error_of("\"abc") == "line 1, column 5: unterminated string");
  CHECK(error_of("\"abc\\") == "line 1, column 6: unterminated string");
  CHECK(error_of("\"a\tb\"") ==
        "line 1, column 3: control character byte 0x09 in a string (must be escaped)");
  CHECK(error_of("\"a\nb\"") != "");
  CHECK(error_of(R"("\x41")") ==
        "line 1, column 3: invalid escape in a string: a backslash before 'x'");
  CHECK(error_of(R"("\u12")") == "line 1, column 6: expected 4 hex digits after \\u, found '\"'");
  CHECK(error_of(R"("\ude00")") == "line 1, column 8: lone low surrogate in a \\u escape");
  CHECK(error_of(R"("\ud83d")") ==
        "line 1, column 8: high surrogate not followed by a low surrogate");
  CHECK(error_of(R"("\ud83d\u0041")") != "");
  CHECK(error_of("'single'") != "");
  // Invalid UTF-8: a lone continuation byte, a truncated sequence, an
  // overlong form, an encoded surrogate, beyond U+10FFFF.
  CHECK(error_of("\"\x80\"") == "line 1, column 2: invalid UTF-8 in a string");
  CHECK(error_of("\"\xC3\"") != "");
  CHECK(error_of("\"\xC0\xAF\"") != "");
  CHECK(error_of("\"\xE0\x80\xAF\"") != "");
  CHECK(error_of("\"\xED\xA0\x80\"") != "");
  CHECK(error_of("\"\xF4\x90\x80\x80\"") != "");
  CHECK(error_of("\"\xFF\"") != "");
}

TEST_CASE("json: nesting is limited to 64 levels") {
  const auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  CHECK(error_of(nested(64)).empty());
  CHECK(error_of(nested(65)) == "line 1, column 65: nested deeper than 64 levels");
  CHECK(error_of(std::string(100000, '[')) != "");  // no stack overflow
  std::string objects;
  for (int i = 0; i < 65; ++i) objects += "{\"a\":";
  objects += "1" + std::string(65, '}');
  CHECK(error_of(objects) != "");
}

TEST_CASE("json: describe names the types") {
  CHECK(fulcrum::ctl::describe(Json::Type::object) == "an object");
  CHECK(fulcrum::ctl::describe(parse_ok("[]").type()) == "an array");
  CHECK(fulcrum::ctl::describe(parse_ok("\"\"").type()) == "a string");
  CHECK(fulcrum::ctl::describe(parse_ok("1").type()) == "a number");
  CHECK(fulcrum::ctl::describe(parse_ok("true").type()) == "a boolean");
  CHECK(fulcrum::ctl::describe(parse_ok("null").type()) == "null");
}
