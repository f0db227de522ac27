#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <string>

#include "fulcrum/admin.hpp"

using namespace fulcrum;

namespace {

std::string error_of(std::string_view body) {
  std::string error;
  CHECK_FALSE(parse_admin_change(body, error));
  return error;
}

}  // namespace

TEST_CASE("admin body: state and/or weight") {
  std::string error;
  auto change = parse_admin_change(R"({"state": "drain"})", error);
  REQUIRE(change);
  CHECK(change->state == AdminState::drain);
  CHECK_FALSE(change->weight);
  change = parse_admin_change(R"( { "weight" : 0 } )", error);
  REQUIRE(change);
  CHECK(change->weight == 0u);
  change = parse_admin_change(R"({"state":"maint","weight":1000})", error);
  REQUIRE(change);
  CHECK(change->state == AdminState::maint);
  CHECK(change->weight == 1000u);
  change = parse_admin_change(R"({"state":"ready"})", error);
  REQUIRE(change);
  CHECK(change->state == AdminState::ready);
}

TEST_CASE("admin body: every rejection has its reason") {
  CHECK(error_of("") == "expected a JSON object");
  CHECK(error_of("[]") == "expected a JSON object");
  CHECK(error_of("{}") == "nothing to change: give \"state\" and/or \"weight\"");
  CHECK(error_of(R"({"state":"up"})") == "state must be \"ready\", \"drain\" or \"maint\"");
  CHECK(error_of(R"({"state":3})") == "state must be \"ready\", \"drain\" or \"maint\"");
  CHECK(error_of(R"({"weight":1001})") == "weight must be an integer from 0 to 1000");
  CHECK(error_of(R"({"weight":-1})") == "weight must be an integer from 0 to 1000");
  CHECK(error_of(R"({"weight":2.5})") == "weight must be an integer from 0 to 1000");
  CHECK(error_of(R"({"weight":"3"})") == "weight must be an integer from 0 to 1000");
  CHECK(error_of(R"({"weight":99999999999})") == "weight must be an integer from 0 to 1000");
  CHECK(error_of(R"({"name":"x"})") == "unknown key \"name\" (expected state, weight)");
  CHECK(error_of(R"({"weight":1,"weight":2})") == "duplicate key \"weight\"");
  CHECK(error_of(R"({"state":"drain" "weight":2})") == "expected , or } in the object");
  CHECK(error_of(R"({"state":"drain"} x)") == "unexpected text after the object");
  CHECK(error_of(R"({"state":"drain")") == "expected , or } in the object");
  CHECK(error_of(R"({state:"drain"})") == "expected a \"key\": value pair");
}

TEST_CASE("bearer token comparison") {
  CHECK(bearer_matches("Bearer s3cret", "s3cret"));
  CHECK(bearer_matches("bearer s3cret", "s3cret"));
  CHECK_FALSE(bearer_matches("Bearer s3cre", "s3cret"));
  CHECK_FALSE(bearer_matches("Bearer s3cret2", "s3cret"));
  CHECK_FALSE(bearer_matches("Bearer S3cret", "s3cret"));
  CHECK_FALSE(bearer_matches("Basic s3cret", "s3cret"));
  CHECK_FALSE(bearer_matches("Bearer", "s3cret"));
  CHECK_FALSE(bearer_matches("", "s3cret"));
}

TEST_CASE("the token file's surrounding whitespace is ignored") {
  char path[] = "/tmp/fulcrum-token-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string content = "\n  s3cret \t\n";
  REQUIRE(write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
  close(fd);
  std::string error;
  CHECK(read_admin_token(path, error) == std::optional<std::string>("s3cret"));
  FILE* f = std::fopen(path, "w");
  std::fputs(" \n", f);
  std::fclose(f);
  CHECK_FALSE(read_admin_token(path, error));
  CHECK(error == std::string("admin_token_file ") + path + " is empty");
  unlink(path);
  CHECK_FALSE(read_admin_token(path, error));
  CHECK(error ==
        std::string("cannot read admin_token_file ") + path + ": No such file or directory");
}
