// A reader's window on its file: the bytes read but not yet delivered, which batches view.
#pragma once

#include <snaptail/detail/window_pool.hpp>
#include <snaptail/tail_options.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

namespace snaptail::detail {

// Reads are large so that syscalls stay rare, and small enough that a chunk is framed while
// it is still in cache. (Tests may shrink it to put many read boundaries in small files.)
#ifdef SNAPTAIL_TEST_READ_CHUNK_BYTES
inline constexpr std::size_t read_chunk_bytes = SNAPTAIL_TEST_READ_CHUNK_BYTES;
#else
inline constexpr std::size_t read_chunk_bytes = std::size_t{256} << 10;
#endif
// Past this far into the window, framing pauses after a cut so that the rest moves to the
// front: a small working set stays in cache.
inline constexpr std::size_t compact_after_bytes = std::size_t{1} << 20;

/// [0, hold_) is free again, [hold_, scan_) is framed into batches not yet delivered,
/// [scan_, end_) is read but not framed (an incomplete line, or bytes a pause left). With parse
/// threads, reading may wrap below the batch in flight: [high_begin_, high_end_) is then held
/// by that batch (`high_job_`) until it is delivered, and reads stop below it. line_padding
/// readable bytes follow the capacity, so the last line of a full window has its padding too.
/// Not thread-safe: owned by its reader (parse threads only read lines in it).
class ReadWindow {
  public:
    /// Holds no buffer until ensure().
    explicit ReadWindow(WindowPool& pool) noexcept : pool_(&pool), capacity_(pool.window_bytes()) {}
    ReadWindow(const ReadWindow&) = delete;
    ReadWindow& operator=(const ReadWindow&) = delete;
    ~ReadWindow() { release(); }

    /// Borrows a buffer from the pool if the window has none. False when every window is lent
    /// (the reader waits for budget). Throws std::bad_alloc.
    bool ensure() {
        if (!buffer_) {
            buffer_ = pool_->acquire();
        }
        return static_cast<bool>(buffer_);
    }
    bool has_buffer() const noexcept { return static_cast<bool>(buffer_); }

    /// Gives the buffer back to the pool, emptying the window (what was read but not framed is
    /// read again from the file). Only when nothing framed is pending.
    void release() noexcept {
        reset(base_offset_ + scan_);
        pool_->give_back(std::move(buffer_));
    }

    char* data() noexcept { return buffer_.get(); }
    const char* data() const noexcept { return buffer_.get(); }
    std::size_t capacity() const noexcept { return capacity_; }

    /// Where reads must stop: the capacity, or below a wrapped-over batch.
    std::size_t read_limit() const noexcept {
        return high_job_ != nullptr ? high_begin_ : capacity_;
    }
    /// Bytes read but not delivered.
    std::size_t pending_bytes() const noexcept {
        return end_ - hold_ + (high_job_ != nullptr ? high_end_ - high_begin_ : 0);
    }
    std::string_view unframed() const noexcept {
        return std::string_view(buffer_.get() + scan_, end_ - scan_);
    }

    bool wrapped() const noexcept { return high_job_ != nullptr; }
    bool is_wrapped_job(const void* job) const noexcept { return job == high_job_; }
    /// `job` was delivered: if it was the wrapped-over batch, the window above is free again.
    void unwrap_if(const void* job) noexcept {
        if (job == high_job_) {
            high_job_ = nullptr;
        }
    }

    /// Moves the unframed rest to the front; only when nothing framed is pending.
    void compact() noexcept {
        if (scan_ > 0) {
            std::memmove(buffer_.get(), buffer_.get() + scan_, end_ - scan_);
            base_offset_ += scan_;
            end_ -= scan_;
            scan_ = 0;
            hold_ = 0;
        }
    }

    /// Moves the unframed rest to the front below the batch `job` that holds [hold_, scan_),
    /// when there is room for it and `reserve` bytes more: reads go on there. The job's hold
    /// becomes 0 (the caller sets it). False when there is no room.
    bool wrap_below(const void* job, std::size_t reserve) noexcept {
        if (high_job_ != nullptr) {
            return false;
        }
        const std::size_t rest = end_ - scan_;
        const std::size_t batch = scan_ - hold_;
        if (hold_ < rest + batch + reserve) {
            return false;
        }
        std::memmove(buffer_.get(), buffer_.get() + scan_, rest);
        high_job_ = job;
        high_begin_ = hold_;
        high_end_ = scan_;
        base_offset_ += scan_;
        end_ = rest;
        scan_ = 0;
        hold_ = 0;
        return true;
    }

    /// Empties the window; its byte 0 is `file_offset` in the file.
    void reset(std::uint64_t file_offset) noexcept {
        high_job_ = nullptr;
        base_offset_ = file_offset;
        hold_ = scan_ = end_ = 0;
    }

    std::uint64_t base_offset_{0};  // file offset of data()[0]
    std::size_t hold_{0};
    std::size_t scan_{0};
    std::size_t end_{0};

  private:
    WindowPool* pool_;
    std::size_t capacity_;
    std::unique_ptr<char[]> buffer_;
    const void* high_job_{nullptr};  // the batch in flight above a wrap
    std::size_t high_begin_{0};      // the part of the window it holds
    std::size_t high_end_{0};
};

}  // namespace snaptail::detail
