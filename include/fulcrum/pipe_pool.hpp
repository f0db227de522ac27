// Pipes for splice(2), pooled per worker. A session direction borrows a pipe
// only while bytes are in flight and gives it back once it is empty, so an
// idle session holds no pipe at all (two descriptors: its sockets).
#pragma once

#include <cstddef>
#include <vector>

#include "fulcrum/admission.hpp"
#include "fulcrum/fd.hpp"

namespace fulcrum {

class PipePool;

// A borrowed pipe and the number of bytes sitting in it. Returning to the
// pool happens in the destructor (RAII); a pipe that still holds bytes is
// closed instead of pooled.
class PipeLease {
 public:
  PipeLease() = default;
  PipeLease(PipeLease&& other) noexcept;
  PipeLease& operator=(PipeLease&& other) noexcept;
  PipeLease(const PipeLease&) = delete;
  PipeLease& operator=(const PipeLease&) = delete;
  ~PipeLease() { give_back(); }

  explicit operator bool() const { return pool_ != nullptr; }
  int read_fd() const { return read_end_.get(); }
  int write_fd() const { return write_end_.get(); }
  // What the pipe holds: the size asked for, or less where the kernel
  // refused it (pipe-max-size, the per-user pipe page limits).
  size_t capacity() const { return capacity_; }
  size_t bytes = 0;  // spliced in, not yet spliced out

  // Writes `size` bytes into the pipe; true when all of them went in. What
  // the pipe took is added to `bytes` also when it is only a part (a page
  // allocation failed half way: ENOMEM, the memory cgroup's limit), so that
  // a pipe left holding bytes is closed by give_back(), never pooled for
  // another session to read them.
  bool fill(const char* data, size_t size);
  void give_back();

 private:
  friend class PipePool;
  PipePool* pool_ = nullptr;
  Fd read_end_;
  Fd write_end_;
  size_t capacity_ = 0;
};

class PipePool {
 public:
  // `pipe_size`: requested capacity (F_SETPIPE_SZ); `max_idle`: pipes kept
  // for reuse, beyond which returned pipes are closed (as they are while the
  // descriptor budget is spent).
  PipePool(Admission& admission, size_t pipe_size, size_t max_idle);
  ~PipePool();
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // An empty lease when no pipe can be had (descriptor budget or pipe2()
  // failure); the caller waits and tries again.
  PipeLease acquire();
  // A pipe carried over by a binary upgrade, holding `bytes`: leased out
  // at once, its descriptors taken from the budget whatever it holds.
  PipeLease adopt(Fd read_end, Fd write_end, size_t capacity, size_t bytes);
  // Closes every idle pipe, giving its descriptors back to the budget.
  void trim();
  size_t idle_count() const { return idle_.size(); }

 private:
  friend class PipeLease;
  struct IdlePipe {
    Fd read_end;
    Fd write_end;
    size_t capacity;
  };
  void put_back(Fd read_end, Fd write_end, size_t capacity, bool empty);

  Admission& admission_;
  size_t pipe_size_;
  size_t max_idle_;
  std::vector<IdlePipe> idle_;
};

}  // namespace fulcrum
