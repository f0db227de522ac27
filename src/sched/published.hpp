// A value rebuilt by the main thread and read by every worker, without a
// lock on the read path: each worker keeps its own reference (on its own
// cache line) and only refreshes it when the published version moved. The
// old value is freed when the last worker has let go of it.
#pragma once

#include <atomic>
#include <cassert>
#include <memory>
#include <mutex>
#include <vector>

namespace fulcrum {

template <typename T>
class Published {
 public:
  Published(unsigned readers, std::shared_ptr<const T> initial)
      : current_(std::move(initial)), caches_(readers == 0 ? 1 : readers) {}

  // Main thread.
  void publish(std::shared_ptr<const T> next) {
    std::lock_guard lock(mutex_);
    current_ = std::move(next);
    version_.fetch_add(1, std::memory_order_release);
  }

  // Reader `reader` (a worker index): one acquire load in the common case;
  // the mutex only once per reader after each publish. The reference stays
  // valid until this reader's next read().
  const T& read(unsigned reader) {
    assert(reader < caches_.size());
    Cache& cache = caches_[reader];
    const uint64_t version = version_.load(std::memory_order_acquire);
    if (cache.version != version) {
      std::lock_guard lock(mutex_);
      cache.value = current_;
      cache.version = version_.load(std::memory_order_relaxed);
    }
    return *cache.value;
  }

 private:
  struct alignas(64) Cache {
    uint64_t version = 0;
    std::shared_ptr<const T> value;
  };
  std::atomic<uint64_t> version_{1};
  std::mutex mutex_;
  std::shared_ptr<const T> current_;
  std::vector<Cache> caches_;
};

}  // namespace fulcrum
