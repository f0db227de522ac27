#include "fulcrum/agent_reply.hpp"

#include <charconv>

namespace fulcrum {

namespace {

bool is_separator(char c) { return c == ' ' || c == '\t' || c == ','; }

bool equals_ignoring_case(std::string_view word, std::string_view lower) {
  if (word.size() != lower.size()) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    char c = word[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

// A whole decimal number that fits in 32 bits.
std::optional<uint32_t> number(std::string_view digits) {
  uint32_t value = 0;
  const char* end = digits.data() + digits.size();
  auto [stop, error] = std::from_chars(digits.data(), end, value);
  if (digits.empty() || error != std::errc() || stop != end) return std::nullopt;
  return value;
}

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Applies one word to `reply`; false when it is not a word of the protocol.
bool apply_word(std::string_view word, AgentReply& reply) {
  if (equals_ignoring_case(word, "up")) {
    reply.up = true;
  } else if (equals_ignoring_case(word, "down") || equals_ignoring_case(word, "fail") ||
             equals_ignoring_case(word, "stopped")) {
    reply.up = false;
  } else if (equals_ignoring_case(word, "ready")) {
    reply.admin = AdminState::ready;
  } else if (equals_ignoring_case(word, "drain")) {
    reply.admin = AdminState::drain;
  } else if (equals_ignoring_case(word, "maint")) {
    reply.admin = AdminState::maint;
  } else if (word.size() > 1 && word.back() == '%') {
    const std::optional<uint32_t> percent = number(word.substr(0, word.size() - 1));
    if (!percent) return false;
    reply.weight_percent = percent;
  } else if (constexpr std::string_view kMaxconn = "maxconn:";
             word.size() > kMaxconn.size() &&
             equals_ignoring_case(word.substr(0, kMaxconn.size()), kMaxconn)) {
    const std::optional<uint32_t> limit = number(word.substr(kMaxconn.size()));
    if (!limit) return false;
    reply.max_connections = limit;
  } else {
    return false;
  }
  return true;
}

}  // namespace

std::optional<AgentReply> parse_agent_reply(std::string_view line, std::string& error) {
  AgentReply reply;
  // Everything after `#` describes a down word (HAProxy shows it beside the
  // state): not words to parse.
  if (const size_t hash = line.find('#'); hash != std::string_view::npos) {
    reply.description = std::string(trimmed(line.substr(hash + 1)));
    line = line.substr(0, hash);
  }
  bool understood = false;
  size_t at = 0;
  while (at < line.size()) {
    if (is_separator(line[at])) {
      ++at;
      continue;
    }
    size_t end = at;
    while (end < line.size() && !is_separator(line[end])) ++end;
    understood |= apply_word(line.substr(at, end - at), reply);
    at = end;
  }
  if (!understood) {
    error = line.find_first_not_of(" \t,") == std::string_view::npos ? "agent reply empty"
                                                                     : "agent reply not understood";
    return std::nullopt;
  }
  return reply;
}

}  // namespace fulcrum
