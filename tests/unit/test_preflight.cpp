// preflight(): the checks start-up, reload and --check share, with the
// position of the key each message is about.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "fulcrum/nearest_name.hpp"
#include "fulcrum/preflight.hpp"
#include "fulcrum/token_file.hpp"

using namespace fulcrum;

namespace {

// A token file of its own, removed at the end.
class TempFile {
 public:
  TempFile(const std::string& content, mode_t mode) {
    char name[] = "/tmp/fulcrum-preflight-XXXXXX";
    const int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    path_ = name;
    CHECK(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    CHECK(::fchmod(fd, mode) == 0);
    ::close(fd);
  }
  ~TempFile() { std::remove(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Config load(const std::string& yaml) {
  ConfigLoad loaded = load_config_text(yaml, "test.yaml");
  REQUIRE(loaded.errors.empty());
  return std::move(*loaded.config);
}

std::string with_token_file(const std::string& path) {
  return "global:\n  workers: 1\nstats:\n  listen: 127.0.0.1:9100\n  admin_token_file: " + path +
         "\nservices:\n  - name: web\n    listen: 127.0.0.1:8080\n"
         "    servers: [{address: 127.0.0.1:9001}]\n";
}

std::string texts(const std::vector<ConfigError>& problems) {
  std::string out;
  for (const ConfigError& problem : problems) out += problem.to_string() + "\n";
  return out;
}

}  // namespace

TEST_CASE("preflight: the token file is read, its problems are errors at admin_token_file") {
  const TempFile good("\n s3cret \n", 0600);
  Preflight checked = preflight(load(with_token_file(good.path())), nullptr);
  CHECK(texts(checked.errors).empty());
  CHECK(texts(checked.warnings).empty());
  CHECK(checked.admin_token == std::optional<std::string>("s3cret"));

  const TempFile empty(" \n", 0600);
  checked = preflight(load(with_token_file(empty.path())), nullptr);
  CHECK(texts(checked.errors) == "test.yaml:5:3: admin_token_file " + empty.path() + " is empty\n");
  CHECK_FALSE(checked.admin_token);

  const TempFile over(std::string(kMaxTokenFileBytes + 1, 't'), 0600);
  checked = preflight(load(with_token_file(over.path())), nullptr);
  CHECK(texts(checked.errors) ==
        "test.yaml:5:3: admin_token_file " + over.path() + " is larger than 4 KiB\n");

  const std::string missing = "/tmp/fulcrum-preflight-no-such-file";
  checked = preflight(load(with_token_file(missing)), nullptr);
  CHECK(texts(checked.errors) ==
        "test.yaml:5:3: cannot read admin_token_file " + missing + ": No such file or directory\n");
}

TEST_CASE("preflight: a token file others may read is used, with a warning") {
  const TempFile loose("s3cret", 0640);
  const Preflight checked = preflight(load(with_token_file(loose.path())), nullptr);
  CHECK(texts(checked.errors).empty());
  CHECK(texts(checked.warnings) ==
        "test.yaml:5:3: admin_token_file " + loose.path() +
            " is readable by group or others (mode 0640): chmod 600 it\n");
  CHECK(checked.admin_token == std::optional<std::string>("s3cret"));
}

TEST_CASE("preflight: on reload a change of user is a warning, the process keeps its user") {
  const std::string service =
      "services:\n  - name: web\n    listen: 127.0.0.1:8080\n"
      "    servers: [{address: 127.0.0.1:9001}]\n";
  const Config running = load(service);
  const Config changed = load("global:\n  user: root\n" + service);
  const Preflight checked = preflight(changed, &running);
  CHECK(texts(checked.errors).empty());
  CHECK(texts(checked.warnings) ==
        "test.yaml:2:3: global.user and global.group changes need a restart; the process keeps "
        "its user\n");
  CHECK(texts(preflight(changed, &changed).warnings).empty());
}

TEST_CASE("nearest name: a likely typo, never a far one") {
  const std::vector<std::string> servers{"alpha", "beta", "gamma"};
  CHECK(nearest_name("alpah", servers) == std::optional<std::string>("alpha"));
  CHECK(nearest_name("bta", servers) == std::optional<std::string>("beta"));
  CHECK(nearest_name("gamma2", servers) == std::optional<std::string>("gamma"));
  CHECK_FALSE(nearest_name("epsilon", servers));
  CHECK_FALSE(nearest_name("alpha", servers));
  CHECK_FALSE(nearest_name("db", std::vector<std::string>{"web"}));
  CHECK(nearest_name("wbe", std::vector<std::string>{"api", "web"}) ==
        std::optional<std::string>("web"));
  CHECK(edit_distance("alpah", "alpha") == 1);
  CHECK(edit_distance("", "abc") == 3);
  CHECK(edit_distance("kitten", "sitting") == 3);
}
