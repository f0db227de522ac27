// Running one fulcrumctl command: request, check, print.
#pragma once

#include "options.hpp"
#include "url.hpp"

namespace fulcrum::ctl {

// Runs options.command against the daemon at `url`; prints the result on
// stdout or one error line on stderr; returns the exit code.
int run_command(const Options& options, const BaseUrl& url);

}  // namespace fulcrum::ctl
