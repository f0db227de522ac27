#include "reply_match.hpp"

#include <algorithm>

namespace fulcrum {

ReplyMatcher::ReplyMatcher(std::string_view expect, size_t limit)
    : expect_(expect), limit_(std::max(limit, expect.size())) {}

ReplyMatcher::State ReplyMatcher::feed(std::string_view bytes) {
  if (state_ != State::reading) return state_;
  const std::string_view taken = bytes.substr(0, room());
  received_ += taken.size();
  // Only the carried tail and the new bytes can hold a match not seen yet.
  std::string window = std::move(tail_);
  window.append(taken);
  if (window.find(expect_) != std::string::npos) {
    state_ = State::matched;
    tail_.clear();
    return state_;
  }
  const size_t keep = std::min(window.size(), expect_.size() - 1);
  tail_.assign(window, window.size() - keep, keep);
  if (received_ == limit_) state_ = State::full;
  return state_;
}

}  // namespace fulcrum
