// A reload's outcome as JSON: the admin API's answer and /stats'
// config.last_reload share its lists.
#include "fulcrum/stats.hpp"

namespace fulcrum {

std::string json_strings(const std::vector<std::string>& texts) {
  std::string out = "[";
  for (const std::string& text : texts) {
    if (out.size() > 1) out += ',';
    out += json_string(text);
  }
  return out + "]";
}

std::string render_reload_json(const ReloadStatus& status, uint64_t generation) {
  std::string body = "{\"ok\":" + std::string(status.ok ? "true" : "false") +
                     ",\"generation\":" + std::to_string(generation);
  if (!status.ok) body += ",\"error\":" + json_string(status.error);
  body += ",\"errors\":" + json_strings(status.errors);
  body += ",\"warnings\":" + json_strings(status.warnings);
  return body + "}";
}

}  // namespace fulcrum
