#include <doctest/doctest.h>

#include <string>

#include "fulcrum/health.hpp"

using fulcrum::RiseFall;

namespace {

// Feeds results ('+' success, '-' failure) and returns the state after
// each: 'U' up, 'D' down.
std::string run(RiseFall& machine, const std::string& results) {
  std::string states;
  for (char result : results) {
    machine.record(result == '+');
    states += machine.up() ? 'U' : 'D';
  }
  return states;
}

}  // namespace

TEST_CASE("an up server goes down after exactly `fall` failures in a row") {
  RiseFall machine(2, 3);
  CHECK(run(machine, "--") == "UU");
  CHECK(machine.streak() == 2);
  CHECK(run(machine, "-") == "D");
  CHECK(machine.streak() == 0);
}

TEST_CASE("a down server comes up after exactly `rise` successes in a row") {
  RiseFall machine(2, 3, false);
  CHECK(run(machine, "+") == "D");
  CHECK(run(machine, "+") == "U");
}

TEST_CASE("a result of the other kind restarts the count") {
  RiseFall machine(3, 3);
  CHECK(run(machine, "--+--+--+") == "UUUUUUUUU");  // never 3 failures in a row
  CHECK(run(machine, "---") == "UUD");
  CHECK(run(machine, "++-++-++-") == "DDDDDDDDD");  // never 3 successes in a row
  CHECK(run(machine, "+++") == "DDU");
}

TEST_CASE("record() reports exactly the flips") {
  RiseFall machine(1, 1);
  CHECK_FALSE(machine.record(true));
  CHECK(machine.record(false));
  CHECK_FALSE(machine.record(false));
  CHECK(machine.record(true));
}

TEST_CASE("a flapping server changes state no faster than rise/fall allow") {
  RiseFall machine(2, 2);
  // Alternating results: never two alike in a row, so never a change.
  CHECK(run(machine, "-+-+-+-+-+") == "UUUUUUUUUU");
  // Pairs: each change needs its full streak.
  CHECK(run(machine, "--++--++") == "UDDUUDDU");
}
