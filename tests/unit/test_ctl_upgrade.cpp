// fulcrumctl upgrade without the network (src/ctl/upgrade.cpp): its command
// line, the daemon's answers to the request, how /stats tells the outcome,
// and the whole wait against a scripted daemon on a clock of the test.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "api.hpp"
#include "json.hpp"
#include "options.hpp"
#include "reply.hpp"
#include "upgrade.hpp"

using namespace fulcrum::ctl;
using namespace std::chrono_literals;

namespace {

Json json(std::string_view text) {
  std::string error;
  auto value = Json::parse(text, &error);
  INFO(error);
  REQUIRE(value.has_value());
  return *value;
}

// 2026-12-05 at `time_of_day`, UTC.
std::chrono::sys_seconds on_dec_5(std::chrono::seconds time_of_day) {
  return std::chrono::sys_days(std::chrono::year(2026) / 12 / 5) + time_of_day;
}

// When the command started in the cases below: 02:30:08.6, so that the
// daemon's whole seconds fall on either side of it.
const std::chrono::system_clock::time_point kStarted = on_dec_5(2h + 30min + 8s) + 600ms;

// The members of /stats the wait reads, around a `last_failure` (JSON).
std::string stats(uint64_t upgrades, bool in_progress, const std::string& last_failure) {
  return R"({"version":"0.1.0+next","uptime_seconds":1800.5,"started_at":"2026-12-05T02:00:00Z",)"
         R"("upgrades":)" +
         std::to_string(upgrades) + R"(,"upgrade":{"in_progress":)" +
         (in_progress ? "true" : "false") + R"(,"last_failure":)" + last_failure +
         R"(},"config":{"generation":1},"services":[]})";
}

std::string failure_at(const std::string& at) {
  return R"({"at":")" + at + R"(","error":"execve /usr/sbin/fulcrum: Permission denied"})";
}

constexpr const char* kUpgraded =
    "upgraded to fulcrum 0.1.0+next (upgrades 3, pid up since 2026-12-05T02:00:00Z)";

UpgradeProgress progress_of(const std::string& text, uint64_t before = 2) {
  return upgrade_progress(json(text), before, kStarted);
}

// A ReplyError's message, or "(no error)".
template <typename F>
std::string reply_error_of(F f) {
  try {
    f();
  } catch (const ReplyError& e) {
    return e.what();
  }
  return "(no error)";
}

ApiResult answered(std::string body) {
  ApiResult result;
  result.ok = true;
  result.body = std::move(body);
  return result;
}

ApiResult unanswered(std::string error) {
  ApiResult result;
  result.error = std::move(error);
  return result;
}

constexpr const char* kRefused = "cannot reach http://127.0.0.1:9100: Connection refused";

// A daemon answering the polls in turn (the last answer again once they
// run out) on a clock that moves only when the wait sleeps.
struct ScriptedDaemon {
  std::vector<ApiResult> answers;
  size_t polls = 0;
  std::chrono::steady_clock::time_point now{};

  UpgradeWait wait() {
    return {
        [this] { return answers.at(std::min(polls++, answers.size() - 1)); },
        [this] { return now; },
        [this](std::chrono::milliseconds interval) { now += interval; },
    };
  }

  UpgradeEnd follow(uint64_t before = 2) { return follow_upgrade(before, kStarted, wait()); }
  std::chrono::milliseconds elapsed() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
  }
};

}  // namespace

TEST_CASE("ctl options: upgrade") {
  CommandLine line = parse_command_line({"upgrade", "--token-file", "/t"}, {});
  REQUIRE(line.action == CommandLine::Action::run);
  CHECK(line.options.command == Command::upgrade);
  CHECK(line.options.token_file == std::optional<std::string>("/t"));
  line = parse_command_line({"--json", "upgrade"}, {});
  CHECK(line.options.command == Command::upgrade);
  CHECK(line.options.json);
  CHECK(parse_command_line({"upgrade", "/usr/sbin/fulcrum"}, {}).error ==
        "upgrade takes no arguments, got 1 argument");
  CHECK(std::string_view(kUsage).find("\n  upgrade  ") != std::string_view::npos);
}

