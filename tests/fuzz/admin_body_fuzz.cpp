// libFuzzer target for the admin API's request body parser (POST
// /api/v1/services/S/servers/V): any body is a change or one error line,
// a change holds at least one of state and weight, the weight is at most
// 1000, and the change written back as JSON parses to the same change.
// Seeds in corpus/admin_body/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fulcrum/admin.hpp"

namespace {

std::string state_name(fulcrum::AdminState state) {
  switch (state) {
    case fulcrum::AdminState::ready: return "ready";
    case fulcrum::AdminState::drain: return "drain";
    case fulcrum::AdminState::maint: return "maint";
  }
  std::abort();
}

std::string to_json(const fulcrum::AdminChange& change) {
  std::string json = "{";
  if (change.state) json += "\"state\":\"" + state_name(*change.state) + "\"";
  if (change.state && change.weight) json += ",";
  if (change.weight) json += "\"weight\":" + std::to_string(*change.weight);
  return json + "}";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto change = fulcrum::parse_admin_change(body, error);
  if (!change) {
    if (error.empty() || error.find('\n') != std::string::npos) std::abort();
    return 0;
  }
  if (!change->state && !change->weight) std::abort();
  if (change->weight && *change->weight > 1000) std::abort();
  std::string again_error;
  const auto again = fulcrum::parse_admin_change(to_json(*change), again_error);
  if (!again || again->state != change->state || again->weight != change->weight) std::abort();
  return 0;
}
