#include "fulcrum/token_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "fulcrum/fd.hpp"

namespace fulcrum {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

// Reads at most `limit` bytes (fewer at the end of the file); read(2)'s
// errno on failure.
int read_at_most(int fd, size_t limit, std::string& content) {
  char buffer[1024];
  while (content.size() < limit) {
    const ssize_t n = ::read(fd, buffer, std::min(sizeof buffer, limit - content.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
  }
  return 0;
}

}  // namespace

bool TokenFile::readable_by_others() const { return (mode & (S_IRGRP | S_IROTH)) != 0; }

std::string TokenFile::mode_text() const {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string_view trim_whitespace(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

TokenFile read_token_file(std::string_view what, const std::string& path) {
  TokenFile result;
  const std::string name = std::string(what) + " " + path;
  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  struct stat status {};
  if (!fd || ::fstat(fd.get(), &status) != 0) {
    result.error = "cannot read " + name + ": " + std::strerror(errno);
    return result;
  }
  result.mode = status.st_mode;
  // One byte over the limit tells a file of exactly the limit from a larger one.
  std::string content;
  if (const int error = read_at_most(fd.get(), kMaxTokenFileBytes + 1, content); error != 0) {
    result.error = "cannot read " + name + ": " + std::strerror(error);
    return result;
  }
  if (content.size() > kMaxTokenFileBytes) {
    result.error = name + " is larger than " + std::to_string(kMaxTokenFileBytes / 1024) + " KiB";
    return result;
  }
  const std::string_view token = trim_whitespace(content);
  if (token.empty()) {
    result.error = name + " is empty";
    return result;
  }
  for (const char c : token) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) {
      result.error = name + ": the token holds control characters (a line break inside it?)";
      return result;
    }
  }
  result.token = std::string(token);
  return result;
}

}  // namespace fulcrum