TEST_CASE("ctl upgrade: the 202's count of upgrades before this one") {
  CHECK(accepted_upgrades(json(R"({"ok":true,"binary":"/usr/sbin/fulcrum",)"
                               R"("version":"0.1.0+next","upgrades":0})")) == 0);
  CHECK(accepted_upgrades(json(R"({"ok":true,"binary":"/usr/sbin/fulcrum",)"
                               R"("version":"0.1.0+next","upgrades":41})")) == 41);
  CHECK(reply_error_of([] { accepted_upgrades(json(R"({"ok":true})")); }) == "upgrades is missing");
  CHECK(reply_error_of([] { accepted_upgrades(json(R"({"upgrades":-1})")); }) ==
        "upgrades is a number, expected a non-negative integer");
  CHECK(reply_error_of([] { accepted_upgrades(json("[]")); }) ==
        "the reply is an array, expected an object");
}

TEST_CASE("ctl api: a refused upgrade is one line with the daemon's reason") {
  CHECK(upgrade_refusal(R"({"ok":false,"binary":"/usr/sbin/fulcrum","error":"the check exited )"
                        R"(with 1: /etc/fulcrum/fulcrum.yaml:3:5: unknown key \"x\" in global"})"
                        "\n") ==
        "upgrade refused: the check exited with 1: /etc/fulcrum/fulcrum.yaml:3:5: unknown key "
        "\"x\" in global");
  CHECK(upgrade_refusal(
            R"({"ok":false,"binary":"/usr/sbin/fulcrum","error":"an upgrade is under way"})") ==
        "upgrade refused: an upgrade is under way");
  CHECK(upgrade_refusal(
            R"({"ok":false,"binary":"/usr/sbin/fulcrum","error":"a reload is under way"})") ==
        "upgrade refused: a reload is under way");
  CHECK(upgrade_refusal(R"({"ok":false,"binary":"/usr/sbin/fulcrum","error":"stopping"})") ==
        "upgrade refused: stopping");
  // Control characters of the reason are not sent to the terminal.
  CHECK(upgrade_refusal(R"({"ok":false,"error":"a\u001b[2Jb"})") == "upgrade refused: a?[2Jb");
  // Not the daemon's JSON: the caller says what came instead.
  CHECK(upgrade_refusal("stopping\n").empty());
  CHECK(upgrade_refusal(R"({"ok":false,"error":3})").empty());
}

