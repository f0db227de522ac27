// Logging: one line per event on stderr, in logfmt:
//   ts=2026-12-03T12:00:00.123Z level=info msg="short message" key=value ...
// The message is constant text (every one is listed in docs/operations.md)
// and always quoted, so that `grep 'msg="server down"'` finds each of its
// lines; what varies goes in the fields.
//
// No thread ever waits for stderr's reader: while a StderrLogWriter lives
// (fulcrum/log_writer.hpp), Log::write formats the line in the calling
// thread and queues it in a bounded buffer that a thread of its own writes
// out, in order, one whole line after another; when the buffer is full the
// line is dropped and counted (Log::lines_dropped, and a `msg="log lines
// dropped" count=N` warning once there is room again). Lines a client can
// cause at will go through a LogRateLimit.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "fulcrum/log_level.hpp"

namespace fulcrum {

class LogWriter;

// A rate-limited message: lines per second at most (LogRateLimit).
inline constexpr uint32_t kLogLinesPerSecond = 50;

// A field's key: a string literal checked when compiling, so that a key
// never needs quoting (lower-case letters, digits, '_') and never takes the
// name of a line's own `ts`, `level` or `msg` (a logfmt reader would see
// the key twice). A key that breaks this does not compile.
class LogKey {
 public:
  template <size_t N>
  consteval LogKey(const char (&key)[N])  // implicit: every call site passes a literal
      : key_(key, N - 1) {
    if (key_.empty() || key_ == "ts" || key_ == "level" || key_ == "msg") throw "reserved log key";
    for (const char c : key_) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
        throw "a log key is lower-case letters, digits and '_'";
    }
  }
  std::string_view view() const { return key_; }

 private:
  std::string_view key_;
};

// One key=value field. A value is written as it is, or quoted and escaped
// (fulcrum/quote.hpp) when it is empty or holds a space, '=' or a byte
// that needs escaping.
struct LogField {
  std::string_view key;
  std::string value;

  LogField(LogKey k, std::string_view v) : key(k.view()), value(v) {}
  LogField(LogKey k, std::string v) : key(k.view()), value(std::move(v)) {}
  LogField(LogKey k, const char* v) : key(k.view()), value(v) {}
  template <typename Integer>
  requires std::is_integral_v<Integer> LogField(LogKey k, Integer v)
      : key(k.view()), value(std::to_string(v)) {}
};

class Log {
 public:
  // Decides once whether lines start with a `<N>` syslog priority, which
  // journald (JOURNAL_STREAM set) takes as the line's priority and strips.
  static void init();
  static void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  static bool enabled(LogLevel level) { return level <= level_.load(std::memory_order_relaxed); }

  // Waits at most `limit` until the lines logged so far are written out.
  // For the moments whose log lines a supervisor should see before what
  // fulcrum tells it next (READY=1, STOPPING=1): journald orders the two.
  static void flush(std::chrono::milliseconds limit);

  static void write(LogLevel level, std::string_view message,
                    std::initializer_list<LogField> fields = {});

  // Formats a line without writing it (for tests).
  static std::string format(LogLevel level, std::string_view message,
                            std::initializer_list<LogField> fields);

  // Lines lost because the buffer was full (0 without a writer thread).
  static uint64_t lines_dropped();

 private:
  friend class StderrLogWriter;
  friend class LogRateLimit;

  static std::atomic<LogLevel> level_;
  static bool journald_;
  static std::atomic<LogWriter*> writer_;
};

// A message a client can cause at will (a bad PROXY header, a failed
// accept): at most `per_second` lines in each second of the steady clock,
// process-wide. The rest are counted and reported by one `msg="log lines
// suppressed" message=MESSAGE count=N` line at the message's level, before
// the next line that passes or, with a writer thread, about a second after
// the window ended. Lock free: one compare-and-swap per line on a shared
// word, then one add for a suppressed line.
class LogRateLimit {
 public:
  struct Verdict {
    bool write = false;       // this line may be written
    uint64_t suppressed = 0;  // lines suppressed before it, to report first
  };

  LogRateLimit(LogLevel level, std::string_view message, uint32_t per_second = kLogLinesPerSecond);
  ~LogRateLimit();
  LogRateLimit(const LogRateLimit&) = delete;
  LogRateLimit& operator=(const LogRateLimit&) = delete;

  // Logs the message with `fields` unless the limit is reached; writes the
  // summary of suppressed lines first when one is due.
  void write(std::initializer_list<LogField> fields);

  // The decision for one line at `now` (write() with the clock; tests).
  Verdict admit(std::chrono::steady_clock::time_point now);
  // The count of suppressed lines whose window ended before `now`, taken
  // (so reported once); 0 while the window that suppressed them lasts.
  uint64_t take_suppressed(std::chrono::steady_clock::time_point now);
  // Writes the summaries due at `now` of every rate limit (the writer
  // thread's tick). Returns whether some suppressed lines wait for their
  // window to end.
  static bool write_due_summaries(std::chrono::steady_clock::time_point now);

 private:
  void write_summary(uint64_t count) const;

  const LogLevel level_;
  const std::string message_;
  const uint32_t per_second_;
  // The current window (whole seconds of the steady clock) in the high 32
  // bits, the lines written in it in the low 32.
  std::atomic<uint64_t> window_and_count_{0};
  std::atomic<uint64_t> suppressed_{0};
  LogRateLimit* next_ = nullptr;  // every rate limit, for the writer's tick
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
