#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "../../src/health/reply_match.hpp"

using fulcrum::ReplyMatcher;
using State = ReplyMatcher::State;

namespace {

constexpr std::string_view kReply = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n";

// Feeds `reply` in pieces of the given sizes (the rest in one last piece)
// and returns the state after each.
std::vector<State> feed_pieces(ReplyMatcher& matcher, std::string_view reply,
                               const std::vector<size_t>& sizes) {
  std::vector<State> states;
  for (size_t size : sizes) {
    states.push_back(matcher.feed(reply.substr(0, size)));
    reply.remove_prefix(std::min(size, reply.size()));
  }
  states.push_back(matcher.feed(reply));
  return states;
}

}  // namespace

TEST_CASE("expect: found in one piece, not found in another") {
  ReplyMatcher found("role:master");
  CHECK(found.feed(kReply) == State::matched);
  CHECK(found.received() == kReply.size());
  const std::string_view replica = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n";
  ReplyMatcher missing("role:master");
  CHECK(missing.feed(replica) == State::reading);
  CHECK(missing.received() == replica.size());
  CHECK(missing.room() == ReplyMatcher::kDefaultLimit - replica.size());
}

TEST_CASE("expect: split across two reads at every position, and a byte at a time") {
  const size_t at = kReply.find("role:master");
  for (size_t split = 0; split <= kReply.size(); ++split) {
    CAPTURE(split);
    ReplyMatcher matcher("role:master");
    const std::vector<State> states = feed_pieces(matcher, kReply, {split});
    // Matched by the piece that holds its last byte, not before.
    const bool first_holds_it = split >= at + 11;
    CHECK(states[0] == (first_holds_it ? State::matched : State::reading));
    CHECK(states[1] == State::matched);
  }
  ReplyMatcher matcher("role:master");
  for (size_t i = 0; i < kReply.size(); ++i) {
    CAPTURE(i);
    CHECK(matcher.feed(kReply.substr(i, 1)) ==
          (i + 1 >= at + 11 ? State::matched : State::reading));
  }
}

TEST_CASE("expect: a match spread over three reads, after a false start") {
  ReplyMatcher matcher("role:master");
  CHECK(feed_pieces(matcher, "role:ma|role:mas", {7, 9}) ==
        std::vector<State>{State::reading, State::reading, State::reading});
  CHECK(matcher.feed("t") == State::reading);
  CHECK(matcher.feed("er\r\n") == State::matched);
}

TEST_CASE("expect: binary bytes, NUL included") {
  const std::string expect("\x00\xff\x01", 3);
  ReplyMatcher matcher(expect);
  CHECK(matcher.feed(std::string_view("ab\x00", 3)) == State::reading);
  CHECK(matcher.feed(std::string_view("\xff", 1)) == State::reading);
  CHECK(matcher.feed(std::string_view("\x01zz", 3)) == State::matched);
  ReplyMatcher other(expect);
  CHECK(other.feed(std::string_view("\x00\xff\x02\x00\xff", 5)) == State::reading);
}

TEST_CASE("expect: the limit fills without a match, and bytes past it are not looked at") {
  ReplyMatcher matcher("OK", 10);
  CHECK(matcher.feed("12345") == State::reading);
  CHECK(matcher.room() == 5);
  CHECK(matcher.feed("6789") == State::reading);
  CHECK(matcher.room() == 1);
  // "O" is the tenth byte; its "K" would be the eleventh.
  CHECK(matcher.feed("OK") == State::full);
  CHECK(matcher.received() == 10);
  CHECK(matcher.room() == 0);
  CHECK(matcher.feed("OK") == State::full);
  CHECK(matcher.received() == 10);

  ReplyMatcher last("OK", 10);
  CHECK(last.feed("12345678OK") == State::matched);  // ends on the last byte: still in
  ReplyMatcher past("OK", 10);
  CHECK(past.feed("123456789OK") == State::full);  // the same bytes in one read
}

TEST_CASE("expect: once matched, later bytes change nothing") {
  ReplyMatcher matcher("+PONG");
  CHECK(matcher.feed("+PONG\r\n") == State::matched);
  CHECK(matcher.room() == 0);
  CHECK(matcher.feed("-ERR\r\n") == State::matched);
  CHECK(matcher.received() == 7);
}

TEST_CASE("expect: an expect longer than the limit raises it") {
  const std::string expect(40, 'x');
  ReplyMatcher matcher(expect, 16);
  CHECK(matcher.room() == 40);
  CHECK(matcher.feed(std::string(39, 'x')) == State::reading);
  CHECK(matcher.feed("x") == State::matched);
}
