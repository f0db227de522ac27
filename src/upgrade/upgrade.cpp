#include "fulcrum/upgrade.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "fulcrum/fd.hpp"
#include "fulcrum/privileges.hpp"
#include "fulcrum/signals.hpp"
#include "fulcrum/socket.hpp"
#include "fulcrum/version.hpp"

namespace fulcrum {

namespace {

constexpr std::string_view kStateLinePrefix = "state version ";
// A check that says more than this is not a fulcrum's.
constexpr size_t kMaxCheckOutput = 64 * 1024;

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// The check's output lines without the state line, joined by "; ", for
// the error the operator reads.
std::string error_lines(const std::string& output) {
  std::string joined;
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    const std::string_view line(output.data() + start, end - start);
    if (!line.empty() && !line.starts_with(kStateLinePrefix) && line != "configuration ok")
      joined += (joined.empty() ? "" : "; ") + std::string(line);
    start = end + 1;
  }
  return joined;
}

// Runs the check and returns its wait status (-1: it could not run) and
// output, stdout and stderr together.
int run_check(const std::string& binary, const std::string& config,
              std::chrono::milliseconds timeout, std::string& output) {
  // The check runs with the capabilities the new image will have: those
  // this thread (capabilities are per thread) makes ambient.
  if (std::string error = keep_capabilities_across_exec(); !error.empty()) {
    output = std::move(error);
    return -1;
  }
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) {
    output = errno_text("pipe2");
    return -1;
  }
  Fd read_end(ends[0]);
  Fd write_end(ends[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDERR_FILENO);
  // The thread blocks every signal (thread_without_signals): the check
  // must not inherit that mask, nor the daemon's ignored SIGPIPE.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> texts{binary, "--check", "--state-version", "-c", config};
  std::vector<char*> argv;
  argv.reserve(texts.size() + 1);
  for (std::string& text : texts) argv.push_back(text.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int error =
      ::posix_spawn(&pid, binary.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  write_end.reset();
  if (error != 0) {
    output = "cannot run " + binary + ": " + std::strerror(error);
    return -1;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd readable{read_end.get(), POLLIN, 0};
    const int ready = ::poll(&readable, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::read(read_end.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // every copy of the write end is closed: it is done
    if (output.size() < kMaxCheckOutput) output.append(buffer, static_cast<size_t>(n));
  }
  if (timed_out) ::kill(pid, SIGKILL);  // our own child, by its PID
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    output = binary + " --check did not finish within " + std::to_string(timeout.count()) + " ms";
    return -1;
  }
  return status;
}

void set_close_on_exec(int fd, bool close) {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0) return;
  ::fcntl(fd, F_SETFD, close ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC));
}

// Every descriptor but the standard three and `keep` is closed by the exec,
// including any a library opened without close-on-exec: the new image
// starts with exactly what the state names.
void close_the_rest_on_exec(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());  // thousands of sessions: no linear search per descriptor
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (const dirent* entry = ::readdir(dir)) {
    const int fd = std::atoi(entry->d_name);
    if (fd <= STDERR_FILENO || fd == ::dirfd(dir)) continue;
    if (!std::binary_search(keep.begin(), keep.end(), fd)) set_close_on_exec(fd, true);
  }
  ::closedir(dir);
}

}  // namespace

std::string state_version_line() {
  return std::string(kStateLinePrefix) + std::to_string(kUpgradeStateVersion) + " (fulcrum " +
         version() + ")";
}

BinaryVerdict judge_binary(int wait_status, const std::string& output) {
  if (wait_status < 0) return {output.empty() ? "the check did not run" : output, {}};
  if (WIFSIGNALED(wait_status))
    return {"the check was killed by signal " + std::to_string(WTERMSIG(wait_status)), {}};
  const std::string errors = error_lines(output);
  if (WEXITSTATUS(wait_status) != 0) {
    return {"the check exited with " + std::to_string(WEXITSTATUS(wait_status)) +
                (errors.empty() ? std::string() : ": " + errors),
            {}};
  }
  const size_t at = output.find(kStateLinePrefix);
  if (at == std::string::npos || (at != 0 && output[at - 1] != '\n'))
    return {"the binary does not say which upgrade state it reads (not an upgradable fulcrum)", {}};
  const size_t end = output.find('\n', at);
  const std::string line = output.substr(at, end == std::string::npos ? end : end - at);
  // "state version N (fulcrum VERSION)"
  char* rest = nullptr;
  const unsigned long read = std::strtoul(line.c_str() + kStateLinePrefix.size(), &rest, 10);
  std::string their_version;
  if (const size_t open = line.find("(fulcrum "); open != std::string::npos && line.ends_with(")"))
    their_version = line.substr(open + 9, line.size() - open - 10);
  if (read != kUpgradeStateVersion) {
    return {"the binary reads upgrade state version " + std::to_string(read) +
                ", this one writes " + std::to_string(kUpgradeStateVersion),
            their_version};
  }
  return {{}, their_version};
}

