// Logging: one line per event on stderr, a short message then key=value
// pairs. Thread safe: each line is formatted first and written with a single
// write(2), so lines from different workers never interleave.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "fulcrum/config.hpp"

namespace fulcrum {

// One key=value field. Values with spaces, quotes or '=' are quoted.
struct LogField {
  std::string_view key;
  std::string value;

  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, std::string v) : key(k), value(std::move(v)) {}
  LogField(std::string_view k, const char* v) : key(k), value(v) {}
  template <typename Integer>
  requires std::is_integral_v<Integer> LogField(std::string_view k, Integer v)
      : key(k), value(std::to_string(v)) {}
};

class Log {
 public:
  // Decides the line prefix once: `<N>` priorities under journald
  // (JOURNAL_STREAM set), an RFC 3339 UTC timestamp otherwise.
  static void init();
  static void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  static bool enabled(LogLevel level) { return level <= level_.load(std::memory_order_relaxed); }

  static void write(LogLevel level, std::string_view message,
                    std::initializer_list<LogField> fields = {});

  // Formats a line without writing it (for tests).
  static std::string format(LogLevel level, std::string_view message,
                            std::initializer_list<LogField> fields);

 private:
  static std::atomic<LogLevel> level_;
  static bool journald_;
};

inline void log_error(std::string_view m, std::initializer_list<LogField> f = {}) {
  Log::write(LogLevel::error, m, f);
}
inline void log_warn(std::string_view m, std::initializer_list<LogField> f = {}) {
  Log::write(LogLevel::warn, m, f);
}
inline void log_info(std::string_view m, std::initializer_list<LogField> f = {}) {
  Log::write(LogLevel::info, m, f);
}
inline void log_debug(std::string_view m, std::initializer_list<LogField> f = {}) {
  Log::write(LogLevel::debug, m, f);
}

}  // namespace fulcrum
