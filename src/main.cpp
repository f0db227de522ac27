// fulcrum: command line and start-up (SPEC.md "Command line").
#include <event2/thread.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <string_view>

#include "daemon.hpp"
#include "fulcrum/config.hpp"
#include "fulcrum/fd_store.hpp"
#include "fulcrum/host_resolver.hpp"
#include "fulcrum/log.hpp"
#include "fulcrum/log_writer.hpp"
#include "fulcrum/nft_ruleset.hpp"
#include "fulcrum/nftables.hpp"
#include "fulcrum/preflight.hpp"
#include "fulcrum/signals.hpp"
#include "fulcrum/upgrade.hpp"
#include "fulcrum/version.hpp"

namespace {

constexpr const char* kDefaultConfig = "/etc/fulcrum/fulcrum.yaml";

constexpr const char* kUsage =
    "usage: fulcrum [-c FILE] [--check [--state-version]] [--flush-kernel] [--version] [--help]\n"
    "\n"
    "Layer-4 load balancer.\n"
    "\n"
    "  -c, --config FILE  configuration file (default /etc/fulcrum/fulcrum.yaml)\n"
    "      --check        validate the configuration as start-up would, binding no\n"
    "                     socket, and exit: 0 ok, 1 invalid\n"
    "      --state-version with --check: also print which upgrade state this\n"
    "                     binary reads (what an upgrade asks the new binary)\n"
    "      --flush-kernel delete fulcrum's nftables tables (what a crashed fulcrum\n"
    "                     forwarding in the kernel left) and exit: 0 done, 3 failed\n"
    "      --version      print the version and exit\n"
    "  -h, --help         print this help and exit\n"
    "\n"
    "Exit codes: 0 clean stop, 1 invalid configuration, 2 bad usage, 3 start-up failure.\n"
    "Signals: SIGHUP reloads the configuration; SIGUSR2 upgrades to the binary at this\n"
    "one's path, keeping every connection; SIGTERM/SIGINT stop gracefully (a second\n"
    "one closes the sessions left); SIGQUIT too, but leaves the listening sockets in\n"
    "systemd's fd store for the next process (the unit's RestartKillSignal).\n";

struct Options {
  std::string config = kDefaultConfig;
  bool check = false;
  bool state_version = false;
  bool flush_kernel = false;
};

// The one mistake, and where the usage is: the whole help would bury it.
int usage_error(const std::string& message) {
  std::fprintf(stderr, "fulcrum: %s\nTry 'fulcrum --help' for the usage.\n", message.c_str());
  return fulcrum::kExitUsage;
}

// --check after the loader: what start-up checks before binding
// (preflight), each error as `FILE:LINE:COL: message`, each warning as
// `warning: FILE:LINE:COL: message` (as fulcrumctl shows a reload's).
int check(const fulcrum::Config& config, bool state_version) {
  const fulcrum::Preflight checked = fulcrum::preflight(config, nullptr);
  for (const auto& warning : checked.warnings)
    std::fprintf(stderr, "warning: %s\n", warning.to_string().c_str());
  for (const auto& error : checked.errors) std::fprintf(stderr, "%s\n", error.to_string().c_str());
  if (!checked.errors.empty()) return fulcrum::kExitBadConfig;
  std::puts("configuration ok");
  if (state_version) std::puts(fulcrum::state_version_line().c_str());
  return fulcrum::kExitOk;
}

// --flush-kernel: no configuration needed; a table that is not there is
// no error.
int flush_kernel() {
  try {
    fulcrum::Nftables nft;
    const std::string error = nft.run(fulcrum::nft_delete_tables({"ip", "ip6", "netdev"}));
    if (error.empty()) return fulcrum::kExitOk;
    std::fprintf(stderr, "fulcrum: cannot delete the nftables tables: %s\n", error.c_str());
  } catch (const std::bad_alloc&) {
    std::fputs("fulcrum: cannot make a libnftables context\n", stderr);
  }
  return fulcrum::kExitStartup;
}

}  // namespace

int main(int argc, char** argv) {
  fulcrum::hold_reload_signal();
  // Before anything can replace it: the path an upgrade execs.
  const std::string executable = fulcrum::own_executable();
  // Set only in the image a binary upgrade exec'd: the old one's state.
  fulcrum::InheritedState inherited = fulcrum::take_inherited_state();
  // Under systemd, the listeners its fd store kept from the last process.
  // While this is the only thread: it changes the environment.
  fulcrum::StoredFds stored = fulcrum::take_stored_fds();
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-c" || arg == "--config") {
      if (i + 1 >= argc) return usage_error(std::string(arg) + " needs a FILE");
      options.config = argv[++i];
    } else if (arg.starts_with("--config=")) {
      options.config = std::string(arg.substr(std::strlen("--config=")));
    } else if (arg == "--check") {
      options.check = true;
    } else if (arg == "--state-version") {
      options.state_version = true;
    } else if (arg == "--flush-kernel") {
      options.flush_kernel = true;
    } else if (arg == "--version") {
      std::printf("fulcrum %s\n", fulcrum::version());
      return fulcrum::kExitOk;
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return fulcrum::kExitOk;
    } else {
      return usage_error("unknown argument '" + std::string(arg) + "'");
    }
  }

  if (options.state_version && !options.check) return usage_error("--state-version needs --check");
  if (options.flush_kernel) return flush_kernel();
  fulcrum::Log::init();
  if (!inherited.error.empty()) {
    fulcrum::log_error("cannot take the upgrade over", {{"error", inherited.error}});
    return fulcrum::kExitStartup;
  }
  // Events are activated across threads (wake-ups, worker exit): libevent
  // must lock its bases. Before any other use of libevent (the load below
  // resolves names with it).
  if (evthread_use_pthreads() != 0) {
    std::fputs("fulcrum: libevent has no pthreads support\n", stderr);
    return fulcrum::kExitStartup;
  }
  // Host names resolved by evdns, never by a blocking getaddrinfo.
  fulcrum::ConfigLoad load = fulcrum::load_config_file_resolved(options.config);
  if (!load.errors.empty()) {
    for (const auto& error : load.errors) std::fprintf(stderr, "%s\n", error.to_string().c_str());
    return fulcrum::kExitBadConfig;
  }
  if (options.check) return check(*load.config, options.state_version);
  // From here on workers log: no thread waits for stderr's reader.
  const fulcrum::StderrLogWriter log_writer;
  return fulcrum::run_daemon(
      std::move(*load.config),
      fulcrum::DaemonStart{std::vector<std::string>(argv, argv + argc), executable,
                           std::move(inherited), std::move(stored)});
}
