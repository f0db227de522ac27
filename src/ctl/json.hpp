// A small, strict JSON reader (RFC 8259) for the daemon's replies: objects,
// arrays, strings with every escape, numbers, true, false, null. Anything
// else is an error with its line and column: trailing commas, comments,
// single quotes, leading zeros, control characters or invalid UTF-8 in
// strings, lone surrogates, duplicate keys, nesting deeper than 64, or text
// after the value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fulcrum::ctl {

class Json {
 public:
  enum class Type { null, boolean, number, string, array, object };

  // The value of `text`, or nullopt with `error` set (when given) to
  // `line L, column C: what was wrong`.
  static std::optional<Json> parse(std::string_view text, std::string* error = nullptr);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  bool is_bool() const { return type_ == Type::boolean; }
  bool is_number() const { return type_ == Type::number; }
  bool is_string() const { return type_ == Type::string; }
  bool is_array() const { return type_ == Type::array; }
  bool is_object() const { return type_ == Type::object; }

  // Only meaningful for the matching type.
  bool as_bool() const { return boolean_; }
  double as_double() const;
  // An exact non-negative integer (no fraction, no exponent, at most
  // UINT64_MAX): the counters of /stats exceed what a double holds exactly.
  std::optional<uint64_t> as_uint64() const;
  // A string's value; a number's text as written.
  const std::string& text() const { return text_; }

  // Array elements, or object values in document order.
  const std::vector<Json>& items() const { return items_; }
  // Object keys in document order, one per element of items().
  const std::vector<std::string>& keys() const { return keys_; }
  size_t size() const { return items_.size(); }
  // An object's member, or nullptr (also when this is not an object).
  const Json* find(std::string_view key) const;

 private:
  friend class JsonParser;

  Type type_ = Type::null;
  bool boolean_ = false;
  std::string text_;
  std::vector<Json> items_;
  std::vector<std::string> keys_;
};

// Type names as errors print them: `null`, `a boolean`, `a number`, ...
std::string_view describe(Json::Type type);

}  // namespace fulcrum::ctl
