// Text from configuration files, clients and servers shown inside a quoted
// string: /stats JSON strings, logfmt values and configuration errors. One
// escaper serves all three, so that a value reads the same in each and
// always stays on one line. JSON's rules (RFC 8259) are the strictest of the
// three readers: a JSON parser rejects anything else, and logfmt readers
// (go-logfmt, Loki, Vector) unquote values with the same rules.
//
// Not for Prometheus label values: the text format knows only \\, \" and \n
// there and reads any other backslash sequence as an error
// (render.cpp's label_value).
#pragma once

#include <string>
#include <string_view>

namespace fulcrum {

// True for a byte that escape() rewrites. Control characters and DEL are
// escaped too: a terminal or journal viewer must show them, not act on them.
constexpr bool needs_escape(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return c == '"' || c == '\\' || byte < 0x20 || byte == 0x7f;
}

// Appends `text` to `out` with `"`, `\`, control characters and DEL
// escaped as in JSON. Other bytes (UTF-8 included) pass unchanged.
inline void append_escaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : text) {
    if (!needs_escape(c)) {
      out += c;
      continue;
    }
    out += '\\';
    switch (c) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '\n': out += 'n'; break;
      case '\r': out += 'r'; break;
      case '\t': out += 't'; break;
      default: {
        const auto byte = static_cast<unsigned char>(c);
        out += "u00";
        out += kHex[byte >> 4];
        out += kHex[byte & 0xf];
      }
    }
  }
}

// `text` escaped, without quotes.
inline std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_escaped(out, text);
  return out;
}

// `text` escaped, in double quotes: a JSON string literal.
inline std::string quote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  append_escaped(out, text);
  out += '"';
  return out;
}

}  // namespace fulcrum
