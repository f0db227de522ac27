// The log writer thread (see fulcrum/log.hpp): the bounded buffer between
// the threads that log and the thread that writes to stderr.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "fulcrum/log.hpp"

namespace fulcrum {

// Log lines held in memory at most: about 5000 lines of 200 bytes, or half
// a second of a heavy access log, before lines are dropped.
inline constexpr size_t kLogBufferBytes = 1 << 20;
// At exit, how long the writer may try to write what is still queued: a
// stalled reader must not hold up a stop, and a dead one fails at once.
inline constexpr std::chrono::milliseconds kLogFlushLimit{2000};

// The bounded queue between the threads that log and the one that writes.
// Any thread may push(); one writer thread takes batches and releases them
// once written. Bytes taken count against the capacity until released, so
// the lines held in memory never exceed `capacity` bytes in all.
class LogBuffer {
 public:
  explicit LogBuffer(size_t capacity) : capacity_(capacity) {}

  // Any thread. Queues `line` (a whole line, its newline included) after
  // the lines queued before it, or drops and counts it when it does not fit.
  // Holds the lock only to copy the line: it never waits for the writer.
  // Returns whether the line was queued.
  bool push(std::string_view line);
  // The writer: moves every queued byte into `batch` (replacing what it
  // held). False when nothing is queued.
  bool take(std::string& batch);
  // The writer: `bytes` taken earlier are written (or given up); their room
  // is free again. Lines dropped since the last summary are counted here,
  // by one `log lines dropped count=N` warning queued before any later line.
  void release(size_t bytes);
  // The writer: waits until a line is queued, poke() or stop() is called,
  // or `until` (time_point::max(): no time limit).
  void wait(std::chrono::steady_clock::time_point until);
  // Any thread: waits until every line queued before the call is written
  // (or given up), at most until `until`. True when it was.
  bool wait_written(std::chrono::steady_clock::time_point until);
  // Ends the writer's current wait().
  void poke();
  // Wakes the writer for good: wait() no longer waits.
  void stop();
  // Lines dropped since construction, for /stats and /metrics.
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  // Queues the `log lines dropped` summary if it fits. With the lock held.
  void queue_drop_summary();

  const size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable written_;  // release() ran: for wait_written()
  uint64_t queued_total_ = 0;        // bytes ever queued
  uint64_t released_total_ = 0;      // bytes ever released by the writer
  std::string queued_;
  size_t used_ = 0;              // queued_ plus bytes taken and not released
  uint64_t pending_drops_ = 0;   // dropped since the last summary
  bool writer_waiting_ = false;  // notify only when someone waits
  bool poked_ = false;
  bool stopped_ = false;
  std::atomic<uint64_t> dropped_{0};
};

// A thread that writes the lines pushed to it to `fd` with write(2), in
// order, never a line cut by another. The descriptor stays as it is
// (blocking; stderr's file description is shared with the parent or
// journald): the thread waits for POLLOUT, then writes at most PIPE_BUF
// bytes, which a pipe or socket that reported room takes without blocking
// (unless another process sharing it fills it in between), so that the
// thread can give up at exit.
// Destruction writes what is queued for at most `flush_limit`, then joins.
class LogWriter {
 public:
  explicit LogWriter(int fd, size_t capacity = kLogBufferBytes,
                     std::chrono::milliseconds flush_limit = kLogFlushLimit);
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  void push(std::string_view line) { buffer_.push(line); }
  // Waits at most `limit` for the lines pushed so far to be written.
  bool flush(std::chrono::milliseconds limit) {
    return buffer_.wait_written(std::chrono::steady_clock::now() + limit);
  }
  uint64_t dropped() const { return buffer_.dropped(); }
  // A LogRateLimit suppressed a line: summaries are due once its window
  // ends, so the thread wakes every tick until they are written.
  void summaries_due();

 private:
  void run();
  // Writes `batch` whole, or gives up: at the deadline once stopping, or
  // when the descriptor fails.
  void write_batch(const std::string& batch);

  const int fd_;
  const std::chrono::milliseconds flush_limit_;
  LogBuffer buffer_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> deadline_ns_{0};  // steady clock, valid once stopping_
  std::atomic<bool> summaries_due_{false};
  std::thread thread_;
};

// While it lives, Log::write hands every line to a LogWriter thread on
// stderr; before and after, lines are written directly (start-up errors,
// tests). Construct it before any other thread logs and destroy it after
// the last of them has stopped.
class StderrLogWriter {
 public:
  StderrLogWriter();
  ~StderrLogWriter();
  StderrLogWriter(const StderrLogWriter&) = delete;
  StderrLogWriter& operator=(const StderrLogWriter&) = delete;

 private:
  LogWriter writer_;
};

}  // namespace fulcrum
