// What fulcrumctl prints for each reply: the status summary and the server
// table from /stats, one-line confirmations of writes. Each throws a
// ReplyError when the reply lacks a field it shows.
#pragma once

#include <string>
#include <string_view>

#include "json.hpp"

namespace fulcrum::ctl {

// `status`: version, uptime, generation, last reload, then one row per
// service: name, scheduler, sessions active/total/rejected, bytes in/out,
// the daemon's rates (sessions/s, its peak, bytes/s in and out), servers
// up/total. When some service forwards in the kernel or over UDP, a MODE
// column after the scheduler (`nat/udp`, `proxy/tcp`); when some service
// has packet counts (kernel modes), PACKETS_IN and PACKETS_OUT after the
// bytes (`-`: a proxy's, and dsr's replies).
std::string status_report(const Json& stats);

// `servers`: one row per server of every service (max_connections shown as
// `FULL` while reached; PACKETS_IN and PACKETS_OUT after the byte rates when
// some server has packet counts, as in status), then one `last error` line
// per server whose health checks ever failed.
std::string servers_report(const Json& stats);

// After drain/ready/maint/weight: `SERVICE/SERVER: state S, weight W`,
// from the server's JSON the daemon answered with.
std::string server_change_report(std::string_view service, const Json& server);

// After reload: the reply's message (or what the reply says otherwise),
// then each warning of the reload: `warning: FILE:LINE:COL: message`.
std::string reload_report(const Json& reply);

// explain: `SERVICE: client C -> slot N of the Maglev table T (GROUP)`,
// `server: NAME (STATE, weight W)`, each skipped server, and the reason;
// for other schedulers, the reason alone.
std::string explain_report(const Json& reply);

}  // namespace fulcrum::ctl
