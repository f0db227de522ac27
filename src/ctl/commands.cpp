// The commands: which request each sends and what it prints.
#include "commands.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "api.hpp"
#include "exit_codes.hpp"
#include "fulcrum/token_file.hpp"
#include "json.hpp"
#include "reply.hpp"
#include "report.hpp"
#include "upgrade.hpp"

namespace fulcrum::ctl {

namespace {

// Each line of `message` on stderr, after the program's name.
int fail(const std::string& message) {
  size_t start = 0;
  while (start <= message.size()) {
    const size_t end = std::min(message.find('\n', start), message.size());
    std::fprintf(stderr, "fulcrumctl: %.*s\n", static_cast<int>(end - start),
                 message.data() + start);
    start = end + 1;
  }
  return kExitFailure;
}

// Writes `text` to stdout; a failed write (a closed pipe, a full disk) is
// an error too.
int print(const std::string& text) {
  const bool written = std::fwrite(text.data(), 1, text.size(), stdout) == text.size();
  if (written && std::fflush(stdout) == 0) return kExitOk;
  const int error = errno;
  if (error == EPIPE) return kExitFailure;  // the reader went away: nothing to tell it
  return fail(std::string("cannot write the output: ") + std::strerror(error));
}

// The reply body as JSON, or nullopt after printing why it is not.
std::optional<Json> parse_reply(const ApiResult& result, int& exit_code) {
  std::string error;
  std::optional<Json> json = Json::parse(result.body, &error);
  if (!json) exit_code = fail("the daemon's reply is not valid JSON (" + error + ")");
  return json;
}

// --json: the body as the daemon sent it, ending with a newline.
int print_raw(const std::string& body) { return print(body.ends_with('\n') ? body : body + "\n"); }

template <typename Report>
int print_report(const Json& json, Report report) {
  std::string text;
  try {
    text = report(json);
  } catch (const ReplyError& e) {
    return fail(std::string("unexpected reply from the daemon: ") + e.what());
  }
  return print(text);
}

// A failed exchange: its error, or for --json a refused reload's or
// upgrade's JSON (every error in it, for scripts); exit 1 either way.
int failed_exchange(const Options& options, const ApiResult& result) {
  if (options.json && !result.body.empty()) {
    const int printed = print_raw(result.body);
    return printed == kExitOk ? kExitFailure : printed;
  }
  return fail(result.error);
}

// The common end of every command: a failed exchange, a reply that is not
// JSON, the raw reply for --json, or the command's own report.
template <typename Report>
int answer(const Options& options, const ApiResult& result, Report report) {
  if (!result.ok) return failed_exchange(options, result);
  int exit_code = kExitOk;
  const std::optional<Json> json = parse_reply(result, exit_code);
  if (!json) return exit_code;
  if (options.json) return print_raw(result.body);
  return print_report(*json, report);
}

int show_stats(const Options& options, const Api& api) {
  using ReportFunction = std::string (*)(const Json&);
  const ReportFunction report = options.command == Command::status ? status_report : servers_report;
  return answer(options, api.stats(), report);
}

int change_server(const Options& options, const Api& api) {
  const std::string body = options.command == Command::weight
                               ? "{\"weight\":" + std::to_string(options.weight) + "}"
                               : std::string("{\"state\":\"") + state_name(options.command) + "\"}";
  return answer(
      options, api.set_server(options.service, options.server, body),
      [&options](const Json& server) { return server_change_report(options.service, server); });
}

int explain(const Options& options, const Api& api) {
  return answer(options, api.explain(options.service, options.client), explain_report);
}

int reload(const Options& options, const Api& api) {
  return answer(options, api.reload(), reload_report);
}

// The request (on `request`, which waits for the new binary's check), then
// the wait for the new image in /stats (on `polls`). --json prints the
// daemon's answer to the request, and the exit code tells the rest.
int upgrade(const Options& options, const Api& request, const Api& polls) {
  // Before the request: a failure the daemon stamps from here on is this
  // upgrade's.
  const auto started = std::chrono::system_clock::now();
  const ApiResult result = request.upgrade();
  if (!result.ok) return failed_exchange(options, result);
  int exit_code = kExitOk;
  const std::optional<Json> reply = parse_reply(result, exit_code);
  if (!reply) return exit_code;
  uint64_t before = 0;
  try {
    before = accepted_upgrades(*reply);
  } catch (const ReplyError& e) {
    return fail(std::string("unexpected reply from the daemon: ") + e.what());
  }
  if (options.json) {
    if (const int printed = print_raw(result.body); printed != kExitOk) return printed;
  }
  const UpgradeWait wait{
      [&polls] { return polls.stats(); },
      [] { return std::chrono::steady_clock::now(); },
      [](std::chrono::milliseconds interval) { std::this_thread::sleep_for(interval); },
  };
  const UpgradeEnd end = follow_upgrade(before, started, wait);
  if (end.exit_code != kExitOk) return fail(end.text);
  return options.json ? kExitOk : print(end.text + "\n");
}

}  // namespace

int run_command(const Options& options, const BaseUrl& url) {
  const bool writes = options.command != Command::status && options.command != Command::servers &&
                      options.command != Command::explain;
  std::optional<std::string> token;
  if (writes && options.token_file) {
    TokenFile file = read_token_file("token file", *options.token_file);
    if (!file.token) return fail(file.error);
    if (file.readable_by_others()) {
      std::fprintf(stderr,
                   "fulcrumctl: warning: token file %s is readable by group or others (mode %s)\n",
                   options.token_file->c_str(), file.mode_text().c_str());
    }
    token = std::move(file.token);
  }
  const Api api(url, token);
  switch (options.command) {
    case Command::status:
    case Command::servers: return show_stats(options, api);
    case Command::drain:
    case Command::ready:
    case Command::maint:
    case Command::weight: return change_server(options, api);
    case Command::reload: return reload(options, api);
    case Command::upgrade: return upgrade(options, Api(url, token, kUpgradeRequestTimeout), api);
    case Command::explain: return explain(options, api);
  }
  return kExitFailure;
}

}  // namespace fulcrum::ctl
