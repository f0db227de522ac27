// The strict JSON reader: a recursive descent over the text, one function
// per grammar rule of RFC 8259, failing at the first byte that breaks it.
#include "json.hpp"

#include <cstdlib>
#include <limits>
#include <unordered_set>

namespace fulcrum::ctl {

namespace {

constexpr int kMaxDepth = 64;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, uint32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

// The length of the well-formed UTF-8 sequence at the start of `text`
// (shortest form, no surrogates, at most U+10FFFF), or 0.
size_t utf8_sequence(std::string_view text) {
  const auto byte = [&text](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  size_t length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // no overlong forms
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // no overlong forms
    if (lead == 0xF4) high = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  if (byte(1) < low || byte(1) > high) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return length;
}

}  // namespace

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : text_(text) {}

  std::optional<Json> run(std::string* error) {
    Json value;
    skip_space();
    if (parse_value(value, 0)) {
      skip_space();
      if (pos_ < text_.size()) fail("unexpected text after the value");
    }
    if (!error_.empty()) {
      if (error != nullptr) *error = where() + ": " + error_;
      return std::nullopt;
    }
    return value;
  }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  bool fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }

  // `line L, column C` of the current position (bytes, both from 1).
  std::string where() const {
    size_t line = 1;
    size_t column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(column);
  }

  // What is at the current position, for errors.
  std::string found() const {
    if (at_end()) return "the end of the text";
    const auto c = static_cast<unsigned char>(text_[pos_]);
    if (c < 0x20 || c >= 0x7F) {
      static const char digits[] = "0123456789abcdef";
      return std::string("byte 0x") + digits[c >> 4] + digits[c & 0xF];
    }
    return std::string("'") + static_cast<char>(c) + "'";
  }

  void skip_space() {
    while (!at_end() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
                         text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool parse_value(Json& out, int depth) {
    switch (peek()) {
      case '{': return parse_object(out, depth + 1);
      case '[': return parse_array(out, depth + 1);
      case '"': out.type_ = Json::Type::string; return parse_string(out.text_);
      case 't': return parse_literal(out, "true", Json::Type::boolean, true);
      case 'f': return parse_literal(out, "false", Json::Type::boolean, false);
      case 'n': return parse_literal(out, "null", Json::Type::null, false);
      default:
        if (peek() == '-' || is_digit(peek())) return parse_number(out);
        return fail("expected a value, found " + found());
    }
  }

  bool parse_literal(Json& out, std::string_view word, Json::Type type, bool value) {
    if (text_.substr(pos_, word.size()) != word) return fail("expected a value, found " + found());
    pos_ += word.size();
    out.type_ = type;
    out.boolean_ = value;
    return true;
  }

  bool parse_digits() {
    if (!is_digit(peek())) return fail("expected a digit, found " + found());
    while (is_digit(peek())) ++pos_;
    return true;
  }

  bool parse_number(Json& out) {
    const size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (is_digit(peek())) return fail("leading zero in a number");
    } else if (!parse_digits()) {
      return false;
    }
    if (peek() == '.') {
      ++pos_;
      if (!parse_digits()) return false;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!parse_digits()) return false;
    }
    out.type_ = Json::Type::number;
    out.text_ = std::string(text_.substr(start, pos_ - start));
    return true;
  }

  // Four hex digits after `\u`.
  bool parse_hex4(uint32_t& code) {
    code = 0;
    for (int i = 0; i < 4; ++i) {
      const int digit = hex_value(peek());
      if (digit < 0) return fail("expected 4 hex digits after \\u, found " + found());
      code = code * 16 + static_cast<uint32_t>(digit);
      ++pos_;
    }
    return true;
  }

  bool parse_escape(std::string& out) {
    if (at_end()) return fail("unterminated string");
    const char c = text_[pos_];
    ++pos_;
    switch (c) {
      case '"': out += '"'; return true;
      case '\\': out += '\\'; return true;
      case '/': out += '/'; return true;
      case 'b': out += '\b'; return true;
      case 'f': out += '\f'; return true;
      case 'n': out += '\n'; return true;
      case 'r': out += '\r'; return true;
      case 't': out += '\t'; return true;
      case 'u': break;
      default: --pos_; return fail("invalid escape in a string: a backslash before " + found());
    }
    uint32_t code = 0;
    if (!parse_hex4(code)) return false;
    if (code >= 0xDC00 && code <= 0xDFFF) return fail("lone low surrogate in a \\u escape");
    if (code >= 0xD800 && code <= 0xDBFF) {
      if (text_.substr(pos_, 2) != "\\u")
        return fail("high surrogate not followed by a low surrogate");
      pos_ += 2;
      uint32_t low = 0;
      if (!parse_hex4(low)) return false;
      if (low < 0xDC00 || low > 0xDFFF)
        return fail("high surrogate not followed by a low surrogate");
      code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
    }
    append_utf8(out, code);
    return true;
  }

