#include "fulcrum/log_writer.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "fulcrum/signals.hpp"

namespace fulcrum {

namespace {

// Room a `log lines dropped` line needs at most (journald's `<4>`, ts,
// level, msg and a 20-digit count: 93 bytes): below it the summary is not
// even formatted.
constexpr size_t kDropSummaryMax = 96;
// How often the writer looks again while its descriptor is not writable
// (for the exit deadline) and while rate-limit summaries are pending.
constexpr std::chrono::milliseconds kTick{200};

int64_t to_ns(std::chrono::steady_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
}

}  // namespace

bool LogBuffer::push(std::string_view line) {
  std::unique_lock lock(mutex_);
  // Writing resumed (nothing queued or being written) since lines were
  // dropped: they are counted first. Otherwise release() does that once
  // room is made, and until then no line overtakes the dropped ones.
  if (pending_drops_ > 0 && used_ == 0) queue_drop_summary();
  if (pending_drops_ > 0 || used_ + line.size() > capacity_) {
    ++pending_drops_;
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  queued_ += line;
  used_ += line.size();
  queued_total_ += line.size();
  const bool wake = writer_waiting_;
  lock.unlock();
  if (wake) wake_.notify_one();
  return true;
}

bool LogBuffer::take(std::string& batch) {
  const std::lock_guard lock(mutex_);
  if (queued_.empty()) return false;
  // Swapped, not copied: both strings keep their capacity, so a writer in
  // steady state allocates nothing.
  batch.clear();
  batch.swap(queued_);
  return true;
}

void LogBuffer::release(size_t bytes) {
  {
    const std::lock_guard lock(mutex_);
    used_ -= std::min(bytes, used_);
    released_total_ += bytes;
    if (pending_drops_ > 0) queue_drop_summary();
  }
  written_.notify_all();
}

bool LogBuffer::wait_written(std::chrono::steady_clock::time_point until) {
  std::unique_lock lock(mutex_);
  const uint64_t target = queued_total_;
  return written_.wait_until(lock, until, [&] { return released_total_ >= target; });
}

void LogBuffer::queue_drop_summary() {
  if (used_ + kDropSummaryMax > capacity_) return;
  const std::string summary =
      Log::format(LogLevel::warn, "log lines dropped", {{"count", pending_drops_}});
  queued_ += summary;
  used_ += summary.size();
  queued_total_ += summary.size();
  pending_drops_ = 0;
}

void LogBuffer::wait(std::chrono::steady_clock::time_point until) {
  std::unique_lock lock(mutex_);
  const auto ready = [this] { return !queued_.empty() || stopped_ || poked_; };
  writer_waiting_ = true;
  if (until == std::chrono::steady_clock::time_point::max()) {
    wake_.wait(lock, ready);
  } else {
    wake_.wait_until(lock, until, ready);
  }
  writer_waiting_ = false;
  poked_ = false;
}

void LogBuffer::poke() {
  std::unique_lock lock(mutex_);
  poked_ = true;
  const bool wake = writer_waiting_;
  lock.unlock();
  if (wake) wake_.notify_one();
}

void LogBuffer::stop() {
  {
    const std::lock_guard lock(mutex_);
    stopped_ = true;
  }
  wake_.notify_one();
}

LogWriter::LogWriter(int fd, size_t capacity, std::chrono::milliseconds flush_limit)
    : fd_(fd), flush_limit_(flush_limit), buffer_(capacity) {
  // SIGPIPE from a reader that is gone becomes EPIPE.
  thread_ = thread_without_signals([this] { run(); });
}

LogWriter::~LogWriter() {
  deadline_ns_.store(to_ns(std::chrono::steady_clock::now() + flush_limit_),
                     std::memory_order_relaxed);
  stopping_.store(true, std::memory_order_release);
  buffer_.stop();
  thread_.join();
}

void LogWriter::summaries_due() {
  if (!summaries_due_.exchange(true)) buffer_.poke();
}

void LogWriter::run() {
  std::string batch;
  while (true) {
    buffer_.wait(summaries_due_.load() ? std::chrono::steady_clock::now() + kTick
                                       : std::chrono::steady_clock::time_point::max());
    const bool stopping = stopping_.load(std::memory_order_acquire);
    if (!stopping && summaries_due_.exchange(false) &&
        LogRateLimit::write_due_summaries(std::chrono::steady_clock::now())) {
      summaries_due_.store(true);
    }
    if (buffer_.take(batch)) {
      write_batch(batch);
      buffer_.release(batch.size());
    } else if (stopping) {
      return;
    }
  }
}

void LogWriter::write_batch(const std::string& batch) {
  size_t done = 0;
  while (done < batch.size()) {
    // Whole lines up to PIPE_BUF bytes (a longer line in PIPE_BUF pieces):
    // after POLLOUT a pipe takes that much without blocking, and a write
    // given up at exit ends at a line's end.
    size_t length = std::min<size_t>(PIPE_BUF, batch.size() - done);
    if (done + length < batch.size()) {
      const size_t end = batch.rfind('\n', done + length - 1);
      if (end != std::string::npos && end >= done) length = end + 1 - done;
    }
    auto timeout = kTick;
    if (stopping_.load(std::memory_order_acquire)) {
      const int64_t left =
          deadline_ns_.load(std::memory_order_relaxed) - to_ns(std::chrono::steady_clock::now());
      if (left <= 0) return;
      timeout = std::min(
          timeout, std::chrono::ceil<std::chrono::milliseconds>(std::chrono::nanoseconds(left)));
    }
    pollfd writable{fd_, POLLOUT, 0};
    const int ready = ::poll(&writable, 1, static_cast<int>(timeout.count()));
    if (ready < 0 && errno != EINTR) return;
    if (ready <= 0) continue;
    if ((writable.revents & POLLNVAL) != 0) return;
    const ssize_t n = ::write(fd_, batch.data() + done, length);
    if (n < 0) {
      // EAGAIN: someone made the shared file description non-blocking;
      // poll() waits for room again. Anything else (EPIPE: the reader is
      // gone): nobody will read these lines.
      if (errno == EINTR || errno == EAGAIN) continue;
      return;
    }
    done += static_cast<size_t>(n);
  }
}

StderrLogWriter::StderrLogWriter() : writer_(STDERR_FILENO) {
  Log::writer_.store(&writer_, std::memory_order_release);
}

StderrLogWriter::~StderrLogWriter() { Log::writer_.store(nullptr, std::memory_order_release); }

}  // namespace fulcrum
