// The daemon's side of the admin token file: the reader it shares with
// fulcrumctl, and its warning in the log. Apart from admin.cpp, whose
// parsers the fuzz targets link without the rest of the daemon.
#include <utility>

#include "fulcrum/admin.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/token_file.hpp"

namespace fulcrum {

std::optional<std::string> read_admin_token(const std::string& path, std::string& error) {
  TokenFile file = read_token_file("admin_token_file", path);
  if (!file.token) {
    error = file.error;
    return std::nullopt;
  }
  if (file.readable_by_others()) {
    log_warn("admin token file readable by group or others",
             {{"file", path}, {"mode", file.mode_text()}});
  }
  return std::move(file.token);
}

}  // namespace fulcrum
