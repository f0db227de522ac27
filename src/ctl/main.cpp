// fulcrumctl: the operator's client for a running fulcrum (SPEC.md
// "Command line"; docs/fulcrumctl.md).
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "options.hpp"
#include "url.hpp"

namespace {

// The one mistake, and where the usage is: the whole help would bury it.
int usage_error(const std::string& message) {
  std::fprintf(stderr, "fulcrumctl: %s\nTry 'fulcrumctl --help' for the usage.\n", message.c_str());
  return fulcrum::ctl::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  using fulcrum::ctl::CommandLine;
  // A daemon that closes the connection early, or a closed stdout pipe, is
  // an error to report, not a silent death.
  std::signal(SIGPIPE, SIG_IGN);

  const std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  const CommandLine line =
      fulcrum::ctl::parse_command_line(args, fulcrum::ctl::Environment::from_process());
  switch (line.action) {
    case CommandLine::Action::help:
      std::fputs(fulcrum::ctl::kUsage, stdout);
      return fulcrum::ctl::kExitOk;
    case CommandLine::Action::version:
      std::printf("fulcrumctl %s\n", FULCRUM_VERSION);
      return fulcrum::ctl::kExitOk;
    case CommandLine::Action::usage_error: return usage_error(line.error);
    case CommandLine::Action::run: break;
  }
  std::string error;
  const auto url = fulcrum::ctl::parse_base_url(line.options.url, &error);
  if (!url) return usage_error(error);
  return fulcrum::ctl::run_command(line.options, *url);
}
