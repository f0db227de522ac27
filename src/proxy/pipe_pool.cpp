#include "fulcrum/pipe_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <utility>

namespace fulcrum {

PipeLease::PipeLease(PipeLease&& other) noexcept
    : bytes(std::exchange(other.bytes, 0)),
      pool_(std::exchange(other.pool_, nullptr)),
      read_end_(std::move(other.read_end_)),
      write_end_(std::move(other.write_end_)),
      capacity_(std::exchange(other.capacity_, 0)) {}

PipeLease& PipeLease::operator=(PipeLease&& other) noexcept {
  if (this != &other) {
    give_back();
    bytes = std::exchange(other.bytes, 0);
    pool_ = std::exchange(other.pool_, nullptr);
    read_end_ = std::move(other.read_end_);
    write_end_ = std::move(other.write_end_);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

bool PipeLease::fill(const char* data, size_t size) {
  const ssize_t written = ::write(write_fd(), data, size);
  if (written > 0) bytes += static_cast<size_t>(written);
  return written == static_cast<ssize_t>(size);
}

void PipeLease::give_back() {
  if (pool_ == nullptr) return;
  std::exchange(pool_, nullptr)
      ->put_back(std::move(read_end_), std::move(write_end_), capacity_, bytes == 0);
  bytes = 0;
}

PipePool::PipePool(Admission& admission, size_t pipe_size, size_t max_idle)
    : admission_(admission), pipe_size_(pipe_size), max_idle_(max_idle) {}

PipePool::~PipePool() { trim(); }

PipeLease PipePool::acquire() {
  PipeLease lease;
  if (!idle_.empty()) {
    lease.read_end_ = std::move(idle_.back().read_end);
    lease.write_end_ = std::move(idle_.back().write_end);
    lease.capacity_ = idle_.back().capacity;
    idle_.pop_back();
    lease.pool_ = this;
    return lease;
  }
  if (!admission_.try_take_fds(2)) return lease;
  int ends[2];
  if (::pipe2(ends, O_NONBLOCK | O_CLOEXEC) != 0) {
    admission_.give_fds(2);
    return lease;
  }
  lease.read_end_.reset(ends[0]);
  lease.write_end_.reset(ends[1]);
  // Best effort: past /proc/sys/fs/pipe-max-size or the per-user pipe page
  // limit the kernel refuses, and the pipe keeps the size it has.
  int capacity = ::fcntl(ends[1], F_SETPIPE_SZ, static_cast<int>(pipe_size_));
  if (capacity <= 0) capacity = ::fcntl(ends[1], F_GETPIPE_SZ);
  lease.capacity_ = capacity > 0 ? static_cast<size_t>(capacity) : 4096;
  lease.pool_ = this;
  return lease;
}

void PipePool::trim() {
  if (idle_.empty()) return;
  const auto count = static_cast<int64_t>(2 * idle_.size());
  idle_.clear();
  admission_.give_fds(count);
}

// Keeps an empty pipe for reuse, unless the budget is out of the two
// descriptors a new session needs: then a listener may be paused waiting for
// them, and closing the pipe (give_fds) admits a client instead of parking
// its descriptors in the pool until some session ends.
PipeLease PipePool::adopt(Fd read_end, Fd write_end, size_t capacity, size_t bytes) {
  admission_.take_carried_fds(2);
  PipeLease lease;
  lease.read_end_ = std::move(read_end);
  lease.write_end_ = std::move(write_end);
  lease.capacity_ = capacity;
  lease.bytes = bytes;
  lease.pool_ = this;
  return lease;
}

void PipePool::put_back(Fd read_end, Fd write_end, size_t capacity, bool empty) {
  if (empty && idle_.size() < max_idle_ && admission_.free_fds() >= 2) {
    idle_.push_back(IdlePipe{std::move(read_end), std::move(write_end), capacity});
    return;
  }
  read_end.reset();
  write_end.reset();
  admission_.give_fds(2);
}

}  // namespace fulcrum
