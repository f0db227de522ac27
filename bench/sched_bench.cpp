// Scheduler micro-benchmark: the cost of one Scheduler::pick() for every
// algorithm at 10, 100 and 1000 servers, rr and wrr with two threads sharing
// one scheduler, the time to build a Maglev table, and wrr's rebuild and
// pick costs at 1000 servers for several weight sets. Prints a table and how
// each figure compares with the targets of docs/performance.md. A missed
// target is reported, never an error: the exit status is 0 unless the
// arguments are wrong.
//
//   sched_bench [--reps N] [--batch N] [--builds N] [--only NAME]
//
// --only runs one part (rr, wrr, lc, wlc, maglev, p2c, build or rebuild),
// e.g. to profile it with perf.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fulcrum/scheduler.hpp"
#include "summary.hpp"

using namespace fulcrum;

namespace {

using Clock = std::chrono::steady_clock;

// Written once per timed batch with the sum of the picked indices, so that no
// pick can be dropped as dead code.
volatile uint64_t sink = 0;

struct Settings {
  int reps = 15;       // timed batches per figure
  int batch = 100000;  // picks per batch
  int builds = 7;      // Maglev table builds, and wrr rebuilds, per figure
  std::string only;    // empty: everything
};

bool selected(const Settings& settings, std::string_view part) {
  return settings.only.empty() || settings.only == part;
}

// The 1, 5 and 15 minute load averages: other work on the machine skews the
// figures, the two-thread ones most.
std::string load_average() {
  std::ifstream file("/proc/loadavg");
  std::string one, five, fifteen;
  if (!(file >> one >> five >> fifteen)) return "unknown";
  return one + " " + five + " " + fifteen;
}

constexpr size_t kClients = 4096;  // distinct client addresses, cycled
constexpr uint32_t kTableSize = 65537;
const uint32_t kServerCounts[] = {10, 100, 1000};

using bench::summarise;
using bench::Summary;

// A small deterministic generator (splitmix64) for weights and loads, so
// every run measures the same pool.
struct Random {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

// Servers as the daemon builds them: one heap-allocated ServerState per
// server (StateRegistry::server uses std::make_shared), all up, weights
// 1..10, and for the load-aware algorithms varied active counts.
struct Pool {
  std::vector<std::shared_ptr<ServerState>> states;
  std::vector<SchedServer> servers;
  LoadIndex load_index;  // the service's, for lc and wlc (ServiceState has it)

  Pool(uint32_t count, bool loaded) {
    Random random{0x5eed0000ULL + count};
    for (uint32_t i = 0; i < count; ++i) {
      auto state = std::make_shared<ServerState>();
      if (loaded)
        state->active.store(static_cast<uint32_t>(random.next() % 100), std::memory_order_relaxed);
      SchedServer server;
      server.name = "server-" + std::to_string(i);
      ServerStateWriter writer(*state);
      writer.set_assigned_weight(1 + i % 10);
      writer.set_weight(1 + i % 10);
      server.state = state.get();
      servers.push_back(std::move(server));
      states.push_back(std::move(state));
    }
  }

  // Servers with the given weights, all up, no load.
  explicit Pool(const std::vector<uint32_t>& weights) {
    for (size_t i = 0; i < weights.size(); ++i) {
      auto state = std::make_shared<ServerState>();
      ServerStateWriter writer(*state);
      writer.set_assigned_weight(weights[i]);
      writer.set_weight(weights[i]);
      SchedServer server;
      server.name = "server-" + std::to_string(i);
      server.state = state.get();
      servers.push_back(std::move(server));
      states.push_back(std::move(state));
    }
  }
};

// Distinct IPv4 clients, 10.0.x.y with varied ports.
std::vector<SocketAddress> make_clients() {
  std::vector<SocketAddress> clients;
  clients.reserve(kClients);
  for (size_t i = 0; i < kClients; ++i) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(0x0a000000U + static_cast<uint32_t>(i) * 7 + 1);
    in.sin_port = htons(static_cast<uint16_t>(1024 + i));
    clients.push_back(
        SocketAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&in), sizeof in));
  }
  return clients;
}

// Sessions a load-aware batch keeps open: each pick starts one and ends the
// one started this many picks before.
constexpr size_t kOpenSessions = 1024;

