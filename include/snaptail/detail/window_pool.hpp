// The tailer's read-ahead budget: read_ahead_bytes in all, lent to readers as whole windows and
// recycled, so that memory stays within the budget whatever the number of files.
#pragma once

#include <snaptail/tail_options.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace snaptail::detail {

/// Lends `windows` windows of budget / windows bytes each (plus line_padding readable bytes
/// after each). A reader holds one while it has lines read but not delivered, and gives it back
/// when it rests; with one window (a single file) its reader keeps it. Buffers are allocated on
/// first use and recycled: no allocation in steady state. Not thread-safe: the tailer's thread.
class WindowPool {
  public:
    /// Allocates nothing yet.
    WindowPool(std::size_t budget, std::size_t windows) noexcept
        : window_bytes_(budget / std::max<std::size_t>(windows, 1)),
          windows_(std::max<std::size_t>(windows, 1)) {}

    WindowPool(const WindowPool&) = delete;
    WindowPool& operator=(const WindowPool&) = delete;

    /// The size of every window, padding not included.
    std::size_t window_bytes() const noexcept { return window_bytes_; }
    /// Whether several readers share the budget (a reader that is not being read rests).
    bool shared() const noexcept { return windows_ > 1; }

    /// A window's buffer, or nullptr when every window is lent (counted as a wait). Allocates
    /// at most `windows` times in the pool's life; throws std::bad_alloc.
    std::unique_ptr<char[]> acquire() {
        std::unique_ptr<char[]> buffer;
        if (!free_.empty()) {
            buffer = std::move(free_.back());
            free_.pop_back();
        } else if (allocated_ < windows_) {
            buffer = std::make_unique_for_overwrite<char[]>(window_bytes_ + line_padding);
            std::memset(buffer.get() + window_bytes_, 0, line_padding);
            ++allocated_;
        } else {
            ++waits_;
            return nullptr;
        }
        ++lent_;
        high_water_ = std::max(high_water_, lent_ * window_bytes_);
        return buffer;
    }

    /// Takes a window back for the next reader. Never allocates beyond the first `windows`
    /// returns (the free list's capacity).
    void give_back(std::unique_ptr<char[]> buffer) noexcept {
        if (!buffer) {
            return;
        }
        --lent_;
        try {
            free_.push_back(std::move(buffer));
        } catch (...) {
            --allocated_;  // out of memory for the list: let it go, it is allocated again
        }
    }

    /// Most bytes of windows lent at once.
    std::size_t high_water() const noexcept { return high_water_; }
    /// Times a reader found every window lent and waited for one.
    std::uint64_t waits() const noexcept { return waits_; }

  private:
    std::size_t window_bytes_;
    std::size_t windows_;
    std::size_t allocated_{0};
    std::size_t lent_{0};
    std::size_t high_water_{0};
    std::uint64_t waits_{0};
    std::vector<std::unique_ptr<char[]>> free_;
};

}  // namespace snaptail::detail
