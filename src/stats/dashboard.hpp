// The live HTML dashboard of the stats endpoint (SPEC.md "Stats endpoint",
// `GET /`): one self-contained document, inline CSS and JavaScript only, no
// external asset. It polls `stats` (relative to its own URL) every second and
// renders services, servers, states, weights, sessions, rates and bytes.
#pragma once

#include <string_view>

namespace fulcrum {

// The whole page, served as `text/html; charset=utf-8`.
extern const std::string_view kDashboardHtml;

}  // namespace fulcrum
