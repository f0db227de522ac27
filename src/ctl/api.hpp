// The daemon's HTTP API as fulcrumctl uses it: GET /stats and the write
// API, with each failure turned into one line for the operator.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "url.hpp"

namespace fulcrum::ctl {

inline constexpr std::chrono::seconds kRequestTimeout{5};

struct HttpOutcome;

struct ApiResult {
  bool ok = false;
  // The reply's body: when ok, and for a reload or an upgrade the daemon
  // refused (its JSON, which --json prints).
  std::string body;
  // Not ok: what went wrong, without the program name; one line, or for a
  // refused reload one line and then each error and warning on its own.
  std::string error;
};

class Api {
 public:
  // `token`: the admin token for writes (nullopt: none was given).
  Api(BaseUrl url, std::optional<std::string> token, std::chrono::seconds timeout = kRequestTimeout)
      : url_(std::move(url)), token_(std::move(token)), timeout_(timeout) {}

  // GET /stats.
  ApiResult stats() const;
  // POST /api/v1/services/SERVICE/servers/SERVER with a JSON body.
  ApiResult set_server(std::string_view service, std::string_view server,
                       const std::string& body) const;
  // POST /api/v1/reload.
  ApiResult reload() const;
  // POST /api/v1/upgrade: ok on 202, the new binary's check passed; the
  // daemon execs it right after answering.
  ApiResult upgrade() const;
  // GET /explain?service=SERVICE&client=CLIENT.
  ApiResult explain(std::string_view service, std::string_view client) const;

 private:
  enum class Target { stats, server, reload, upgrade };

  ApiResult post(const std::string& path, const std::string& body, Target target,
                 std::string_view what) const;
  ApiResult finish(const HttpOutcome& outcome, Target target, std::string_view what) const;
  // What a refused reload or upgrade says (its body kept for --json), or
  // empty: another error.
  static std::string refusal(Target target, std::string_view body);

  BaseUrl url_;
  std::optional<std::string> token_;
  std::chrono::seconds timeout_;
};

// A refused reload's JSON (`{"ok":false,"generation":N,"error":"...",
// "errors":[...],"warnings":[...]}`) as what fulcrumctl prints: `reload
// failed: ERROR (the running configuration stays, generation N)`, or with
// several errors `reload failed: K errors (...)` and an `error: ...` line
// for each; then a `warning: ...` line for each warning. Empty when the
// body is not of that shape. Daemons before the lists sent `error` alone.
std::string reload_failure(std::string_view body);

// A refused upgrade's JSON (`{"ok":false,"binary":"...","error":"..."}`,
// with 422, 409 or 503) as what fulcrumctl prints: `upgrade refused:
// ERROR`. Empty when the body is not of that shape.
std::string upgrade_refusal(std::string_view body);

// A 404 of the write API: the daemon's own line when it names what is
// unknown (`no such server "x" in service "web"; did you mean "y"?`), else
// `no such service or server: WHAT`; then ` (404)`.
std::string not_found(std::string_view body, std::string_view what);

// The first line of an error reply's body, trimmed, control characters
// shown as '?', cut to `limit` bytes. Not the daemon's quote()
// (fulcrum/quote.hpp): a person reads this inside a sentence, where a
// placeholder reads better than an escape, and fulcrumctl links none of the
// daemon's code.
std::string body_summary(std::string_view body, size_t limit = 200);

}  // namespace fulcrum::ctl