// One timed batch of picks by `worker`; nanoseconds per pick. Counts picks
// that returned no server in `misses` (there should be none: all are up).
// With `pool` (lc, wlc, p2c), each pick is a session's whole scheduling
// cost: the pick, its try_acquire() and, kOpenSessions picks later, its
// release(), which is what keeps lc's order (the LoadIndex) current.
double timed_batch(Scheduler& scheduler, const std::vector<SocketAddress>& clients, unsigned worker,
                   int batch, uint64_t& misses, Pool* pool = nullptr) {
  uint64_t sum = 0;
  uint64_t none = 0;
  std::vector<ServerState*> open(kOpenSessions, nullptr);
  const auto start = Clock::now();
  for (int i = 0; i < batch; ++i) {
    const PickContext context{clients[static_cast<size_t>(i) % kClients], 0, {}, worker};
    const auto picked = scheduler.pick(context);
    if (picked) {
      sum += *picked;
      if (pool != nullptr) {
        ServerState*& slot = open[static_cast<size_t>(i) % kOpenSessions];
        if (slot != nullptr) slot->release();
        slot = pool->states[*picked].get();
        if (!slot->try_acquire()) slot = nullptr;
      }
    } else {
      ++none;
    }
  }
  const auto stop = Clock::now();
  for (ServerState* state : open) {
    if (state != nullptr) state->release();
  }
  sink = sum;
  misses += none;
  return static_cast<double>(
             std::chrono::duration_cast<std::chrono::nanoseconds>(stop - start).count()) /
         batch;
}

struct PickRow {
  std::string algorithm;
  uint32_t servers;
  std::string threads;  // "1", or "2 (t0)" / "2 (t1)"
  Summary ns;
};

SchedulerKind kind_of(std::string_view name) {
  if (name == "rr") return SchedulerKind::rr;
  if (name == "wrr") return SchedulerKind::wrr;
  if (name == "lc") return SchedulerKind::lc;
  if (name == "wlc") return SchedulerKind::wlc;
  if (name == "maglev") return SchedulerKind::maglev;
  return SchedulerKind::p2c;
}

bool load_aware(SchedulerKind kind) {
  return kind == SchedulerKind::lc || kind == SchedulerKind::wlc || kind == SchedulerKind::p2c;
}

PickRow bench_single(const Settings& settings, std::string_view algorithm, uint32_t count,
                     const std::vector<SocketAddress>& clients, uint64_t& misses) {
  const SchedulerKind kind = kind_of(algorithm);
  const bool loaded = load_aware(kind);
  Pool pool(count, loaded);
  SchedulerOptions options;
  options.kind = kind;
  options.hash_key = HashKey::source_ip;
  options.workers = 1;
  options.load_index = &pool.load_index;
  auto scheduler = make_scheduler(options, pool.servers);
  Pool* accounted = loaded ? &pool : nullptr;
  timed_batch(*scheduler, clients, 0, settings.batch, misses, accounted);  // warm-up, not counted
  std::vector<double> ns;
  ns.reserve(settings.reps);
  for (int rep = 0; rep < settings.reps; ++rep)
    ns.push_back(timed_batch(*scheduler, clients, 0, settings.batch, misses, accounted));
  return PickRow{std::string(algorithm), count, "1", summarise(ns)};
}

// Two threads picking from one scheduler at the same time (worker indices 0
// and 1). A barrier starts every repetition together so the batches overlap.
std::vector<PickRow> bench_two_threads(const Settings& settings, std::string_view algorithm,
                                       uint32_t count, const std::vector<SocketAddress>& clients,
                                       uint64_t& misses) {
  const SchedulerKind kind = kind_of(algorithm);
  Pool pool(count, false);
  SchedulerOptions options;
  options.kind = kind;
  options.workers = 2;
  auto scheduler = make_scheduler(options, pool.servers);
  std::barrier start(2);
  std::vector<double> ns[2];
  uint64_t thread_misses[2] = {0, 0};
  auto run = [&](unsigned worker) {
    start.arrive_and_wait();
    timed_batch(*scheduler, clients, worker, settings.batch, thread_misses[worker]);  // warm-up
    for (int rep = 0; rep < settings.reps; ++rep) {
      start.arrive_and_wait();
      ns[worker].push_back(
          timed_batch(*scheduler, clients, worker, settings.batch, thread_misses[worker]));
    }
  };
  std::thread other(run, 1U);
  run(0);
  other.join();
  misses += thread_misses[0] + thread_misses[1];
  std::vector<PickRow> rows;
  for (unsigned worker = 0; worker < 2; ++worker) {
    rows.push_back(PickRow{std::string(algorithm), count, "2 (t" + std::to_string(worker) + ")",
                           summarise(ns[worker])});
  }
  return rows;
}

