// fulcrumctl's command line: global options (anywhere before `--`), one
// command and its arguments; FULCRUM_URL and FULCRUM_TOKEN_FILE stand in
// for --url and --token-file.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace fulcrum::ctl {

enum class Command { status, servers, drain, ready, maint, weight, reload, upgrade, explain };

struct Options {
  std::string url;                        // --url, else FULCRUM_URL, else the default
  std::optional<std::string> token_file;  // --token-file, else FULCRUM_TOKEN_FILE
  bool json = false;
  Command command = Command::status;
  std::string service;  // drain, ready, maint, weight, explain
  std::string server;
  std::string client;  // explain: ADDR or ADDR:PORT
  int weight = 0;      // weight
};

// The environment variables that stand in for options (empty = unset).
struct Environment {
  std::optional<std::string> url;
  std::optional<std::string> token_file;

  static Environment from_process();
};

struct CommandLine {
  enum class Action { run, help, version, usage_error };
  Action action = Action::run;
  std::string error;  // usage_error: what was wrong
  Options options;
};

// `args` without the program name.
CommandLine parse_command_line(const std::vector<std::string>& args, const Environment& env);

extern const char* const kUsage;

// The name of a server state command (`drain`), as the write API spells it.
const char* state_name(Command command);

}  // namespace fulcrum::ctl
