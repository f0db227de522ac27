#include <doctest/doctest.h>
#include <event2/event.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fulcrum/log.hpp"
#include "fulcrum/log_writer.hpp"
#include "fulcrum/quote.hpp"
#include "fulcrum/stats.hpp"

using fulcrum::LogBuffer;
using fulcrum::LogLevel;
using fulcrum::LogRateLimit;
using fulcrum::LogWriter;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

namespace {

// A log line of exactly `size` bytes, newline included.
std::string line_of(size_t size, char fill = 'a') { return std::string(size - 1, fill) + '\n'; }

bool ends_with(const std::string& text, const std::string& tail) {
  return text.size() >= tail.size() &&
         text.compare(text.size() - tail.size(), tail.size(), tail) == 0;
}

// The lines of `text`, each without its newline.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end = text.find('\n'); end != std::string::npos; end = text.find('\n', start)) {
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

struct Pipe {
  int read_end = -1;
  int write_end = -1;
  Pipe() { REQUIRE(::pipe2(&read_end, O_CLOEXEC) == 0); }
  ~Pipe() {
    close_read();
    close_write();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void close_read() {
    if (read_end >= 0) ::close(read_end);
    read_end = -1;
  }
  void close_write() {
    if (write_end >= 0) ::close(write_end);
    write_end = -1;
  }
  // Everything until every write end is closed.
  std::string read_to_eof() const {
    std::string out;
    char buffer[65536];
    for (ssize_t n; (n = ::read(read_end, buffer, sizeof buffer)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      REQUIRE(n > 0);
      out.append(buffer, static_cast<size_t>(n));
    }
    return out;
  }
  // Fills the pipe up to the last byte, leaving the write end blocking.
  size_t fill() const {
    const int flags = ::fcntl(write_end, F_GETFL);
    REQUIRE(::fcntl(write_end, F_SETFL, flags | O_NONBLOCK) == 0);
    const std::string block(4096, 'f');
    size_t filled = 0;
    for (ssize_t n; (n = ::write(write_end, block.data(), block.size())) > 0;)
      filled += static_cast<size_t>(n);
    for (ssize_t n; (n = ::write(write_end, block.data(), 1)) > 0;)
      filled += static_cast<size_t>(n);
    REQUIRE(errno == EAGAIN);
    REQUIRE(::fcntl(write_end, F_SETFL, flags) == 0);
    return filled;
  }
};

}  // namespace

// ---- The bounded buffer --------------------------------------------------------------------

TEST_CASE("log buffer: a line that does not fit is dropped whole and counted") {
  LogBuffer buffer(100);
  const std::string line = line_of(40);
  CHECK(buffer.push(line));
  CHECK(buffer.push(line));
  CHECK(buffer.push(line_of(20)));  // exactly full
  CHECK_FALSE(buffer.push(line_of(1)));
  CHECK(buffer.dropped() == 1);
  CHECK_FALSE(buffer.push(line_of(101)));  // longer than the whole buffer
  CHECK(buffer.dropped() == 2);

  std::string batch;
  REQUIRE(buffer.take(batch));
  CHECK(batch == line + line + line_of(20));
  CHECK_FALSE(buffer.take(batch));
}

TEST_CASE("log buffer: no line overtakes the summary of the lines dropped before it") {
  LogBuffer buffer(200);
  CHECK(buffer.push(line_of(100)));
  CHECK(buffer.push(line_of(60)));
  CHECK_FALSE(buffer.push(line_of(50)));
  // 30 bytes would fit, but the summary that must come first does not.
  CHECK_FALSE(buffer.push(line_of(30)));
  CHECK(buffer.dropped() == 2);
}

TEST_CASE("log buffer: with nothing being written, the next line brings the summary") {
  LogBuffer buffer(200);
  CHECK_FALSE(buffer.push(line_of(300)));  // longer than the buffer; the writer is idle
  CHECK(buffer.push(line_of(10, 'c')));
  std::string batch;
  REQUIRE(buffer.take(batch));
  const std::vector<std::string> lines = lines_of(batch);
  REQUIRE(lines.size() == 2);
  CHECK(ends_with(lines[0], R"( level=warn msg="log lines dropped" count=1)"));
  CHECK(lines[1] == std::string(9, 'c'));
}

TEST_CASE("log buffer: lines being written still take room until released") {
  LogBuffer buffer(100);
  const std::string line = line_of(60);
  CHECK(buffer.push(line));
  std::string batch;
  REQUIRE(buffer.take(batch));
  CHECK_FALSE(buffer.push(line));  // the 60 bytes taken are not written yet
  CHECK(buffer.dropped() == 1);
  buffer.release(batch.size());
  REQUIRE(buffer.take(batch));
  CHECK(ends_with(batch, R"( level=warn msg="log lines dropped" count=1)"
                         "\n"));
}

TEST_CASE("log buffer: one summary line counts the lines dropped, in the place they were") {
  LogBuffer buffer(200);
  CHECK(buffer.push(line_of(100, 'a')));
  CHECK(buffer.push(line_of(100, 'b')));
  for (int i = 0; i < 7; ++i) CHECK_FALSE(buffer.push(line_of(10, 'x')));
  std::string batch;
  REQUIRE(buffer.take(batch));
  CHECK(batch == line_of(100, 'a') + line_of(100, 'b'));
  buffer.release(batch.size());
  CHECK(buffer.push(line_of(10, 'c')));
  REQUIRE(buffer.take(batch));
  const std::vector<std::string> lines = lines_of(batch);
  REQUIRE(lines.size() == 2);
  CHECK(ends_with(lines[0], R"( level=warn msg="log lines dropped" count=7)"));
  CHECK(lines[1] == std::string(9, 'c'));
  CHECK(buffer.dropped() == 7);  // the total stays; the next summary counts only new drops
  buffer.release(batch.size());
  CHECK_FALSE(buffer.take(batch));
}

TEST_CASE("log buffer: drops counted exactly across threads") {
  LogBuffer buffer(100 * 100);
  constexpr int kThreads = 4;
  constexpr int kLines = 1000;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> accepted{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&buffer, &accepted] {
      for (int i = 0; i < kLines; ++i) {
        if (buffer.push(line_of(100))) accepted.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(accepted.load() == 100);
  CHECK(buffer.dropped() == kThreads * kLines - 100);
}

// ---- The writer thread ---------------------------------------------------------------------

TEST_CASE("log writer: lines of several threads arrive whole and in each thread's order") {
  Pipe pipe;
  std::string written;
  std::thread reader([&pipe, &written] { written = pipe.read_to_eof(); });
  constexpr int kThreads = 4;
  constexpr int kLines = 2500;
  {
    LogWriter writer(pipe.write_end);
    std::vector<std::thread> threads;
    threads.reserve(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&writer, t] {
        for (int i = 0; i < kLines; ++i)
          writer.push("thread " + std::to_string(t) + " line " + std::to_string(i) + "\n");
      });
    }
    for (auto& thread : threads) thread.join();
    CHECK(writer.dropped() == 0);  // 4 x 2500 lines of < 30 bytes fit in the buffer
  }
  pipe.close_write();
  reader.join();
  std::vector<int> next(kThreads, 0);
  int count = 0;
  for (const std::string& line : lines_of(written)) {
    int thread = -1;
    int number = -1;
    REQUIRE(std::sscanf(line.c_str(), "thread %d line %d", &thread, &number) == 2);
    REQUIRE(line == "thread " + std::to_string(thread) + " line " + std::to_string(number));
    CHECK(number == next[static_cast<size_t>(thread)]++);
    ++count;
  }
  CHECK(count == kThreads * kLines);
}

TEST_CASE("log writer: a stalled reader does not hold up the end (bounded flush)") {
  Pipe pipe;
  const size_t filled = pipe.fill();
  {
    LogWriter writer(pipe.write_end, fulcrum::kLogBufferBytes, milliseconds(100));
    writer.push("never read\n");
  }  // returns after the flush limit although the pipe stays full
  pipe.close_write();
  const std::string written = pipe.read_to_eof();
  CHECK(written.size() == filled);
  CHECK(written.find("never read") == std::string::npos);
}

TEST_CASE("log writer: a reader that is gone (EPIPE) neither kills nor holds up the process") {
  Pipe pipe;
  pipe.close_read();
  LogWriter writer(pipe.write_end, fulcrum::kLogBufferBytes, milliseconds(100));
  writer.push("to nobody\n");
}

// ---- The rate limit ------------------------------------------------------------------------

TEST_CASE("log rate limit: at most N lines a second, then the count of the others") {
  LogRateLimit limit(LogLevel::warn, "test message", 3);
  const auto t0 = steady_clock::time_point(seconds(1000));
  for (int i = 0; i < 3; ++i) {
    const auto verdict = limit.admit(t0 + milliseconds(100 * i));
    CHECK(verdict.write);
    CHECK(verdict.suppressed == 0);
  }
  for (int i = 0; i < 5; ++i) CHECK_FALSE(limit.admit(t0 + milliseconds(500 + i)).write);
  CHECK(limit.take_suppressed(t0 + milliseconds(999)) == 0);  // the window is not over

  // The first line of the next window carries the count of the suppressed ones.
  auto verdict = limit.admit(t0 + milliseconds(1200));
  CHECK(verdict.write);
  CHECK(verdict.suppressed == 5);
  CHECK(limit.admit(t0 + milliseconds(1300)).write);
  verdict = limit.admit(t0 + milliseconds(1400));
  CHECK(verdict.write);
  CHECK(verdict.suppressed == 0);
  CHECK_FALSE(limit.admit(t0 + milliseconds(1500)).write);
  CHECK_FALSE(limit.admit(t0 + milliseconds(1600)).write);

  // No further line: the count is taken once the window is over, and only once.
  CHECK(limit.take_suppressed(t0 + milliseconds(1999)) == 0);
  CHECK(limit.take_suppressed(t0 + milliseconds(2000)) == 2);
  CHECK(limit.take_suppressed(t0 + milliseconds(2500)) == 0);
  verdict = limit.admit(t0 + milliseconds(2600));
  CHECK(verdict.write);
  CHECK(verdict.suppressed == 0);
}

TEST_CASE("log rate limit: a late caller with an older time counts in the current window") {
  LogRateLimit limit(LogLevel::warn, "test message", 2);
  const auto t0 = steady_clock::time_point(seconds(1000));
  CHECK(limit.admit(t0 + seconds(1)).write);
  CHECK(limit.admit(t0).write);  // read the clock before the window turned
  CHECK_FALSE(limit.admit(t0).write);
  const auto verdict = limit.admit(t0 + seconds(2));
  CHECK(verdict.write);
  CHECK(verdict.suppressed == 1);
}

TEST_CASE("log rate limit: exact counts across threads") {
  LogRateLimit limit(LogLevel::warn, "test message", 10);
  const auto t0 = steady_clock::time_point(seconds(1000));
  constexpr int kThreads = 4;
  constexpr int kCalls = 10000;
  std::atomic<int> written{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCalls; ++i) {
        if (limit.admit(t0).write) written.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(written.load() == 10);
  CHECK(limit.take_suppressed(t0 + seconds(1)) == kThreads * kCalls - 10);
}

// ---- Quoting: one escaper for JSON, logfmt values and configuration errors -----------------

TEST_CASE("quote: JSON's escapes, every control character and DEL escaped") {
  CHECK(fulcrum::quote("plain") == "\"plain\"");
  CHECK(fulcrum::quote("a\"b\\c\nd\re\tf\x01g\x7fh\x1f") ==
        R"("a\"b\\c\nd\re\tf\u0001g\u007fh\u001f")");
  CHECK(fulcrum::quote("caf\xc3\xa9") == "\"caf\xc3\xa9\"");  // UTF-8 passes as it is
  CHECK(fulcrum::json_string("x\ny") == fulcrum::quote("x\ny"));
}

TEST_CASE("log format: values quoted only when needed, escaped as in JSON") {
  const std::string line = fulcrum::Log::format(LogLevel::info, "event",
                                                {{"plain", "web"},
                                                 {"spaced", "a b"},
                                                 {"equals", "a=b"},
                                                 {"quote", "say \"hi\""},
                                                 {"backslash", "C:\\x"},
                                                 {"empty", ""},
                                                 {"control", "a\nb\x01"},
                                                 {"del", "x\x7f"},
                                                 {"utf8", "caf\xc3\xa9"},
                                                 {"number", 42}});
  CHECK(ends_with(
      line, R"( level=info msg="event" plain=web spaced="a b" equals="a=b" quote="say \"hi\"")"
            R"( backslash="C:\\x" empty="" control="a\nb\u0001" del="x\u007f")"
            " utf8=caf\xc3\xa9 number=42\n"));
}

namespace {

// The milliseconds since the epoch of an RFC 3339 UTC time with
// milliseconds (2026-12-03T12:00:00.123Z), or -1 if `text` is not one.
int64_t rfc3339_millis(const std::string& text) {
  std::tm utc{};
  int millis = -1;
  int consumed = 0;
  if (text.size() != 24 ||
      std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &utc.tm_year, &utc.tm_mon,
                  &utc.tm_mday, &utc.tm_hour, &utc.tm_min, &utc.tm_sec, &millis, &consumed) != 7 ||
      consumed != 24) {
    return -1;
  }
  utc.tm_year -= 1900;
  utc.tm_mon -= 1;
  return static_cast<int64_t>(::timegm(&utc)) * 1000 + millis;
}

int64_t now_millis() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// JOURNAL_STREAM set (or not) for the lifetime of the object, then as before.
class JournalStream {
 public:
  explicit JournalStream(bool set) {
    if (const char* value = std::getenv("JOURNAL_STREAM")) saved_ = value;
    if (set) {
      ::setenv("JOURNAL_STREAM", "8:12345", 1);
    } else {
      ::unsetenv("JOURNAL_STREAM");
    }
    fulcrum::Log::init();
  }
  ~JournalStream() {
    if (saved_) {
      ::setenv("JOURNAL_STREAM", saved_->c_str(), 1);
    } else {
      ::unsetenv("JOURNAL_STREAM");
    }
    fulcrum::Log::init();
  }
  JournalStream(const JournalStream&) = delete;
  JournalStream& operator=(const JournalStream&) = delete;