struct BuildRow {
  uint32_t servers;
  Summary ms;
};

BuildRow bench_maglev_build(const Settings& settings, uint32_t count) {
  std::vector<std::string> names;
  std::vector<uint32_t> weights;
  for (uint32_t i = 0; i < count; ++i) {
    names.push_back("server-" + std::to_string(i));
    weights.push_back(1 + i % 10);
  }
  std::vector<double> ms;
  for (int rep = 0; rep < settings.builds; ++rep) {
    const auto start = Clock::now();
    const auto table = build_maglev_table(names, weights, kTableSize);
    const auto stop = Clock::now();
    uint64_t sum = table.size();
    for (size_t slot = 0; slot < table.size(); slot += 4099) sum += table[slot];
    sink = sum;
    ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  return BuildRow{count, summarise(ms)};
}

// A weight set of the wrr rebuild figures. The cost of the smooth cycle
// depends on the weights: its length is their sum over their greatest
// common divisor.
struct WeightSet {
  std::string name;
  std::vector<uint32_t> weights;
};

constexpr uint32_t kRebuildServers = 1000;

std::vector<WeightSet> weight_sets() {
  WeightSet in_turn{"1..10 in turn", {}};
  WeightSet distinct{"1..1000", {}};
  WeightSet random_set{"random 1..1000", {}};
  WeightSet coprime{"999,1000 in turn", {}};
  Random random{0x5eed1000ULL};
  for (uint32_t i = 0; i < kRebuildServers; ++i) {
    in_turn.weights.push_back(1 + i % 10);
    distinct.weights.push_back(1 + i);
    random_set.weights.push_back(static_cast<uint32_t>(1 + random.next() % 1000));
    coprime.weights.push_back(999 + i % 2);
  }
  return {in_turn, distinct, random_set, coprime};
}

// Picks in one cycle of the smooth order: sum of the weights over their
// greatest common divisor.
uint64_t cycle_length(const std::vector<uint32_t>& weights) {
  uint64_t divisor = 0;
  uint64_t sum = 0;
  for (uint32_t w : weights) {
    divisor = std::gcd(divisor, uint64_t{w});
    sum += w;
  }
  return divisor == 0 ? 0 : sum / divisor;
}

struct RebuildRow {
  std::string weights;
  uint64_t cycle;
  Summary rebuild_ms;
  double first_pass_ns;      // per pick, over the first cycle walked after a rebuild
  double first_pass_two_ns;  // the same with two threads walking it together
  Summary later_ns;          // per pick, batches after that
};

// A fresh cycle: server 0 down and up again, a rebuild after each change.
void fresh_cycle(Scheduler& scheduler, ServerState& first, SteadyTime now) {
  ServerStateWriter(first).set_status(ServerStatus::down, now);
  scheduler.rebuild();
  ServerStateWriter(first).set_status(ServerStatus::up, now);
  scheduler.rebuild();
}

// Two threads (workers 0 and 1) walk one cycle together, `cycle` / 2 picks
// each, started through a barrier: ns per pick, the mean of the two.
double two_threads_walk(Scheduler& scheduler, const std::vector<SocketAddress>& clients,
                        uint64_t cycle, uint64_t& misses) {
  std::barrier start(2);
  double ns[2] = {0, 0};
  uint64_t thread_misses[2] = {0, 0};
  auto run = [&](unsigned worker) {
    start.arrive_and_wait();
    ns[worker] =
        timed_batch(scheduler, clients, worker, static_cast<int>(cycle / 2), thread_misses[worker]);
  };
  std::thread other(run, 1U);
  run(0);
  other.join();
  misses += thread_misses[0] + thread_misses[1];
  return (ns[0] + ns[1]) / 2;
}

// Rebuild cost of wrr at 1000 servers: server 0 goes down and comes back
// up, a rebuild after each change (the health checker's path; a slow start
// rebuilds the same way every 500 ms), `builds` rebuilds timed in all. Then
// the cost of picking: one cycle walked right after a rebuild (what the
// workers pay for a cycle the rebuild did not compute in full), by one
// thread and by two together, and `reps` batches after it.
RebuildRow bench_wrr_rebuild(const Settings& settings, const WeightSet& set,
                             const std::vector<SocketAddress>& clients, uint64_t& misses) {
  Pool pool(set.weights);
  SchedulerOptions options;
  options.kind = SchedulerKind::wrr;
  options.workers = 2;
  auto scheduler = make_scheduler(options, pool.servers);
  const SteadyTime now = Clock::now();
  std::vector<double> ms;
  for (int rep = 0; rep < settings.builds; ++rep) {
    const ServerStatus status = rep % 2 == 0 ? ServerStatus::down : ServerStatus::up;
    ServerStateWriter(*pool.states[0]).set_status(status, now);
    const auto start = Clock::now();
    scheduler->rebuild();
    const auto stop = Clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  // Untimed from here: every figure below is for all servers up.
  const uint64_t cycle = cycle_length(set.weights);
  fresh_cycle(*scheduler, *pool.states[0], now);
  const double first_pass_ns = timed_batch(*scheduler, clients, 0, static_cast<int>(cycle), misses);
  std::vector<double> ns;
  ns.reserve(settings.reps);
  for (int rep = 0; rep < settings.reps; ++rep)
    ns.push_back(timed_batch(*scheduler, clients, 0, settings.batch, misses));
  fresh_cycle(*scheduler, *pool.states[0], now);
  const double first_pass_two_ns = two_threads_walk(*scheduler, clients, cycle, misses);
  return RebuildRow{set.name,          cycle,        summarise(ms), first_pass_ns,
                    first_pass_two_ns, summarise(ns)};
}

bool parse_int(const char* text, int& out) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < 1 || value > 100000000) return false;
  out = static_cast<int>(value);
  return true;
}

