// Parsing fulcrumctl's arguments.
#include "options.hpp"

#include <cstdlib>
#include <string_view>

#include "url.hpp"

namespace fulcrum::ctl {

const char* const kUsage =
    "usage: fulcrumctl [--url URL] [--token-file FILE] [--json] COMMAND [ARGS]\n"
    "\n"
    "The operator's client of a running fulcrum: it talks to the stats endpoint.\n"
    "\n"
    "Commands:\n"
    "  status                    version, uptime, last reload and one line per service\n"
    "  servers                   every server: state, weight, sessions, failures, checks\n"
    "  drain SERVICE SERVER      no new sessions for SERVER; open ones go on\n"
    "  maint SERVICE SERVER      maintenance: no new sessions, like drain\n"
    "  ready SERVICE SERVER      back in rotation (up, or down while its health check fails)\n"
    "  weight SERVICE SERVER N   set the weight, 0..1000, until the next reload\n"
    "  reload                    reload the daemon's configuration file\n"
    "  upgrade                   exec the binary installed at the daemon's path in its place\n"
    "                            (same PID, sessions kept) and wait until it runs\n"
    "  explain SERVICE CLIENT[:PORT]\n"
    "                            which server a client maps to on this node, and why (maglev)\n"
    "\n"
    "Options:\n"
    "  --url URL          the stats endpoint, http://HOST:PORT (default http://127.0.0.1:9100,\n"
    "                     or $FULCRUM_URL)\n"
    "  --token-file FILE  file holding the admin token, needed by drain, maint, ready, weight,\n"
    "                     reload and upgrade (or $FULCRUM_TOKEN_FILE)\n"
    "  --json             print the daemon's JSON reply instead of a table or a line\n"
    "  -h, --help         print this help\n"
    "      --version      print the version\n"
    "\n"
    "Exit codes: 0 ok, 1 error from the daemon or the network (a refused, failed or\n"
    "unconfirmed upgrade too), 2 bad usage.\n";

namespace {

struct CommandSpec {
  std::string_view name;
  Command command;
  size_t arguments;
  std::string_view form;  // the arguments, for a usage error
};

constexpr CommandSpec kCommands[] = {
    {"status", Command::status, 0, "no arguments"},
    {"servers", Command::servers, 0, "no arguments"},
    {"drain", Command::drain, 2, "SERVICE SERVER"},
    {"ready", Command::ready, 2, "SERVICE SERVER"},
    {"maint", Command::maint, 2, "SERVICE SERVER"},
    {"weight", Command::weight, 3, "SERVICE SERVER N"},
    {"reload", Command::reload, 0, "no arguments"},
    {"upgrade", Command::upgrade, 0, "no arguments"},
    {"explain", Command::explain, 2, "SERVICE CLIENT[:PORT]"},
};

CommandLine usage_error(std::string message) {
  CommandLine line;
  line.action = CommandLine::Action::usage_error;
  line.error = std::move(message);
  return line;
}

bool is_number_like(std::string_view arg) {
  return arg.size() > 1 && arg[0] == '-' && (arg[1] == '.' || (arg[1] >= '0' && arg[1] <= '9'));
}

// 0..1000 written as plain decimal digits.
std::optional<int> parse_weight(std::string_view text) {
  if (text.empty() || text.size() > 4) return std::nullopt;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value > 1000) return std::nullopt;
  return value;
}

std::optional<std::string> non_empty(const char* value) {
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

}  // namespace

Environment Environment::from_process() {
  return Environment{non_empty(std::getenv("FULCRUM_URL")),
                     non_empty(std::getenv("FULCRUM_TOKEN_FILE"))};
}

const char* state_name(Command command) {
  switch (command) {
    case Command::drain: return "drain";
    case Command::ready: return "ready";
    case Command::maint: return "maint";
    default: return "";
  }
}

CommandLine parse_command_line(const std::vector<std::string>& args, const Environment& env) {
  CommandLine line;
  std::optional<std::string> url;
  std::optional<std::string> token_file;
  std::vector<std::string> words;
  bool options_done = false;

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (options_done || arg.empty() || arg[0] != '-' || arg == "-" || is_number_like(arg)) {
      words.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
    } else if (arg == "-h" || arg == "--help") {
      line.action = CommandLine::Action::help;
      return line;
    } else if (arg == "--version") {
      line.action = CommandLine::Action::version;
      return line;
    } else if (arg == "--json") {
      line.options.json = true;
    } else if (arg == "--url" || arg == "--token-file") {
      if (i + 1 >= args.size()) return usage_error(std::string(arg) + " needs a value");
      (arg == "--url" ? url : token_file) = args[++i];
    } else if (arg.starts_with("--url=")) {
      url = std::string(arg.substr(6));
    } else if (arg.starts_with("--token-file=")) {
      token_file = std::string(arg.substr(13));
    } else {
      return usage_error("unknown option '" + std::string(arg) + "'");
    }
  }

  if (words.empty()) return usage_error("no command given");
  const CommandSpec* spec = nullptr;
  for (const CommandSpec& candidate : kCommands) {
    if (candidate.name == words[0]) spec = &candidate;
  }
  if (spec == nullptr) return usage_error("unknown command '" + words[0] + "'");
  if (words.size() - 1 != spec->arguments) {
    return usage_error(std::string(spec->name) + " takes " + std::string(spec->form) + ", got " +
                       std::to_string(words.size() - 1) + " argument" +
                       (words.size() == 2 ? "" : "s"));
  }
  Options& options = line.options;
  options.command = spec->command;
  if (spec->command == Command::explain) {
    options.service = words[1];
    options.client = words[2];
    if (options.service.empty() || options.client.empty())
      return usage_error("empty SERVICE or CLIENT");
  } else if (spec->arguments >= 2) {
    options.service = words[1];
    options.server = words[2];
    if (options.service.empty() || options.server.empty())
      return usage_error("empty SERVICE or SERVER name");
  }
  if (spec->command == Command::weight) {
    const auto weight = parse_weight(words[3]);
    if (!weight) return usage_error("weight must be an integer 0..1000, got '" + words[3] + "'");
    options.weight = *weight;
  }

  options.url = url ? *url : env.url ? *env.url : std::string(kDefaultUrl);
  options.token_file = token_file ? token_file : env.token_file;
  if (options.token_file && options.token_file->empty())
    return usage_error("--token-file needs a file name");
  return line;
}

}  // namespace fulcrum::ctl
