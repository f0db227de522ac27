// The daemon's address as fulcrumctl is given it (--url, FULCRUM_URL):
// `http://HOST[:PORT][/PREFIX]`, HOST a name, an IPv4 or an [IPv6] literal.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fulcrum::ctl {

inline constexpr std::string_view kDefaultUrl = "http://127.0.0.1:9100";

struct BaseUrl {
  std::string text;         // as given, without a trailing '/': for messages
  std::string host;         // to connect to: a name or an IP literal, no brackets
  std::string host_header;  // the Host header: HOST[:PORT] as written
  int port = 80;
  std::string prefix;  // path before /stats, /api/...: empty or `/a/b`

  // The path of an endpoint below the prefix: path("/stats"). Appended
  // rather than `prefix + std::string(endpoint)`, on which GCC 12 at -O3
  // warns wrongly (-Wrestrict, GCC bug 105329).
  std::string path(std::string_view endpoint) const {
    std::string out = prefix;
    out += endpoint;
    return out;
  }
};

// Parses `text`; nullopt with `error` set when it is no http:// URL with a
// host (https, user info, a query or a fragment are refused too).
std::optional<BaseUrl> parse_base_url(std::string_view text, std::string* error);

// `text` as one path segment: unreserved characters and ':' '@' '!' '$'
// '&' '\'' '(' ')' '*' '+' ',' ';' '=' kept, every other byte %XX.
std::string encode_path_segment(std::string_view text);

}  // namespace fulcrum::ctl
