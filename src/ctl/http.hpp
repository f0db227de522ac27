// One HTTP request to the daemon on libevent's evhttp client, with a
// deadline for the whole exchange.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "url.hpp"

namespace fulcrum::ctl {

enum class Method { get, post };

struct HttpRequest {
  Method method = Method::get;
  std::string path;  // from the root, prefix included
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  std::string reason;
  std::string body;
};

struct HttpOutcome {
  std::optional<HttpResponse> response;  // any status, or nullopt:
  std::string error;                     // why there is none (`Connection refused`)
};

// Replies larger than this are refused (the /stats of many services stays
// far below it).
inline constexpr size_t kMaxReplyBytes = 64u << 20;

// Sends `request` on a fresh connection (`Connection: close`, with Host) and
// waits at most `timeout` for the whole reply.
HttpOutcome http_exchange(const BaseUrl& url, const HttpRequest& request,
                          std::chrono::seconds timeout);

}  // namespace fulcrum::ctl
