#include "fulcrum/admin.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

namespace fulcrum {

namespace {

// A cursor over the body for the small JSON subset the API takes.
class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool eat(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool at_end() {
    skip_space();
    return pos_ == text_.size();
  }
  // A string without escapes (keys and the state values need none).
  std::optional<std::string> string() {
    if (!eat('"')) return std::nullopt;
    const size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      if (text_[pos_] == '\\' || static_cast<unsigned char>(text_[pos_]) < 0x20)
        return std::nullopt;
      ++pos_;
    }
    if (pos_ == text_.size()) return std::nullopt;
    return std::string(text_.substr(start, pos_++ - start));
  }
  // A non-negative integer of at most 9 digits.
  std::optional<uint32_t> integer() {
    skip_space();
    const size_t start = pos_;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    const size_t digits = pos_ - start;
    if (digits == 0 || digits > 9) return std::nullopt;
    if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E'))
      return std::nullopt;
    return static_cast<uint32_t>(std::stoul(std::string(text_.substr(start, digits))));
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

std::optional<AdminState> admin_state(std::string_view name) {
  if (name == "ready") return AdminState::ready;
  if (name == "drain") return AdminState::drain;
  if (name == "maint") return AdminState::maint;
  return std::nullopt;
}

}  // namespace

std::optional<AdminChange> parse_admin_change(std::string_view body, std::string& error) {
  Reader reader(body);
  AdminChange change;
  if (!reader.eat('{')) {
    error = "expected a JSON object";
    return std::nullopt;
  }
  bool first = true;
  while (!reader.eat('}')) {
    if (!first && !reader.eat(',')) {
      error = "expected , or } in the object";
      return std::nullopt;
    }
    first = false;
    const auto key = reader.string();
    if (!key || !reader.eat(':')) {
      error = "expected a \"key\": value pair";
      return std::nullopt;
    }
    if (*key == "state") {
      const auto value = reader.string();
      const auto state = value ? admin_state(*value) : std::nullopt;
      if (!state) {
        error = "state must be \"ready\", \"drain\" or \"maint\"";
        return std::nullopt;
      }
      if (change.state) {
        error = "duplicate key \"state\"";
        return std::nullopt;
      }
      change.state = state;
    } else if (*key == "weight") {
      const auto value = reader.integer();
      if (!value || *value > 1000) {
        error = "weight must be an integer from 0 to 1000";
        return std::nullopt;
      }
      if (change.weight) {
        error = "duplicate key \"weight\"";
        return std::nullopt;
      }
      change.weight = value;
    } else {
      error = "unknown key \"" + *key + "\" (expected state, weight)";
      return std::nullopt;
    }
  }
  if (!reader.at_end()) {
    error = "unexpected text after the object";
    return std::nullopt;
  }
  if (!change.state && !change.weight) {
    error = "nothing to change: give \"state\" and/or \"weight\"";
    return std::nullopt;
  }
  return change;
}

bool bearer_matches(std::string_view authorization, std::string_view token) {
  constexpr std::string_view kScheme = "Bearer ";
  if (authorization.size() < kScheme.size()) return false;
  // The scheme is not secret; the token comparison below is constant time.
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) !=
        std::tolower(static_cast<unsigned char>(kScheme[i]))) {
      return false;
    }
  }
  const std::string_view given = authorization.substr(kScheme.size());
  // Compare every byte of the longer of the two, whatever differs first.
  unsigned char difference = given.size() == token.size() ? 0 : 1;
  const size_t length = std::max(given.size(), token.size());
  for (size_t i = 0; i < length; ++i) {
    const unsigned char a = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    const unsigned char b = i < token.size() ? static_cast<unsigned char>(token[i]) : 0;
    difference |= static_cast<unsigned char>(a ^ b);
  }
  return difference == 0;
}

}  // namespace fulcrum