BinaryCheck::BinaryCheck(event_base* base, std::function<void(BinaryVerdict)> done)
    : done_(std::move(done)), done_event_(event_new(base, -1, 0, on_done_cb, this)) {}

BinaryCheck::~BinaryCheck() {
  if (thread_.joinable()) thread_.join();
}

void BinaryCheck::start(const std::string& binary, const std::string& config,
                        std::chrono::milliseconds timeout) {
  thread_ = thread_without_signals([this, binary, config, timeout] {
    std::string output;
    const int status = run_check(binary, config, timeout, output);
    verdict_ = judge_binary(status, output);
    event_active(done_event_.get(), EV_READ, 0);
  });
}

void BinaryCheck::on_done_cb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<BinaryCheck*>(arg);
  self->thread_.join();
  self->done_(std::move(self->verdict_));
}

std::string own_executable() {
  char path[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (n < 0) return {};
  std::string target(path, static_cast<size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (target.ends_with(kDeleted)) target.resize(target.size() - kDeleted.size());
  return target;
}

std::string exec_with_state(const std::string& binary, const std::vector<std::string>& arguments,
                            const UpgradeState& state) {
  const std::string blob = encode_upgrade_state(state);
  // No MFD_CLOEXEC: the new image reads it.
  Fd memfd(::memfd_create("fulcrum-upgrade-state", 0));
  if (!memfd) return errno_text("memfd_create");
  for (size_t written = 0; written < blob.size();) {
    const ssize_t n = ::write(memfd.get(), blob.data() + written, blob.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_text("writing the state");
    written += static_cast<size_t>(n);
  }
  if (::lseek(memfd.get(), 0, SEEK_SET) != 0) return errno_text("lseek");
  if (std::string error = keep_capabilities_across_exec(); !error.empty()) return error;

  std::vector<int> carried = carried_descriptors(state);
  carried.push_back(memfd.get());
  close_the_rest_on_exec(carried);
  for (int fd : carried) set_close_on_exec(fd, false);
  ::setenv(kUpgradeStateVariable, std::to_string(memfd.get()).c_str(), 1);
  // Signals that come meanwhile stay pending for the new image, which
  // handles them once its loop runs, instead of their default action
  // killing it while it starts.
  sigset_t held;
  sigemptyset(&held);
  for (int signal : {SIGHUP, SIGUSR2, SIGTERM, SIGINT, SIGQUIT}) sigaddset(&held, signal);
  sigset_t previous;
  pthread_sigmask(SIG_BLOCK, &held, &previous);

  std::vector<std::string> texts = arguments;
  std::vector<char*> argv;
  argv.reserve(texts.size() + 1);
  for (std::string& text : texts) argv.push_back(text.data());
  argv.push_back(nullptr);
  ::execve(binary.c_str(), argv.data(), environ);
  std::string error = errno_text(("execve " + binary).c_str());

  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  ::unsetenv(kUpgradeStateVariable);
  for (int fd : carried) set_close_on_exec(fd, true);
  return error;
}

InheritedState take_inherited_state() {
  const char* variable = std::getenv(kUpgradeStateVariable);
  if (variable == nullptr) return {};
  char* end = nullptr;
  const long number = std::strtol(variable, &end, 10);
  ::unsetenv(kUpgradeStateVariable);
  if (*end != '\0' || number < 0 || number > INT_MAX)
    return {std::nullopt, std::string(kUpgradeStateVariable) + " is not a descriptor"};
  const Fd memfd(static_cast<int>(number));
  std::string blob;
  char buffer[65536];
  while (true) {
    const ssize_t n = ::read(memfd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return {std::nullopt, errno_text("reading the upgrade state")};
    if (n == 0) break;
    blob.append(buffer, static_cast<size_t>(n));
  }
  UpgradeStateRead read = decode_upgrade_state(blob);
  if (!read.state) return {std::nullopt, "the upgrade state is unreadable: " + read.error};
  // Everything it names is ours now: closed on the next exec unless
  // carried again.
  for (int fd : carried_descriptors(*read.state)) set_close_on_exec(fd, true);
  return {std::move(read.state), {}};
}

}  // namespace fulcrum
