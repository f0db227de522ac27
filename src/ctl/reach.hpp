// Finding an address of the daemon that accepts connections, before the
// HTTP exchange: the host resolved here (every address, in the resolver's
// order) and each tried with a plain TCP connect. This gives the operator
// the system's exact reason when none does (`Connection refused`,
// `Network is unreachable`, a resolver error, a timeout), which libevent's
// HTTP client does not keep, and lets `localhost` fall back from ::1 to
// 127.0.0.1.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace fulcrum::ctl {

// The numeric address (`127.0.0.1`, `::1`) of the first address of `host`
// that accepted a connection on `port` before `deadline` (the connection
// is closed again at once), or nullopt with `error` set to why none did.
std::optional<std::string> find_reachable(const std::string& host, int port,
                                          std::chrono::steady_clock::time_point deadline,
                                          std::string* error);

}  // namespace fulcrum::ctl