  bool parse_string(std::string& out) {
    ++pos_;  // the opening quote
    out.clear();
    while (true) {
      if (at_end()) return fail("unterminated string");
      const char c = text_[pos_];
      const auto byte = static_cast<unsigned char>(c);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c == '\\') {
        ++pos_;
        if (!parse_escape(out)) return false;
      } else if (byte < 0x20) {
        return fail("control character " + found() + " in a string (must be escaped)");
      } else if (byte < 0x80) {
        out += c;
        ++pos_;
      } else {
        const size_t length = utf8_sequence(text_.substr(pos_));
        if (length == 0) return fail("invalid UTF-8 in a string");
        out.append(text_.substr(pos_, length));
        pos_ += length;
      }
    }
  }

  bool parse_array(Json& out, int depth) {
    if (depth > kMaxDepth)
      return fail("nested deeper than " + std::to_string(kMaxDepth) + " levels");
    ++pos_;
    out.type_ = Json::Type::array;
    skip_space();
    if (peek() == ']') {
      ++pos_;
      return true;
    }
    while (true) {
      skip_space();
      Json item;
      if (!parse_value(item, depth)) return false;
      out.items_.push_back(std::move(item));
      skip_space();
      if (peek() == ',') {
        ++pos_;
        skip_space();
        if (peek() == ']') return fail("trailing comma in an array");
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or ']' in an array, found " + found());
    }
  }

  bool parse_object(Json& out, int depth) {
    if (depth > kMaxDepth)
      return fail("nested deeper than " + std::to_string(kMaxDepth) + " levels");
    ++pos_;
    out.type_ = Json::Type::object;
    std::unordered_set<std::string> seen;
    skip_space();
    if (peek() == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      skip_space();
      if (peek() != '"') return fail("expected a string key in an object, found " + found());
      const size_t key_start = pos_;
      std::string key;
      if (!parse_string(key)) return false;
      if (!seen.insert(key).second) {
        pos_ = key_start;
        return fail("duplicate key \"" + key + "\" in an object");
      }
      skip_space();
      if (peek() != ':') return fail("expected ':' after an object key, found " + found());
      ++pos_;
      skip_space();
      Json value;
      if (!parse_value(value, depth)) return false;
      out.keys_.push_back(std::move(key));
      out.items_.push_back(std::move(value));
      skip_space();
      if (peek() == ',') {
        ++pos_;
        skip_space();
        if (peek() == '}') return fail("trailing comma in an object");
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or '}' in an object, found " + found());
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
  std::string error_;
};

std::optional<Json> Json::parse(std::string_view text, std::string* error) {
  return JsonParser(text).run(error);
}

double Json::as_double() const {
  if (type_ != Type::number) return 0;
  // strtod in the "C" locale (fulcrumctl never calls setlocale): the
  // grammar above already fixed the form; overflow gives +-HUGE_VAL.
  return std::strtod(text_.c_str(), nullptr);
}

std::optional<uint64_t> Json::as_uint64() const {
  if (type_ != Type::number || text_.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : text_) {
    if (!is_digit(c)) return std::nullopt;  // sign, fraction or exponent
    const auto digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

const Json* Json::find(std::string_view key) const {
  if (type_ != Type::object) return nullptr;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) return &items_[i];
  }
  return nullptr;
}

std::string_view describe(Json::Type type) {
  switch (type) {
    case Json::Type::null: return "null";
    case Json::Type::boolean: return "a boolean";
    case Json::Type::number: return "a number";
    case Json::Type::string: return "a string";
    case Json::Type::array: return "an array";
    case Json::Type::object: return "an object";
  }
  return "a value";
}

}  // namespace fulcrum::ctl
