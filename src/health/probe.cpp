#include "probe.hpp"

#include <cctype>
#include <cerrno>

#include "fulcrum/socket.hpp"

namespace fulcrum {

std::string failure_reason(int error) {
  if (error == ECONNREFUSED) return "connect refused";
  if (error == ETIMEDOUT) return "connect timeout";
  std::string text = errno_string(error);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

ProbeResult ProbeResult::from_error(int error) {
  if (is_local_error(error)) return {Outcome::local_error, errno_string(error), {}};
  return failed(failure_reason(error));
}

}  // namespace fulcrum
