#include "fulcrum/log.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>

namespace fulcrum {

std::atomic<LogLevel> Log::level_{LogLevel::info};
bool Log::journald_ = false;

namespace {

// syslog priorities journald understands as a `<N>` line prefix.
int syslog_priority(LogLevel level) {
  switch (level) {
    case LogLevel::error: return 3;
    case LogLevel::warn: return 4;
    case LogLevel::info: return 6;
    case LogLevel::debug: return 7;
  }
  return 6;
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20)
      return true;
  }
  return false;
}

void append_value(std::string& out, std::string_view v) {
  if (!needs_quotes(v)) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';  // keep one event on one line
    } else {
      out += c;
    }
  }
  out += '"';
}

void append_timestamp(std::string& out) {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t seconds = system_clock::to_time_t(now);
  auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[40];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &utc);
  out += buffer;
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ ", static_cast<int>(millis));
  out += frac;
}

}  // namespace

void Log::init() { journald_ = std::getenv("JOURNAL_STREAM") != nullptr; }

std::string Log::format(LogLevel level, std::string_view message,
                        std::initializer_list<LogField> fields) {
  std::string line;
  line.reserve(160);
  if (journald_) {
    line += '<';
    line += std::to_string(syslog_priority(level));
    line += '>';
  } else {
    append_timestamp(line);
    line += to_string(level);
    line += ' ';
  }
  line += message;
  for (const auto& field : fields) {
    line += ' ';
    line += field.key;
    line += '=';
    append_value(line, field.value);
  }
  line += '\n';
  return line;
}

void Log::write(LogLevel level, std::string_view message, std::initializer_list<LogField> fields) {
  if (!enabled(level)) return;
  std::string line = format(level, message, fields);
  // One write per line; a short write to a pipe of this size does not happen
  // in practice, and a log line is not worth retry logic that could block.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace fulcrum