 private:
  std::optional<std::string> saved_;
};

}  // namespace

TEST_CASE("log format: ts, level and msg first, the fields after them, one line") {
  const JournalStream plain(false);
  const int64_t before = now_millis();
  const std::string line = fulcrum::Log::format(
      LogLevel::warn, "server down", {{"service", "web"}, {"reason", "connect refused"}});
  const int64_t after = now_millis();
  INFO("line: " << line);
  REQUIRE(line.size() > 28);
  CHECK(line.substr(0, 3) == "ts=");
  const int64_t stamp = rfc3339_millis(line.substr(3, 24));
  CHECK(stamp >= before);
  CHECK(stamp <= after);
  CHECK(line.substr(27) == R"( level=warn msg="server down" service=web reason="connect refused")"
                           "\n");
}

TEST_CASE("log format: the message is always quoted and escaped like a value") {
  const JournalStream plain(false);
  CHECK(ends_with(fulcrum::Log::format(LogLevel::info, "stopped", {}),
                  R"( level=info msg="stopped")"
                  "\n"));
  CHECK(ends_with(fulcrum::Log::format(LogLevel::debug, "a \"b\"\n", {{"k", "v"}}),
                  R"( level=debug msg="a \"b\"\n" k=v)"
                  "\n"));
}

TEST_CASE("log format: under journald, the syslog priority and then the same logfmt line") {
  const JournalStream journal(true);
  const struct {
    LogLevel level;
    const char* prefix;
  } cases[] = {{LogLevel::error, "<3>ts="},
               {LogLevel::warn, "<4>ts="},
               {LogLevel::info, "<6>ts="},
               {LogLevel::debug, "<7>ts="}};
  for (const auto& c : cases) {
    const std::string line = fulcrum::Log::format(c.level, "reloaded", {{"generation", 2}});
    INFO("line: " << line);
    CHECK(line.substr(0, 6) == c.prefix);
    CHECK(rfc3339_millis(line.substr(6, 24)) > 0);
    CHECK(line.substr(30) == " level=" + std::string(fulcrum::to_string(c.level)) +
                                 R"( msg="reloaded" generation=2)" + "\n");
  }
}

