#include "fulcrum/log.hpp"

#include <event2/event.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include "fulcrum/log_writer.hpp"
#include "fulcrum/quote.hpp"

namespace fulcrum {

std::string_view to_string(LogLevel level) {
  switch (level) {
    case LogLevel::error: return "error";
    case LogLevel::warn: return "warn";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
  }
  return "info";
}

std::atomic<LogLevel> Log::level_{LogLevel::info};
bool Log::journald_ = false;
std::atomic<LogWriter*> Log::writer_{nullptr};

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

// logfmt: a value is one word unless it is empty or holds a separator (space,
// '=') or a byte quote() rewrites.
bool needs_quotes(std::string_view v) {
  return v.empty() || std::any_of(v.begin(), v.end(),
                                  [](char c) { return c == ' ' || c == '=' || needs_escape(c); });
}

void append_value(std::string& out, std::string_view v) {
  if (!needs_quotes(v)) {
    out += v;
    return;
  }
  out += '"';
  append_escaped(out, v);
  out += '"';
}

// RFC 3339 in UTC with milliseconds: 2026-12-03T12:00:00.123Z.
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
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(millis));
  out += frac;
}

// Every LogRateLimit, so that the writer thread can report what each
// suppressed once its window is over. Constant-initialized (and trivially
// destructible), so that rate limits of static storage duration anywhere
// can register and unregister whenever they are constructed and destroyed.
std::mutex rate_limits_mutex;
LogRateLimit* rate_limits = nullptr;

uint32_t window_of(std::chrono::steady_clock::time_point now) {
  return static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
}

// Whether window `a` comes after window `b` (seconds wrap after 136 years).
bool later(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; }

// libevent's own messages (evhttp, evconnlistener, a failed epoll_ctl),
// which it would otherwise fprintf to stderr from whatever thread it runs
// in: log lines like any other, rate-limited since a loop can repeat them.
void log_libevent_message(int severity, const char* text) {
  static LogRateLimit debug_log(LogLevel::debug, "libevent");
  static LogRateLimit info_log(LogLevel::info, "libevent");
  static LogRateLimit warn_log(LogLevel::warn, "libevent");
  static LogRateLimit error_log(LogLevel::error, "libevent");
  LogRateLimit* limit = &error_log;
  switch (severity) {
    case EVENT_LOG_DEBUG: limit = &debug_log; break;
    case EVENT_LOG_MSG: limit = &info_log; break;
    case EVENT_LOG_WARN: limit = &warn_log; break;
    default: break;
  }
  limit->write({{"message", text}});
}

}  // namespace

void Log::init() {
  journald_ = std::getenv("JOURNAL_STREAM") != nullptr;
  event_set_log_callback(log_libevent_message);
}

std::string Log::format(LogLevel level, std::string_view message,
                        std::initializer_list<LogField> fields) {
  std::string line;
  line.reserve(160);
  // journald strips the priority and keeps the rest as the message: the
  // same logfmt line as anywhere else, ts included (journald's own time is
  // when the line arrived, after the log writer's queue).
  if (journald_) {
    line += '<';
    line += std::to_string(syslog_priority(level));
    line += '>';
  }
  line += "ts=";
  append_timestamp(line);
  line += " level=";
  line += to_string(level);
  // Always quoted, even a one-word message: one pattern greps every line
  // of a message.
  line += " msg=\"";
  append_escaped(line, message);
  line += '"';
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
  const std::string line = format(level, message, fields);
  if (LogWriter* writer = writer_.load(std::memory_order_acquire)) {
    writer->push(line);
    return;
  }
  // No writer thread (start-up, tests): only this thread logs, so one
  // blocking write(2) per line is what it may as well do.
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

void Log::flush(std::chrono::milliseconds limit) {
  if (LogWriter* writer = writer_.load(std::memory_order_acquire)) writer->flush(limit);
}

uint64_t Log::lines_dropped() {
  const LogWriter* writer = writer_.load(std::memory_order_acquire);
  return writer != nullptr ? writer->dropped() : 0;
}

LogRateLimit::LogRateLimit(LogLevel level, std::string_view message, uint32_t per_second)
    : level_(level), message_(message), per_second_(per_second) {
  const std::lock_guard lock(rate_limits_mutex);
  next_ = rate_limits;
  rate_limits = this;
}

LogRateLimit::~LogRateLimit() {
  const std::lock_guard lock(rate_limits_mutex);
  for (LogRateLimit** link = &rate_limits; *link != nullptr; link = &(*link)->next_) {
    if (*link == this) {
      *link = next_;
      return;
    }
  }
}

void LogRateLimit::write(std::initializer_list<LogField> fields) {
  if (!Log::enabled(level_)) return;
  const Verdict verdict = admit(std::chrono::steady_clock::now());
  if (verdict.suppressed > 0) write_summary(verdict.suppressed);
  if (verdict.write) Log::write(level_, message_, fields);
}

LogRateLimit::Verdict LogRateLimit::admit(std::chrono::steady_clock::time_point now) {
  const uint32_t window = window_of(now);
  uint64_t state = window_and_count_.load(std::memory_order_relaxed);
  while (true) {
    const auto current = static_cast<uint32_t>(state >> 32);
    const auto count = static_cast<uint32_t>(state);
    // A caller that read the clock before the window turned counts in the
    // current window: windows only move forward.
    const bool new_window = later(window, current);
    uint64_t next = 0;
    if (new_window) {
      next = uint64_t{window} << 32 | 1;
    } else if (count < per_second_) {
      next = state + 1;
    } else {
      break;
    }
    if (window_and_count_.compare_exchange_weak(state, next, std::memory_order_relaxed)) {
      // The first line of a window reports what the windows before it
      // suppressed (unless the writer's tick did already).
      return {true, new_window ? suppressed_.exchange(0, std::memory_order_relaxed) : 0};
    }
  }
  if (suppressed_.fetch_add(1, std::memory_order_relaxed) == 0) {
    if (LogWriter* writer = Log::writer_.load(std::memory_order_acquire)) writer->summaries_due();
  }
  return {false, 0};
}

uint64_t LogRateLimit::take_suppressed(std::chrono::steady_clock::time_point now) {
  const auto current =
      static_cast<uint32_t>(window_and_count_.load(std::memory_order_relaxed) >> 32);
  if (!later(window_of(now), current)) return 0;
  return suppressed_.exchange(0, std::memory_order_relaxed);
}

bool LogRateLimit::write_due_summaries(std::chrono::steady_clock::time_point now) {
  bool waiting = false;
  const std::lock_guard lock(rate_limits_mutex);
  for (LogRateLimit* limit = rate_limits; limit != nullptr; limit = limit->next_) {
    if (const uint64_t count = limit->take_suppressed(now); count > 0) limit->write_summary(count);
    if (limit->suppressed_.load(std::memory_order_relaxed) > 0) waiting = true;
  }
  return waiting;
}

void LogRateLimit::write_summary(uint64_t count) const {
  Log::write(level_, "log lines suppressed", {{"message", message_}, {"count", count}});
}

}  // namespace fulcrum