const PickRow* find_row(const std::vector<PickRow>& rows, std::string_view algorithm,
                        uint32_t count) {
  for (const auto& row : rows) {
    if (row.algorithm == algorithm && row.servers == count && row.threads == "1") return &row;
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--only" && i + 1 < argc) {
      settings.only = argv[++i];
      const std::string_view parts[] = {"rr",     "wrr", "lc",    "wlc",
                                        "maglev", "p2c", "build", "rebuild"};
      if (std::find(std::begin(parts), std::end(parts), settings.only) != std::end(parts)) continue;
      std::fprintf(stderr, "--only: one of rr, wrr, lc, wlc, maglev, p2c, build, rebuild\n");
      return 2;
    }
    int* target = arg == "--reps"     ? &settings.reps
                  : arg == "--batch"  ? &settings.batch
                  : arg == "--builds" ? &settings.builds
                                      : nullptr;
    if (!target || i + 1 >= argc || !parse_int(argv[i + 1], *target)) {
      std::fprintf(stderr, "usage: %s [--reps N] [--batch N] [--builds N] [--only NAME]\n",
                   argv[0]);
      return 2;
    }
    ++i;
  }

  const auto clients = make_clients();
  std::printf("fulcrum scheduler micro-benchmark\n");
  std::printf(
      "picks: median/min/max over %d batches of %d picks (after 1 warm-up batch), %zu distinct "
      "IPv4 clients\n",
      settings.reps, settings.batch, kClients);
  std::printf("maglev build: median/min/max over %d builds, table size %u\n", settings.builds,
              kTableSize);
  std::printf(
      "wrr rebuild: median/min/max over %d rebuilds at %u servers (server 0 down, up, down, ...)\n",
      settings.builds, kRebuildServers);
  std::printf("load average at start: %s\n\n", load_average().c_str());

  uint64_t misses = 0;
  std::vector<PickRow> rows;
  const char* algorithms[] = {"rr", "wrr", "lc", "wlc", "maglev", "p2c"};
  for (const char* algorithm : algorithms) {
    if (!selected(settings, algorithm)) continue;
    for (uint32_t count : kServerCounts)
      rows.push_back(bench_single(settings, algorithm, count, clients, misses));
  }
  for (const char* algorithm : {"rr", "wrr"}) {
    if (!selected(settings, algorithm)) continue;
    for (uint32_t count : kServerCounts) {
      for (auto& row : bench_two_threads(settings, algorithm, count, clients, misses))
        rows.push_back(std::move(row));
    }
  }

  std::printf("%-9s %8s %8s %12s %10s %10s\n", "algorithm", "servers", "threads", "median ns",
              "min ns", "max ns");
  for (const auto& row : rows) {
    std::printf("%-9s %8u %8s %12.1f %10.1f %10.1f\n", row.algorithm.c_str(), row.servers,
                row.threads.c_str(), row.ns.median, row.ns.min, row.ns.max);
  }
  std::printf(
      "(threads \"2 (tN)\": ns per pick seen by thread N while both pick from one scheduler)\n\n");

  std::vector<BuildRow> builds;
  if (selected(settings, "build")) {
    for (uint32_t count : kServerCounts) builds.push_back(bench_maglev_build(settings, count));
  }
  std::printf("%-14s %8s %12s %10s %10s\n", "maglev build", "servers", "median ms", "min ms",
              "max ms");
  for (const auto& build : builds) {
    std::printf("%-14s %8u %12.3f %10.3f %10.3f\n", "", build.servers, build.ms.median,
                build.ms.min, build.ms.max);
  }
  std::printf("\n");

  std::vector<RebuildRow> rebuilds;
  if (selected(settings, "rebuild")) {
    for (const auto& set : weight_sets())
      rebuilds.push_back(bench_wrr_rebuild(settings, set, clients, misses));
  }
  std::printf("%-18s %7s %10s %8s %8s %10s %10s %9s %8s %8s\n", "wrr, 1000 servers", "cycle",
              "rebuild ms", "min ms", "max ms", "1st cycle", "2 threads", "later ns", "min ns",
              "max ns");
  for (const auto& row : rebuilds) {
    std::printf("%-18s %7llu %10.3f %8.3f %8.3f %10.1f %10.1f %9.1f %8.1f %8.1f\n",
                row.weights.c_str(), static_cast<unsigned long long>(row.cycle),
                row.rebuild_ms.median, row.rebuild_ms.min, row.rebuild_ms.max, row.first_pass_ns,
                row.first_pass_two_ns, row.later_ns.median, row.later_ns.min, row.later_ns.max);
  }
  std::printf(
      "(cycle: picks per cycle; 1st cycle: ns per pick over the first cycle after a rebuild, one "
      "thread; 2 threads: the same, two threads walking it together, mean of the two; later ns: "
      "one thread, the batches after the first cycle)\n\n");

  if (misses != 0) {
    std::printf("warning: %llu picks returned no server although every server is up\n\n",
                static_cast<unsigned long long>(misses));
  }

  std::printf("targets (single thread, 1000 servers, medians):\n");
  struct PickTarget {
    const char* algorithm;
    double limit_ns;
  };
  const PickTarget targets[] = {{"rr", 50},  {"wrr", 50},  {"maglev", 50},
                                {"lc", 200}, {"wlc", 200}, {"p2c", 200}};
  for (const auto& target : targets) {
    const PickRow* row = find_row(rows, target.algorithm, 1000);
    if (!row) continue;
    std::printf("  %-7s pick  <= %5.0f ns : %10.1f ns  %s\n", target.algorithm, target.limit_ns,
                row->ns.median, row->ns.median <= target.limit_ns ? "meets" : "misses");
  }
  for (const auto& build : builds) {
    if (build.servers != 1000) continue;
    std::printf("  maglev  build <= %5.0f ms : %10.3f ms  %s\n", 10.0, build.ms.median,
                build.ms.median <= 10.0 ? "meets" : "misses");
  }
  for (const auto& row : rebuilds) {
    std::printf("  wrr rebuild <= %5.0f ms : %10.3f ms  %s (weights %s)\n", 10.0,
                row.rebuild_ms.median, row.rebuild_ms.median <= 10.0 ? "meets" : "misses",
                row.weights.c_str());
  }
  std::printf("load average at end: %s\n", load_average().c_str());
  return 0;
}