TEST_CASE("log format: without JOURNAL_STREAM no priority prefix") {
  const JournalStream plain(false);
  CHECK(fulcrum::Log::format(LogLevel::error, "cannot start", {}).substr(0, 3) == "ts=");
}

// ---- libevent's own messages -----------------------------------------------------------

namespace {

// What `action` writes to stderr (fd 2), through a pipe.
template <typename Action>
std::string stderr_of(Action action) {
  Pipe pipe;
  const int saved = ::dup(STDERR_FILENO);
  REQUIRE(saved >= 0);
  REQUIRE(::dup2(pipe.write_end, STDERR_FILENO) == STDERR_FILENO);
  action();
  std::fflush(stderr);
  REQUIRE(::dup2(saved, STDERR_FILENO) == STDERR_FILENO);
  ::close(saved);
  pipe.close_write();
  return pipe.read_to_eof();
}

}  // namespace

TEST_CASE("libevent's warnings are log lines, not its own stderr output") {
  fulcrum::Log::init();
  // libevent warns when asked to free no base (and there is no current one).
  const std::string written = stderr_of([] { event_base_free(nullptr); });
  INFO("stderr: " << written);
  CHECK(ends_with(written,
                  R"( level=warn msg="libevent" message="event_base_free_: no base to free")"
                  "\n"));
  CHECK(lines_of(written).size() == 1);
}

