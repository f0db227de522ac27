// The Reloader: a file read off the main loop, every error keeping the
// running configuration, new addresses bound before anything changes, and
// requests during a reload answered by one more.
#include <doctest/doctest.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "fulcrum/reload.hpp"
#include "fulcrum/scheduler_plane.hpp"
#include "fulcrum/socket.hpp"

using namespace fulcrum;

namespace {

// A free loopback port (bound, read, closed: nobody else asks for it here).
uint16_t free_port() {
  Fd fd(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  socklen_t length = sizeof address;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

std::string service_yaml(const std::string& name, uint16_t port) {
  return "  - name: " + name + "\n    listen: 127.0.0.1:" + std::to_string(port) +
         "\n    servers: [{address: 127.0.0.1:9}]\n";
}

struct RecordingTarget final : ReloadTarget {
  int started = 0;
  int finished = 0;
  std::vector<std::vector<std::string>> served;  // addresses bound per serve()

  void reload_started() override { ++started; }
  void reload_finished(const ReloadStatus&) override { ++finished; }
  void serve(const std::shared_ptr<const Snapshot>&, std::vector<BoundAddress> added,
             std::optional<std::string>) override {
    std::vector<std::string> names;
    for (const BoundAddress& address : added) {
      CHECK(address.per_worker.size() == 2);
      names.push_back(address.address.to_string());
    }
    served.push_back(names);
  }
};

struct Fixture {
  std::string path;
  EventBasePtr base;
  SchedulerPlane plane;
  ControlPlane control{2};
  RecordingTarget target;
  std::unique_ptr<Reloader> reloader;
  uint16_t port = free_port();

  Fixture() {
    static const bool threads = evthread_use_pthreads() == 0;
    REQUIRE(threads);
    base.reset(event_base_new());
    char name[] = "/tmp/fulcrum-reload-test-XXXXXX";
    const int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = name;
    write("services:\n" + service_yaml("web", port));
    ConfigLoad load = load_config_file(path);
    REQUIRE(load.errors.empty());
    control.add_data_plane(plane);
    control.install(std::move(*load.config), std::chrono::steady_clock::now());
    reloader = std::make_unique<Reloader>(base.get(), path, 2, control, target);
  }
  ~Fixture() {
    reloader.reset();
    std::remove(path.c_str());
  }
  void write(const std::string& text) const { std::ofstream(path) << text; }

  // Asks for a reload and runs the loop until it is answered.
  ReloadStatus reload() {
    std::optional<ReloadStatus> outcome;
    reloader->request("test", [&](const ReloadStatus& status) { outcome = status; });
    while (!outcome) event_base_loop(base.get(), EVLOOP_ONCE);
    return *outcome;
  }
};

}  // namespace

TEST_CASE("reload: a valid file is installed and its new addresses are bound for every worker") {
  Fixture f;
  const uint16_t added = free_port();
  f.write("services:\n" + service_yaml("web", f.port) + service_yaml("api", added));
  const ReloadStatus status = f.reload();
  CHECK(status.ok);
  CHECK(status.succeeded == 1);
  CHECK(f.control.snapshot()->generation == 2);
  CHECK(f.control.snapshot()->services.size() == 2);
  REQUIRE(f.target.served.size() == 1);
  CHECK(f.target.served[0] == std::vector<std::string>{"127.0.0.1:" + std::to_string(added)});
  CHECK(f.target.started == 1);
  CHECK(f.target.finished == 1);
}

TEST_CASE("reload: an invalid file keeps the running configuration and says where it is wrong") {
  Fixture f;
  f.write("services:\n" + service_yaml("web", f.port) + "    bogus: 1\n");
  const ReloadStatus status = f.reload();
  CHECK_FALSE(status.ok);
  CHECK(status.failed == 1);
  CHECK(status.error == f.path + ":5:5: unknown key \"bogus\" in service");
  CHECK(f.control.snapshot()->generation == 1);
  CHECK(f.target.served.empty());
  CHECK(f.target.finished == 1);
}

TEST_CASE("reload: an address another socket listens on is refused, nothing changes") {
  Fixture f;
  const uint16_t taken = free_port();
  Fd other;
  REQUIRE(open_listener(parse_address("127.0.0.1:" + std::to_string(taken)).addresses.at(0), 8,
                        PortSharing::workers, other) == 0);
  f.write("services:\n" + service_yaml("web", f.port) + service_yaml("api", taken));
  const ReloadStatus status = f.reload();
  CHECK_FALSE(status.ok);
  CHECK(status.error ==
        "cannot listen on 127.0.0.1:" + std::to_string(taken) + ": Address already in use");
  CHECK(f.control.snapshot()->generation == 1);
}

TEST_CASE("reload: requests during a reload share one more; each asker gets an answer") {
  Fixture f;
  std::vector<bool> answers;
  for (int i = 0; i < 3; ++i) {
    f.reloader->request("test", [&](const ReloadStatus& status) { answers.push_back(status.ok); });
  }
  while (answers.size() < 3) event_base_loop(f.base.get(), EVLOOP_ONCE);
  CHECK(answers == std::vector<bool>{true, true, true});
  CHECK(f.target.started == 2);
  CHECK(f.control.snapshot()->generation == 3);
}

TEST_CASE("reload: once stopping, requests are refused and a reload in flight is not applied") {
  Fixture f;
  std::optional<ReloadStatus> in_flight;
  f.reloader->request("test", [&](const ReloadStatus& status) { in_flight = status; });
  f.reloader->stop();
  std::optional<ReloadStatus> late;
  f.reloader->request("late", [&](const ReloadStatus& status) { late = status; });
  REQUIRE(late);
  CHECK_FALSE(late->ok);
  CHECK(late->error == "stopping");
  while (!in_flight) event_base_loop(f.base.get(), EVLOOP_ONCE);
  CHECK_FALSE(in_flight->ok);
  CHECK(f.control.snapshot()->generation == 1);
}

TEST_CASE("reload: every error of the file is in the status, not only the first") {
  Fixture f;
  f.write("global:\n  bogus: 1\nservices:\n" + service_yaml("web", f.port) + "    retries: 99\n");
  const ReloadStatus status = f.reload();
  CHECK_FALSE(status.ok);
  CHECK(status.errors ==
        std::vector<std::string>{f.path + ":2:3: unknown key \"bogus\" in global",
                                 f.path + ":7:14: expected an integer from 0 to 10, got \"99\""});
  CHECK(status.error == status.errors.front());
  CHECK(status.warnings.empty());
}

TEST_CASE("reload: what needs a restart is a warning in the status; the rest applies") {
  Fixture f;
  const uint16_t stats = free_port();
  f.write("global:\n  workers: 4\nstats:\n  listen: 127.0.0.1:" + std::to_string(stats) +
          "\nservices:\n" + service_yaml("web", f.port));
  const ReloadStatus status = f.reload();
  CHECK(status.ok);
  CHECK(status.errors.empty());
  CHECK(status.warnings ==
        std::vector<std::string>{
            f.path + ":2:3: global.workers changes need a restart; 2 workers keep running, not 4",
            f.path + ":4:3: stats.listen changes need a restart; the stats endpoint stays off"});
  CHECK(f.control.snapshot()->generation == 2);
  // The next reload without them has no warning left.
  f.write("services:\n" + service_yaml("web", f.port));
  CHECK(f.reload().warnings.empty());
}
