// Base URL parsing (on libevent's evhttp_uri) and path segment encoding.
#include "url.hpp"

#include <event2/http.h>

#include <memory>

namespace fulcrum::ctl {

namespace {

struct UriFree {
  void operator()(evhttp_uri* uri) const { evhttp_uri_free(uri); }
};

bool is_unreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool is_segment_delimiter(char c) {
  return std::string_view(":@!$&'()*+,;=").find(c) != std::string_view::npos;
}

}  // namespace

std::optional<BaseUrl> parse_base_url(std::string_view text, std::string* error) {
  const auto failure = [&](const std::string& why) {
    *error = "invalid URL '" + std::string(text) + "': " + why;
    return std::nullopt;
  };
  std::string given(text);
  while (!given.empty() && given.back() == '/' && !given.ends_with("://")) given.pop_back();
  if (given.find("://") == std::string::npos) return failure("expected http://HOST[:PORT]");
  std::unique_ptr<evhttp_uri, UriFree> uri(evhttp_uri_parse(given.c_str()));
  if (!uri) return failure("expected http://HOST[:PORT]");
  const char* scheme = evhttp_uri_get_scheme(uri.get());
  if (scheme == nullptr || std::string_view(scheme) != "http") {
    return failure("only http:// is supported (the stats endpoint speaks plain HTTP)");
  }
  const char* host = evhttp_uri_get_host(uri.get());
  if (host == nullptr || *host == '\0') return failure("no host");
  if (evhttp_uri_get_userinfo(uri.get()) != nullptr)
    return failure("user information is not supported");
  if (evhttp_uri_get_query(uri.get()) != nullptr || evhttp_uri_get_fragment(uri.get()) != nullptr) {
    return failure("a query or fragment has no meaning here");
  }
  const int port = evhttp_uri_get_port(uri.get());
  if (port == 0) return failure("port 0");

  BaseUrl url;
  url.port = port < 0 ? 80 : port;
  url.host_header = host;
  if (port >= 0) url.host_header += ":" + std::to_string(port);
  url.host = host;
  if (url.host.size() >= 2 && url.host.front() == '[' && url.host.back() == ']') {
    url.host = url.host.substr(1, url.host.size() - 2);
  }
  const char* path = evhttp_uri_get_path(uri.get());
  url.prefix = path != nullptr ? path : "";
  while (!url.prefix.empty() && url.prefix.back() == '/') url.prefix.pop_back();
  url.text = std::move(given);
  return url;
}

std::string encode_path_segment(std::string_view text) {
  static const char digits[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    if (is_unreserved(c) || is_segment_delimiter(c)) {
      out += c;
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out += '%';
      out += digits[byte >> 4];
      out += digits[byte & 0xF];
    }
  }
  return out;
}

}  // namespace fulcrum::ctl
