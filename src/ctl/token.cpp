// Reading the admin token file.
#include "token.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace fulcrum::ctl {

namespace {

constexpr size_t kMaxTokenFile = 64 * 1024;

struct FileClose {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

}  // namespace

std::string_view trim_whitespace(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

std::optional<std::string> read_token_file(const std::string& path, std::string* error) {
  const std::string where = "cannot read token file " + path + ": ";
  std::unique_ptr<std::FILE, FileClose> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    *error = where + std::strerror(errno);
    return std::nullopt;
  }
  std::string content;
  char buffer[4096];
  while (true) {
    const size_t n = std::fread(buffer, 1, sizeof buffer, file.get());
    content.append(buffer, n);
    if (content.size() > kMaxTokenFile) {
      *error = where + "larger than 64 KiB";
      return std::nullopt;
    }
    if (n < sizeof buffer) break;
  }
  if (std::ferror(file.get())) {
    *error = where + std::strerror(errno);
    return std::nullopt;
  }
  const std::string_view token = trim_whitespace(content);
  if (token.empty()) {
    *error = "token file " + path + " is empty";
    return std::nullopt;
  }
  for (char c : token) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) {
      *error =
          "token file " + path + ": the token holds control characters (a line break inside it?)";
      return std::nullopt;
    }
  }
  return std::string(token);
}

}  // namespace fulcrum::ctl
