// GET /explain?service=NAME&client=ADDR[:PORT] (and `fulcrumctl explain`):
// which server a client maps to on this node, and why. For `maglev`: the
// client's slot in the table, the server there now, and the server the
// slot holds with every server of the group up at its configured weight
// (what every node with the same servers computes), skipped when it does
// not take new sessions now. Other schedulers pick per session, not per
// client, and say so.
#pragma once

#include <string>
#include <string_view>

#include "fulcrum/snapshot.hpp"

namespace fulcrum {

struct ExplainReply {
  int status = 200;  // 200, 400 (bad client), 404 (no such service)
  std::string body;  // JSON for 200, one line of text otherwise
};

ExplainReply explain_client(const Snapshot& snapshot, std::string_view service,
                            std::string_view client);

}  // namespace fulcrum
