// The open-file limit: raised to the hard limit, and when the kernel refuses,
// the limit really in force is what the session budget is computed from.
#include <doctest/doctest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include "fulcrum/admission.hpp"
#include "fulcrum/control_plane.hpp"
#include "fulcrum/open_files.hpp"
#include "fulcrum/stats.hpp"

using namespace fulcrum;

namespace {

// Makes every later attempt of this process to set a resource limit fail
// with EPERM, as a hard limit above fs.nr_open does, without touching the
// machine's sysctl. Reading limits (prlimit64 with no new limit, which is
// how glibc's getrlimit reads them) still works.
bool refuse_setrlimit() {
  constexpr unsigned kNewLimitLow = offsetof(seccomp_data, args) + 2 * sizeof(uint64_t);
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_setrlimit, 6, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prlimit64, 0, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNewLimitLow),  // x86_64: little endian
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNewLimitLow + 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// Runs `body` in a child process (seccomp filters cannot be removed) and
// returns its exit status.
template <typename Body>
int in_child(Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

// Lowers the soft limit to 256; false when the hard limit is too low for
// the test to mean anything.
bool lower_soft_limit() {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_max < 512) return false;
  limit.rlim_cur = 256;
  return ::setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

}  // namespace

TEST_CASE("raise_open_file_limit raises the soft limit to the hard one") {
  const int status = in_child([] {
    if (!lower_soft_limit()) return 2;
    const int64_t raised = raise_open_file_limit();
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    return raised == static_cast<int64_t>(limit.rlim_max) && limit.rlim_cur == limit.rlim_max ? 0
                                                                                              : 1;
  });
  CHECK(status == 0);
}

TEST_CASE("raise_open_file_limit returns the limit in force when raising it fails") {
  const int status = in_child([] {
    if (!lower_soft_limit()) return 2;
    if (!refuse_setrlimit()) return 3;
    return raise_open_file_limit() == 256 ? 0 : 1;
  });
  CHECK(status == 0);
}

TEST_CASE("the descriptors kept out of the session budget follow the configuration") {
  ConfigLoad load = load_config_text(
      "stats: {listen: 127.0.0.1:1}\n"
      "services:\n"
      "  - name: web\n"
      "    listen: [127.0.0.1:2, 127.0.0.1:3]\n"
      "    health_check: {interval: 1s}\n"
      "    servers: [{address: 127.0.0.1:10}, {address: 127.0.0.1:11}, {address: 127.0.0.1:12}]\n"
      "  - name: api\n"
      "    listen: 127.0.0.1:4\n"
      "    servers: [{address: 127.0.0.1:13}]\n",
      "test.yaml");
  REQUIRE(load.errors.empty());
  ControlPlane control(2);
  control.install(std::move(*load.config), std::chrono::steady_clock::now());
  const Snapshot& snapshot = *control.snapshot();
  // The stats port and 3 addresses x 2 workers.
  CHECK(listening_fds(snapshot.config, 2) == 1 + 6);
  // + one check in flight per checked server, the stats clients and a
  // margin of 8.
  CHECK(fds_outside_sessions(snapshot.config, 2) == 7 + 3 + kMaxStatsConnections + 8);

  // An agent asked beside the check: one more socket per server.
  Config with_agent = snapshot.config;
  with_agent.services[0].health_check.agent = AgentCheckConfig{9, Duration(1000), {}};
  CHECK(fds_outside_sessions(with_agent, 2) == 7 + 3 * 2 + kMaxStatsConnections + 8);
}
