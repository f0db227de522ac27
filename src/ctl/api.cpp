// Requests to the daemon and the meaning of its answers.
#include "api.hpp"

#include "fulcrum/token_file.hpp"
#include "http.hpp"
#include "json.hpp"

namespace fulcrum::ctl {

namespace {

// A failed reload's JSON (`{"ok":false,"generation":N,"error":"..."}`) as
// one line, or empty when the body is not of that shape.
std::string reload_failure(std::string_view body) {
  const std::optional<Json> reply = Json::parse(body);
  const Json* error = reply ? reply->find("error") : nullptr;
  if (error == nullptr || !error->is_string()) return "";
  std::string line = "reload failed: " + body_summary(error->text(), 4096);
  const Json* generation = reply->find("generation");
  if (generation != nullptr && generation->as_uint64()) {
    line += " (the running configuration stays, generation ";
    line += generation->text();
    line += ')';
  }
  return line;
}

}  // namespace

std::string body_summary(std::string_view body, size_t limit) {
  std::string_view text = trim_whitespace(body);
  if (const size_t end = text.find_first_of("\r\n"); end != std::string_view::npos)
    text = text.substr(0, end);
  std::string out;
  for (char c : text.substr(0, limit)) {
    const auto byte = static_cast<unsigned char>(c);
    out += byte < 0x20 || byte == 0x7F ? '?' : c;
  }
  if (text.size() > limit) out += "...";
  return out;
}

ApiResult Api::stats() const {
  HttpRequest request;
  request.method = Method::get;
  request.path = url_.path("/stats");
  request.headers = {{"Accept", "application/json"}};
  return finish(http_exchange(url_, request, timeout_), Target::stats, "");
}

ApiResult Api::set_server(std::string_view service, std::string_view server,
                          const std::string& body) const {
  const std::string path = url_.path("/api/v1/services/" + encode_path_segment(service) +
                                     "/servers/" + encode_path_segment(server));
  return post(path, body, Target::server, std::string(service) + "/" + std::string(server));
}

ApiResult Api::reload() const { return post(url_.path("/api/v1/reload"), "", Target::reload, ""); }

ApiResult Api::post(const std::string& path, const std::string& body, Target target,
                    std::string_view what) const {
  HttpRequest request;
  request.method = Method::post;
  request.path = path;
  request.headers = {{"Accept", "application/json"}};
  if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
  if (token_) request.headers.emplace_back("Authorization", "Bearer " + *token_);
  request.body = body;
  return finish(http_exchange(url_, request, timeout_), target, what);
}

ApiResult Api::finish(const HttpOutcome& outcome, Target target, std::string_view what) const {
  ApiResult result;
  if (!outcome.response) {
    result.error = "cannot reach " + url_.text + ": " + outcome.error;
    return result;
  }
  const HttpResponse& response = *outcome.response;
  if (response.status >= 200 && response.status <= 299) {
    result.ok = true;
    result.body = response.body;
    return result;
  }
  const bool write = target != Target::stats;
  if (write && response.status == 401) {
    result.error = token_ ? "the daemon rejected the token (401)"
                          : "the daemon rejected the request without a token (401); "
                            "give one with --token-file or FULCRUM_TOKEN_FILE";
  } else if (write && response.status == 403) {
    result.error = "the daemon has no admin token configured (403)";
  } else if (target == Target::server && response.status == 404) {
    result.error = "no such service or server: " + std::string(what) + " (404)";
  } else if (std::string failure = target == Target::reload ? reload_failure(response.body) : "";
             !failure.empty()) {
    result.error = std::move(failure);
  } else {
    const std::string summary = body_summary(response.body);
    result.error = "the daemon answered " + std::to_string(response.status) +
                   (response.reason.empty() ? "" : " " + response.reason) +
                   (summary.empty() ? "" : ": " + summary);
  }
  return result;
}

}  // namespace fulcrum::ctl
