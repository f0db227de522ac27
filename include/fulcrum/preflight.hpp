// The checks a loaded configuration goes through before it is served that
// need the process but no socket: the admin token file, the user and group
// fulcrum switches to, the capability transparent services need, and (not
// on reload) whether the open-file limit leaves room for any session. Start-up,
// every reload and `fulcrum --check` run this same function, so that
// --check refuses what starting or reloading would.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "fulcrum/config.hpp"

namespace fulcrum {

struct Preflight {
  std::vector<ConfigError> errors;      // at the key concerned
  std::vector<ConfigWarning> warnings;  // served anyway
  // stats.admin_token_file's token, read here (the one start and reload
  // serve with); none without a token file or after an error.
  std::optional<std::string> admin_token;
};

// Checks `config` in this process's privileges. For a reload, `started` is
// the configuration the daemon started with: its process has switched user
// already (a change of global.user or global.group needs a restart and is a
// warning), and no further switch is pending. nullptr at start-up and for
// --check.
Preflight preflight(const Config& config, const Config* started);

}  // namespace fulcrum
