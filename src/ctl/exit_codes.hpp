// fulcrumctl's exit codes (docs/fulcrumctl.md).
#pragma once

namespace fulcrum::ctl {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // the daemon answered an error or could not be reached; an upgrade
                     // refused, failed or not confirmed
  kExitUsage = 2,
};

}  // namespace fulcrum::ctl
