// A lock for critical sections of a few nanoseconds, and a per-thread number that spreads
// threads over shards.
#pragma once

#include <atomic>
#include <cstddef>
#include <thread>

namespace snaptail::detail {

// Two cache lines: some CPUs fetch lines in pairs, so data written by different threads is
// kept this far apart.
inline constexpr std::size_t false_sharing_range = 128;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// A lock taken with one atomic exchange and released with a plain store. A push holds its
// shard's lock for a few nanoseconds, and std::mutex (two atomic read-modify-writes plus calls
// into the C library) would cost as much as the rest of the push. Waiters spin briefly, then
// yield the CPU: the holder may have been preempted, and the machine may have fewer cores than
// threads. Only for short critical sections that never wait.
class SpinLock {
  public:
    void lock() noexcept {
        if (locked_.exchange(true, std::memory_order_acquire)) {
            lock_contended();
        }
    }

    bool try_lock() noexcept {
        return !locked_.load(std::memory_order_relaxed) &&
               !locked_.exchange(true, std::memory_order_acquire);
    }

    void unlock() noexcept { locked_.store(false, std::memory_order_release); }

  private:
    [[gnu::noinline]] void lock_contended() noexcept {
        do {
            for (unsigned spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
                if (spins < 64) {
                    cpu_relax();
                } else {
                    std::this_thread::yield();
                }
            }
        } while (locked_.exchange(true, std::memory_order_acquire));
    }

    std::atomic<bool> locked_{false};
};

// A number of the calling thread, fixed for its lifetime and distinct from other threads'
// (threads that start one after the other get consecutive numbers). A thread always uses the
// same shard of a buffer, which is what keeps its items in order.
inline std::size_t this_thread_slot() noexcept {
    static std::atomic<std::size_t> next{0};
    constexpr std::size_t unset = ~std::size_t{0};
    thread_local std::size_t slot = unset;  // constant-initialised: no TLS init guard
    if (slot == unset) {
        slot = next.fetch_add(1, std::memory_order_relaxed);
    }
    return slot;
}

}  // namespace snaptail::detail
