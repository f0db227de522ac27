// Requests to the daemon and the meaning of its answers.
#include "api.hpp"

#include <vector>

#include "fulcrum/token_file.hpp"
#include "http.hpp"
#include "json.hpp"

namespace fulcrum::ctl {

std::string reload_failure(std::string_view body) {
  const std::optional<Json> reply = Json::parse(body);
  const Json* error = reply ? reply->find("error") : nullptr;
  if (error == nullptr || !error->is_string()) return "";
  const auto texts = [&reply](std::string_view key) {
    std::vector<std::string> out;
    const Json* list = reply->find(key);
    if (list == nullptr || !list->is_array()) return out;
    for (const Json& item : list->items()) {
      if (item.is_string()) out.push_back(body_summary(item.text(), 4096));
    }
    return out;
  };
  std::vector<std::string> errors = texts("errors");
  if (errors.empty()) errors.push_back(body_summary(error->text(), 4096));
  std::string text = "reload failed: ";
  text += errors.size() == 1 ? errors.front() : std::to_string(errors.size()) + " errors";
  const Json* generation = reply->find("generation");
  if (generation != nullptr && generation->as_uint64()) {
    text += " (the running configuration stays, generation ";
    text += generation->text();
    text += ')';
  }
  if (errors.size() > 1) {
    for (const std::string& line : errors) text += "\nerror: " + line;
  }
  for (const std::string& line : texts("warnings")) text += "\nwarning: " + line;
  return text;
}

std::string upgrade_refusal(std::string_view body) {
  const std::optional<Json> reply = Json::parse(body);
  const Json* error = reply ? reply->find("error") : nullptr;
  if (error == nullptr || !error->is_string()) return "";
  return "upgrade refused: " + body_summary(error->text(), 4096);
}

std::string not_found(std::string_view body, std::string_view what) {
  const std::string line = body_summary(body);
  if (line.starts_with("no such server \"") || line.starts_with("no such service \""))
    return line + " (404)";
  return "no such service or server: " + std::string(what) + " (404)";
}

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

ApiResult Api::explain(std::string_view service, std::string_view client) const {
  HttpRequest request;
  request.method = Method::get;
  request.path = url_.path("/explain?service=" + encode_path_segment(service) +
                           "&client=" + encode_path_segment(client));
  request.headers = {{"Accept", "application/json"}};
  return finish(http_exchange(url_, request, timeout_), Target::stats, "");
}

ApiResult Api::reload() const { return post(url_.path("/api/v1/reload"), "", Target::reload, ""); }

ApiResult Api::upgrade() const {
  return post(url_.path("/api/v1/upgrade"), "", Target::upgrade, "");
}

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

std::string Api::refusal(Target target, std::string_view body) {
  switch (target) {
    case Target::reload: return reload_failure(body);
    case Target::upgrade: return upgrade_refusal(body);
    default: return "";
  }
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
    result.error = not_found(response.body, what);
  } else if (target == Target::upgrade && response.status == 404) {
    // The admin API answers, so the token was good: the daemon is older
    // than upgrades in place.
    result.error = "the daemon has no upgrade API (404): a fulcrum older than upgrades in place";
  } else if (std::string failure = refusal(target, response.body); !failure.empty()) {
    result.error = std::move(failure);
    result.body = response.body;
  } else {
    const std::string summary = body_summary(response.body);
    result.error = "the daemon answered " + std::to_string(response.status) +
                   (response.reason.empty() ? "" : " " + response.reason) +
                   (summary.empty() ? "" : ": " + summary);
  }
  return result;
}

}  // namespace fulcrum::ctl