TEST_CASE("ctl upgrade: RFC 3339 times in whole seconds") {
  const std::chrono::sys_seconds expected = on_dec_5(2h + 30min + 8s);
  CHECK(parse_rfc3339("2026-12-05T02:30:08Z") == expected);
  CHECK(parse_rfc3339("2026-12-05t02:30:08z") == expected);
  CHECK(parse_rfc3339("2026-12-05T02:30:08.999999Z") == expected);  // the fraction dropped
  CHECK(parse_rfc3339("2026-12-05T03:30:08+01:00") == expected);
  CHECK(parse_rfc3339("2026-12-04T23:00:08-03:30") == expected);
  CHECK(parse_rfc3339("2026-12-05T02:30:08.5-00:00") == expected);
  CHECK(parse_rfc3339("1970-01-01T00:00:00Z") == std::chrono::sys_seconds{});
  // A leap second is the next minute's first.
  CHECK(parse_rfc3339("2016-12-31T23:59:60Z") ==
        std::chrono::sys_days(std::chrono::year(2017) / 1 / 1));
  CHECK(parse_rfc3339("2024-02-29T00:00:00Z") ==
        std::chrono::sys_days(std::chrono::year(2024) / 2 / 29));

  for (const char* text : {"",
                           "2026-12-05",
                           "2026-12-05T02:30:08",
                           "2026-12-05 02:30:08Z",
                           "2026-12-05T02:30Z",
                           "2026-12-5T02:30:08Z",
                           "2026/12/05T02:30:08Z",
                           "2026-13-05T02:30:08Z",
                           "2026-00-05T02:30:08Z",
                           "2026-02-29T02:30:08Z",
                           "2026-12-00T02:30:08Z",
                           "2026-12-05T24:00:00Z",
                           "2026-12-05T02:60:08Z",
                           "2026-12-05T02:30:61Z",
                           "2026-12-05T02:30:08.Z",
                           "2026-12-05T02:30:08ZZ",
                           "2026-12-05T02:30:08Z ",
                           "2026-12-05T02:30:08+0100",
                           "2026-12-05T02:30:08+01",
                           "2026-12-05T02:30:08+01:60",
                           "2026-12-05T02:30:08+24:00",
                           "2026-12-05T02:30:08+01:00:00",
                           "-026-12-05T02:30:08Z",
                           "+2026-12-05T02:30:08Z",
                           "2026-12-05T0x:30:08Z"}) {
    INFO(text);
    CHECK_FALSE(parse_rfc3339(text).has_value());
  }
}

TEST_CASE("ctl upgrade: what one /stats says of the upgrade") {
  using State = UpgradeProgress::State;
  // The count went past the 202's: the new image answers.
  UpgradeProgress progress = progress_of(stats(3, false, "null"));
  CHECK(progress.state == State::done);
  CHECK(progress.line == kUpgraded);
  CHECK(progress_of(stats(3, false, failure_at("2026-12-05T02:30:09Z"))).state == State::done);
  CHECK(progress_of(stats(7, false, "null")).line ==
        "upgraded to fulcrum 0.1.0+next (upgrades 7, pid up since 2026-12-05T02:00:00Z)");

  // The old image, under way to the exec.
  progress = progress_of(stats(2, true, "null"));
  CHECK(progress.state == State::waiting);
  CHECK(progress.line.empty());
  // A failure shown while under way is an earlier upgrade's, even one from
  // the second the command started in.
  CHECK(progress_of(stats(2, true, failure_at("2026-12-05T02:30:08Z"))).state == State::waiting);
  // Done and failed, from before the command: not this upgrade's.
  CHECK(progress_of(stats(2, false, failure_at("2026-12-05T02:30:07Z"))).state == State::waiting);
  CHECK(progress_of(stats(2, false, failure_at("2026-12-04T02:30:09Z"))).state == State::waiting);
  // A daemon that started afresh (not the PID the request reached).
  CHECK(progress_of(stats(0, false, "null")).state == State::waiting);

  // This upgrade's failure: in the second the command started (whole
  // seconds: 02:30:08 covers 02:30:08.6) or later, in any offset.
  for (const char* at : {"2026-12-05T02:30:08Z", "2026-12-05T02:30:09Z",
                         "2026-12-05T03:30:08+01:00", "2026-12-06T00:00:00Z"}) {
    INFO(at);
    progress = progress_of(stats(2, false, failure_at(at)));
    CHECK(progress.state == State::failed);
    CHECK(progress.line == "upgrade failed: execve /usr/sbin/fulcrum: Permission denied");
  }
  CHECK(progress_of(stats(2, false,
                          R"({"at":"2026-12-05T02:30:09Z","error":"the workers did )"
                          R"(not reach a safe point\nwithin 2s"})"))
            .line == "upgrade failed: the workers did not reach a safe point");

  // A /stats without what the wait reads.
  CHECK(reply_error_of([] { progress_of(R"({"version":"0.1.0"})"); }) == "upgrades is missing");
  CHECK(reply_error_of([] { progress_of(R"({"upgrades":2})"); }) == "upgrade is missing");
  CHECK(reply_error_of([] { progress_of(stats(2, false, R"({"at":"yesterday","error":"x"})")); }) ==
        "upgrade.last_failure.at is not an RFC 3339 time: yesterday");
  CHECK(reply_error_of([] {
          progress_of(stats(2, false, R"({"at":"2026-12-05T02:30:09Z","error":null})"));
        }) == "upgrade.last_failure.error is null, expected a string");
}

