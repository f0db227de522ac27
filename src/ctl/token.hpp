// The admin token: read from a file (--token-file, FULCRUM_TOKEN_FILE),
// surrounding whitespace dropped, as the daemon reads its own copy.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fulcrum::ctl {

// The token in `path`, or nullopt with `error` set: unreadable, empty, or
// holding characters an HTTP header cannot carry.
std::optional<std::string> read_token_file(const std::string& path, std::string* error);

// `text` without leading and trailing spaces, tabs, CR, LF, VT and FF.
std::string_view trim_whitespace(std::string_view text);

}  // namespace fulcrum::ctl
