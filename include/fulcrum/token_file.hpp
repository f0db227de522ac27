// The admin API's bearer token file, read by the daemon
// (stats.admin_token_file) and by fulcrumctl (--token-file). One reader, so
// that both accept exactly the same files. Built as its own small library,
// the only part of the daemon's code that fulcrumctl links.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace fulcrum {

// A token is a line, not a document: a larger file is refused.
constexpr size_t kMaxTokenFileBytes = 4096;

struct TokenFile {
  std::optional<std::string> token;  // empty when refused, with `error` saying why
  std::string error;
  mode_t mode = 0;  // the file's permission bits (e.g. 0600)

  // Group or others may read the file: the secret is not only the owner's.
  // Each caller warns about it in its own voice (log line, stderr).
  bool readable_by_others() const;
  // The permission bits as `chmod` takes them: `0640`.
  std::string mode_text() const;
};

// Reads the token in `path`: the file's content without surrounding
// whitespace. Refused (no token, `error` set): a file that cannot be read,
// one larger than kMaxTokenFileBytes, an empty token, or one holding control
// characters (no HTTP header could carry it). Messages name the file as
// `what` and `path`: "cannot read WHAT PATH: ...", "WHAT PATH is empty".
TokenFile read_token_file(std::string_view what, const std::string& path);

// `text` without leading and trailing spaces, tabs, CR, LF, VT and FF.
std::string_view trim_whitespace(std::string_view text);

}  // namespace fulcrum