TEST_CASE("LogBuffer::wait_written: true once every line queued before the call is released") {
  LogBuffer buffer(1024);
  const auto soon = [] { return std::chrono::steady_clock::now() + std::chrono::milliseconds(20); };
  CHECK(buffer.wait_written(soon()));  // nothing queued
  buffer.push("one\n");
  CHECK_FALSE(buffer.wait_written(soon()));
  std::string batch;
  REQUIRE(buffer.take(batch));
  CHECK_FALSE(buffer.wait_written(soon()));  // taken, not yet written
  buffer.release(batch.size());
  CHECK(buffer.wait_written(soon()));
}

TEST_CASE("log rate limit: the summary is a `log lines suppressed` line naming the message") {
  const JournalStream plain(false);
  LogRateLimit limit(LogLevel::warn, "test summary message", 1);
  const auto t0 = steady_clock::time_point(seconds(1000));
  CHECK(limit.admit(t0).write);
  CHECK_FALSE(limit.admit(t0).write);
  CHECK_FALSE(limit.admit(t0).write);
  const std::string written =
      stderr_of([t0] { LogRateLimit::write_due_summaries(t0 + seconds(1)); });
  INFO("stderr: " << written);
  CHECK(lines_of(written).size() == 1);
  CHECK(ends_with(written,
                  R"( level=warn msg="log lines suppressed" message="test summary message" count=2)"
                  "\n"));
}
