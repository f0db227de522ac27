// The stats endpoint's access control: the admin API's body and bearer token,
// the token file (daemon and fulcrumctl), the Host check, the loopback test
// behind the start-up warning, the budget of authentication failure lines.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "fulcrum/address.hpp"
#include "fulcrum/admin.hpp"
#include "fulcrum/stats.hpp"
#include "fulcrum/token_file.hpp"

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

namespace {

// A directory of token files, removed with them at the end of the test.
class TokenDir {
 public:
  TokenDir() {
    char path[] = "/tmp/fulcrum-token-XXXXXX";
    REQUIRE(mkdtemp(path) != nullptr);
    path_ = path;
  }
  ~TokenDir() {
    for (const std::string& file : files_) unlink(file.c_str());
    rmdir(path_.c_str());
  }
  TokenDir(const TokenDir&) = delete;
  TokenDir& operator=(const TokenDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes `content` to a new file NAME with exactly `mode` (umask aside).
  std::string write(const std::string& name, const std::string& content, mode_t mode = 0600) {
    std::string file = path_ + "/" + name;
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    REQUIRE(fd >= 0);
    files_.push_back(file);
    CHECK(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    CHECK(::fchmod(fd, mode) == 0);
    ::close(fd);
    return file;
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

std::string refusal(const std::string& path) {
  const TokenFile file = read_token_file("token file", path);
  CHECK_FALSE(file.token);
  return file.error;
}

}  // namespace

TEST_CASE("token file: the token is the content without surrounding whitespace") {
  CHECK(trim_whitespace("  tok \r\n") == "tok");
  CHECK(trim_whitespace("\t\v\fa b\n") == "a b");
  CHECK(trim_whitespace(" \n ").empty());
  TokenDir dir;
  CHECK(read_token_file("token file", dir.write("good", "\n  s3cret \t\n\n")).token == "s3cret");
  CHECK(read_token_file("token file", dir.write("inner space", "a b")).token == "a b");
}

TEST_CASE("token file: at most 4 KiB, whitespace included") {
  TokenDir dir;
  const std::string largest(kMaxTokenFileBytes, 't');
  CHECK(read_token_file("token file", dir.write("largest", largest)).token == largest);
  CHECK(read_token_file("token file", dir.write("padded", "tok" + std::string(4093, '\n'))).token ==
        "tok");
  const std::string over = dir.write("over", largest + "t");
  CHECK(refusal(over) == "token file " + over + " is larger than 4 KiB");
  const std::string padded_over = dir.write("padded over", "tok" + std::string(4094, ' '));
  CHECK(refusal(padded_over) == "token file " + padded_over + " is larger than 4 KiB");
}

TEST_CASE("token file: every refusal names the file") {
  TokenDir dir;
  const std::string empty = dir.write("empty", " \n\t");
  CHECK(refusal(empty) == "token file " + empty + " is empty");
  const std::string nothing = dir.write("nothing", "");
  CHECK(refusal(nothing) == "token file " + nothing + " is empty");
  const std::string missing = dir.path() + "/missing";
  CHECK(refusal(missing) == "cannot read token file " + missing + ": No such file or directory");
  CHECK(refusal(dir.path()) == "cannot read token file " + dir.path() + ": Is a directory");
  for (const std::string& token : {std::string("abc\ndef"), std::string("abc\tdef"),
                                   std::string("abc\x7F"), std::string("a\0b", 3)}) {
    const std::string file = dir.write("control", token);
    CHECK(refusal(file) ==
          "token file " + file + ": the token holds control characters (a line break inside it?)");
  }
}

TEST_CASE("token file: readable by group or others") {
  struct Case {
    mode_t mode;
    const char* text;
    bool loose;
  };
  TokenDir dir;
  for (const Case& c :
       {Case{0600, "0600", false}, Case{0400, "0400", false}, Case{0620, "0620", false},
        Case{0640, "0640", true}, Case{0604, "0604", true}, Case{0644, "0644", true}}) {
    const TokenFile file = read_token_file("token file", dir.write("mode", "tok", c.mode));
    CAPTURE(c.text);
    CHECK(file.token == "tok");
    CHECK(file.readable_by_others() == c.loose);
    CHECK(file.mode_text() == c.text);
  }
}

namespace {

SocketAddress address(std::string_view text) {
  const AddressParse parsed = parse_address(text);
  REQUIRE(parsed.error.empty());
  return parsed.addresses.front();
}

}  // namespace

TEST_CASE("Host check: the address the client reached, or localhost") {
  const SocketAddress v4 = address("127.0.0.1:9100");
  for (const char* host : {"127.0.0.1:9100", "localhost:9100", "LocalHost:9100", "localhost"}) {
    CAPTURE(host);
    CHECK(host_allowed(host, v4));
  }
  for (const char* host : {"evil.example:9100",
                           "evil.example",
                           "127.0.0.1:9101",
                           "127.0.0.2:9100",
                           "localhost:9101",
                           "127.0.0.1",
                           "",
                           "127.0.0.1:",
                           "localhost:",
                           ":9100",
                           "127.0.0.1:09100x",
                           "127.0.0.1:+9100",
                           "127.0.0.1:65536",
                           "127.0.0.1:0",
                           "127.1:9100",
                           "0177.0.0.1:9100",
                           "[127.0.0.1]:9100",
                           "localhost.:9100",
                           "localhost:9100:9100",
                           "127.0.0.1 :9100",
                           "[::1]:9100",
                           "evil.example.127.0.0.1.nip.io:9100"}) {
    CAPTURE(host);
    CHECK_FALSE(host_allowed(host, v4));
  }
  // Without a port the client means 80.
  const SocketAddress port80 = address("127.0.0.1:80");
  CHECK(host_allowed("127.0.0.1", port80));
  CHECK(host_allowed("127.0.0.1:80", port80));
  CHECK_FALSE(host_allowed("127.0.0.1:8080", port80));
  // A wildcard listener checks against the address each client reached.
  CHECK(host_allowed("198.18.2.3:9100", address("198.18.2.3:9100")));
}

TEST_CASE("Host check: IPv6 in brackets, any spelling of the address") {
  const SocketAddress v6 = address("[::1]:9100");
  for (const char* host :
       {"[::1]:9100", "[0:0:0:0:0:0:0:1]:9100", "[0::1]:9100", "localhost:9100"}) {
    CAPTURE(host);
    CHECK(host_allowed(host, v6));
  }
  for (const char* host : {"::1:9100", "[::2]:9100", "[::1]:9101", "[::1]", "[::1]9100", "[::1",
                           "127.0.0.1:9100", "[::ffff:127.0.0.1]:9100", "[fe80::1%25lo]:9100"}) {
    CAPTURE(host);
    CHECK_FALSE(host_allowed(host, v6));
  }
  const SocketAddress doc = address("[2001:db8::5]:443");
  CHECK(host_allowed("[2001:DB8:0:0::5]:443", doc));
  CHECK_FALSE(host_allowed("[2001:db8::6]:443", doc));
}

TEST_CASE("loopback_only: only this host reaches the address") {
  for (const char* text : {"127.0.0.1:9100", "127.255.0.9:1", "[::1]:9100"}) {
    CAPTURE(text);
    CHECK(loopback_only(address(text)));
  }
  for (const char* text : {"0.0.0.0:9100", "192.0.2.1:9100", "128.0.0.1:9100", "[::]:9100",
                           "[2001:db8::1]:9100", "[::ffff:192.0.2.1]:9100"}) {
    CAPTURE(text);
    CHECK_FALSE(loopback_only(address(text)));
  }
}