TEST_CASE("ctl upgrade: the wait ends when the new image answers") {
  // The stats port refuses for a moment, the old image is under way, then
  // the new one counts the upgrade.
  ScriptedDaemon daemon;
  daemon.answers = {unanswered(kRefused), answered(stats(2, true, "null")),
                    answered(stats(3, false, "null"))};
  const UpgradeEnd end = daemon.follow();
  CHECK(end.exit_code == 0);
  CHECK(end.text == kUpgraded);
  CHECK(daemon.polls == 3);
  CHECK(daemon.elapsed() == 300ms);  // a poll every 100 ms, the first after 100 ms

  // An earlier failure in /stats does not end it.
  daemon = ScriptedDaemon{};
  daemon.answers = {answered(stats(2, false, failure_at("2026-12-05T01:00:00Z"))),
                    answered(stats(2, false, failure_at("2026-12-05T01:00:00Z"))),
                    answered(stats(3, false, "null"))};
  CHECK(daemon.follow().text == kUpgraded);
  CHECK(daemon.polls == 3);
}

TEST_CASE("ctl upgrade: the wait ends at this upgrade's failure") {
  ScriptedDaemon daemon;
  daemon.answers = {answered(stats(2, true, "null")),
                    answered(stats(2, false, failure_at("2026-12-05T02:30:09Z")))};
  const UpgradeEnd end = daemon.follow();
  CHECK(end.exit_code == 1);
  CHECK(end.text == "upgrade failed: execve /usr/sbin/fulcrum: Permission denied");
  CHECK(daemon.polls == 2);
}

TEST_CASE("ctl upgrade: the wait gives up after 30 s") {
  // The daemon gone: the last poll's reason follows.
  ScriptedDaemon daemon;
  daemon.answers = {answered(stats(2, true, "null")), unanswered(kRefused)};
  UpgradeEnd end = daemon.follow();
  CHECK(end.exit_code == 1);
  CHECK(end.text ==
        "upgrade not confirmed within 30s\n"
        "last poll: cannot reach http://127.0.0.1:9100: Connection refused");
  CHECK(daemon.polls == 300);
  CHECK(daemon.elapsed() == 30s);

  // Still under way at the end.
  daemon = ScriptedDaemon{};
  daemon.answers = {answered(stats(2, true, "null"))};
  end = daemon.follow();
  CHECK(end.exit_code == 1);
  CHECK(end.text == "upgrade not confirmed within 30s");
  CHECK(daemon.polls == 300);

  // Error statuses are tried again too.
  daemon = ScriptedDaemon{};
  daemon.answers = {unanswered("the daemon answered 503 Service Unavailable: starting"),
                    answered(stats(3, false, "null"))};
  CHECK(daemon.follow().exit_code == 0);
  CHECK(daemon.polls == 2);
}

TEST_CASE("ctl upgrade: a reply that is not /stats ends the wait") {
  ScriptedDaemon daemon;
  daemon.answers = {answered("<html>")};
  UpgradeEnd end = daemon.follow();
  CHECK(end.exit_code == 1);
  CHECK(end.text ==
        "the daemon's reply is not valid JSON (line 1, column 1: expected a value, found '<')");
  CHECK(daemon.polls == 1);

  daemon = ScriptedDaemon{};
  daemon.answers = {answered(R"({"version":"0.1.0","uptime_seconds":3})")};
  end = daemon.follow();
  CHECK(end.exit_code == 1);
  CHECK(end.text == "unexpected reply from the daemon: upgrades is missing");
}
