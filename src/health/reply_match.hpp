// The `expect` of a send/expect health check: whether a reply that arrives
// in pieces contains the expected bytes within its first `limit` bytes.
// Pure (no sockets), so that the splitting of the reply into reads can be
// tested on its own.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace fulcrum {

class ReplyMatcher {
 public:
  // How much of a reply is searched: a server that talks on and on without
  // the expected bytes fails the check instead of being read until timeout.
  static constexpr size_t kDefaultLimit = 16 * 1024;

  enum class State {
    reading,  // no match yet, room for more
    matched,  // the reply so far contains `expect`
    full,     // `limit` bytes read without a match
  };

  // `expect` must outlive the matcher and not be empty. The limit is raised
  // to expect's size, so that any expect can match.
  explicit ReplyMatcher(std::string_view expect, size_t limit = kDefaultLimit);

  // Takes the next piece of the reply. Bytes past the limit are not looked
  // at, so the outcome does not depend on how the reply was split. Once
  // matched or full, further bytes change nothing.
  State feed(std::string_view bytes);

  State state() const { return state_; }
  // Bytes taken so far (never more than the limit).
  size_t received() const { return received_; }
  // How many more bytes feed() would look at.
  size_t room() const { return state_ == State::reading ? limit_ - received_ : 0; }

 private:
  std::string_view expect_;
  size_t limit_;
  size_t received_ = 0;
  // The last expect.size() - 1 bytes taken: a match may begin in one piece
  // and end in a later one.
  std::string tail_;
  State state_ = State::reading;
};

}  // namespace fulcrum
