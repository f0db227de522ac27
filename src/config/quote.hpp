// Configuration text inside error messages: every error stays on one line
// whatever the offending value holds.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace fulcrum {

// `text` with `"`, `\` and control characters escaped.
inline std::string escape(std::string_view text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          char hex[5];
          std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(c));
          out += hex;
        } else {
          out += c;
        }
    }
  }
  return out;
}

// `text` escaped, in double quotes.
// Built piece by piece: GCC 12 at -O3 warns wrongly (-Wrestrict, GCC bug
// 105329) on `"\"" + escape(text) + "\""`.
inline std::string quote(std::string_view text) {
  std::string out = "\"";
  out += escape(text);
  out += '"';
  return out;
}

}  // namespace fulcrum
