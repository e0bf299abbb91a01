// One followed file: its descriptor and identity, its read window, framing state, line count
// and positions. Many readers feed one BatchPipeline; a batch's lines view its reader's window.
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/detail/followed_file.hpp>
#include <snaptail/detail/read_window.hpp>
#include <snaptail/detail/reporter.hpp>
#include <snaptail/detail/rotated_files.hpp>
#include <snaptail/line_framer.hpp>
#include <snaptail/position.hpp>
#include <snaptail/tail_options.hpp>
#include <snaptail/tailer_stats.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace snaptail::detail {

/// Reads one file into its window and frames it into the pipeline's batches. `Pipeline` is a
/// BatchPipeline; the reader calls it per line (add), to cut batches, and for backpressure
/// (flush when the window is full). Not thread-safe: owned by the tailer's thread.
class FileReader {
  public:
    /// No buffer yet (it borrows one from `windows` when it reads) and no file open.
    FileReader(const TailOptions& options, std::string path, TailerStats& totals,
               Reporter& reporter, WindowPool& windows)
        : options_(options),
          path_text_(std::move(path)),
          totals_(totals),
          reporter_(reporter),
          framer_(options.max_line_bytes, options.long_lines, options.strip_cr),
          window_(windows) {}

    FileReader(const FileReader&) = delete;
    FileReader& operator=(const FileReader&) = delete;

    // --- the file -----------------------------------------------------------------------

    /// The name the file goes by now (in a file set, a rename that still matches).
    void rename(std::string_view path) { path_text_.assign(path); }
    const std::string& path_text() const noexcept { return path_text_; }
    FollowedFile& file() noexcept { return file_; }
    const FollowedFile& file() const noexcept { return file_; }
    bool is_open() const noexcept { return file_.is_open(); }

    /// Starts reading `file` at its offset, with `lines` lines before it. The window is
    /// borrowed at the first read.
    void begin(FollowedFile file, std::uint64_t lines) {
        file_ = std::move(file);
        start_at(file_.offset(), lines);
    }

    /// Closes the file; the reader may begin() another.
    void close() noexcept {
        file_.close();
        lines_done_ = 0;
        reset_window(0);
        fingerprint_ = delivered_fingerprint_ = {};
    }

    /// Gives the window of a closed reader back to the pool.
    void release_window() noexcept { window_.release(); }

    /// Whether the reader may give its window back: nothing framed is waiting for delivery.
    bool can_rest() const noexcept {
        return window_.has_buffer() && window_.hold_ == window_.scan_ && !window_.wrapped();
    }
    /// Gives the window back; what was read but not framed (an incomplete line) is read again
    /// from the file when the reader next reads: the file is the buffer. The framer keeps its
    /// state (a long line being skipped goes on being skipped). Only when can_rest().
    void rest() noexcept {
        file_.seek(window_.base_offset_ + window_.scan_);
        framing_paused_ = false;
        window_.release();
    }
    /// The last read found every window lent: nothing was read, though there may be more.
    bool waiting_for_window() const noexcept { return waiting_for_window_; }

    /// The file shrank below the offset: read it again from byte 0.
    void restart_at_zero() noexcept {
        file_.seek(0);
        lines_done_ = 0;
        reset_window(0);
        fingerprint_ = delivered_fingerprint_ = {};
    }

    /// Starts at the beginning of the last (possibly incomplete) line of the first `size`
    /// bytes, so that no line is cut, and counts the lines before it so that line numbers stay
    /// true to the file. Blocks on the disk.
    void seek_to_last_line_start(std::uint64_t size) {
        std::uint64_t last_start = 0;
        std::uint64_t lines = 0;
        file_.seek(0);
        std::vector<char> chunk(read_chunk_bytes);  // once per start, not per line
        while (file_.offset() < size) {
            const std::uint64_t at = file_.offset();
            const auto want =
                static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), size - at));
            const long n = file_.read(chunk.data(), want);
            if (n <= 0) {
                break;
            }
            const char* begin = chunk.data();
            const char* end = begin + n;
            for (const char* p = begin; (p = static_cast<const char*>(std::memchr(
                                             p, '\n', static_cast<std::size_t>(end - p))));) {
                ++lines;
                ++p;
                last_start = at + static_cast<std::uint64_t>(p - begin);
            }
        }
        file_.seek(last_start);
        start_at(last_start, lines);
    }

    // --- positions ----------------------------------------------------------------------

    /// Just past the last line consumed (framed), with the fingerprint of what was consumed.
    Position consumed_position() {
        update_fingerprint();
        return Position{file_.id(), fingerprint_, consumed_offset_, consumed_line_};
    }
    /// Just past the last line delivered: what a checkpoint stores.
    Position delivered_position() const noexcept {
        return Position{file_.id(), delivered_fingerprint_, delivered_offset_, delivered_line_};
    }
    std::uint64_t delivered_offset() const noexcept { return delivered_offset_; }
    /// Bytes read but not delivered (an incomplete line included).
    std::size_t pending_bytes() const noexcept { return window_.pending_bytes(); }
    /// Nothing read is waiting: every framed line was delivered.
    bool drained() const noexcept { return window_.hold_ == window_.scan_ && !window_.wrapped(); }
    /// File size minus the delivered offset, or nullopt when the size cannot be had.
    std::optional<std::uint64_t> lag() const noexcept {
        const long long size = file_.size();
        if (size < 0) {
            return std::nullopt;
        }
        const auto usize = static_cast<std::uint64_t>(size);
        return usize > delivered_offset_ ? usize - delivered_offset_ : 0;
    }

    /// A batch of this reader's lines was delivered (or given up): its part of the window is
    /// free, and unless positions are frozen (a batch went undelivered at stop), the delivered
    /// position moves to its end.
    void released(const void* job, std::size_t hold, const Position& end, bool frozen) noexcept {
        window_.hold_ = hold;
        window_.unwrap_if(job);
        if (!frozen) {
            delivered_offset_ = end.offset;
            delivered_line_ = end.line;
            delivered_fingerprint_ = end.fingerprint;
        }
    }

    // --- reading ------------------------------------------------------------------------

    /// Reads once (a chunk, or with parse threads a range of the backlog) and frames what came.
    /// Returns whether anything was read or framed. Blocks only on the disk, or while the
    /// pipeline delivers to make room (backpressure).
    template <class Pipeline>
    bool read_and_frame(Pipeline& pipeline) {
        waiting_for_window_ = !window_.ensure();
        if (waiting_for_window_) {
            ++totals_.budget_waits;
            return false;
        }
        if (std::exchange(framing_paused_, false)) {
            if (!wrap(pipeline)) {
                make_room(pipeline, read_chunk_bytes / 4);  // moves the unframed rest to the front
            }
            frame(pipeline);
            return true;
        }
        if (pipeline.wants_range(*this)) {
            if (const auto read = pipeline.read_range(*this)) {
                return *read;
            }
        }
        make_room(pipeline, read_chunk_bytes / 4);
        guard_inflight_padding(pipeline);
        const std::size_t room = window_.read_limit() - window_.end_;
        const long n = file_.read(window_.data() + window_.end_, std::min(room, read_chunk_bytes));
        if (n < 0) {
            ++totals_.io_errors;
            report(ErrorKind::io, fmt::format("read failed: {}", errno_text(errno)), file_.offset(),
                   0);
            return false;
        }
        if (n == 0) {
            return false;
        }
        took(static_cast<std::size_t>(n));
        frame(pipeline);
        return true;
    }

    /// No more bytes will follow in this file: its incomplete last line is a line after all,
    /// and everything framed is delivered.
    template <class Pipeline>
    void end_file(Pipeline& pipeline) {
        if (!window_.has_buffer()) {
            // Resting: its incomplete last line is in the file, not in a window.
            while (read_and_frame(pipeline)) {
            }
            if (!window_.has_buffer()) {
                return;  // no window to be had: it stays unread (the caller made room first)
            }
        }
        frame_rest(pipeline);
        feed_base_ = window_.scan_;
        framer_.finish(window_.unframed(),
                       [&](const FramedLine& line) { on_line(pipeline, line); });
        window_.scan_ = window_.end_;
        pipeline.flush();
    }

    /// Frames what a pause left unframed.
    template <class Pipeline>
    void frame_rest(Pipeline& pipeline) {
        while (std::exchange(framing_paused_, false)) {
            make_room(pipeline, read_chunk_bytes / 4);
            frame(pipeline);
        }
    }

    /// After a cut far into the window with parse threads: the next read wraps below the batch
    /// in flight (see wrap) rather than going on up.
    void pause_framing(bool paused) noexcept { framing_paused_ = paused; }
    /// Where framing has got to in the window (what a linger cut holds up to).
    std::size_t scan() const noexcept { return window_.scan_; }
    bool far_in() const noexcept { return window_.scan_ >= compact_after(); }
    /// A cut paused framing: bytes read are waiting to be framed.
    bool framing_paused() const noexcept { return framing_paused_; }

    // --- for the pipeline and catch-up ranges ---------------------------------------------

    ReadWindow& window() noexcept { return window_; }
    LineFramer& framer() noexcept { return framer_; }
    const LineFramer& framer() const noexcept { return framer_; }
    TailerStats& totals() noexcept { return totals_; }
    Reporter& reporter() noexcept { return reporter_; }
    /// Ranges are framed whole: no pause is pending after one.
    void resume_framing() noexcept { framing_paused_ = false; }

    /// `n` bytes were read to the window's end.
    void took(std::size_t n) noexcept {
        window_.end_ += n;
        totals_.bytes += n;
        totals_.read_ahead_high_water =
            std::max(totals_.read_ahead_high_water, window_.pending_bytes());
    }

    /// What one framing event means: a line for the batch, a long line reported, the line
    /// count. Returns true to pause framing: a batch was just cut far into the window, so the
    /// rest is better moved to the front (still in cache) than read after it.
    template <class Pipeline>
    bool on_line(Pipeline& pipeline, const FramedLine& line) {
        const std::uint64_t line_number = lines_done_ + 1;
        consumed_offset_ = window_.base_offset_ + feed_base_ + line.end;
        if (line.first_of_long) {
            ++totals_.long_lines;
            if (options_.long_lines != LongLinePolicy::split) {
                report(ErrorKind::long_line,
                       fmt::format(
                           "line longer than max_line_bytes ({}) was {}", options_.max_line_bytes,
                           options_.long_lines == LongLinePolicy::skip ? "skipped" : "truncated"),
                       line_start_, line_number);
            }
        }
        if (line.deliver) {
            // A piece of a split line has an offset of its own, so that records stay unique
            // by (file, offset); other lines start at line_start_.
            const std::uint64_t offset =
                line.long_line ? window_.base_offset_ +
                                     static_cast<std::uint64_t>(line.text.data() - window_.data())
                               : line_start_;
            pipeline.add(*this, LineRef{line.text, line_number, offset});
        }
        if (line.ends_line) {
            ++lines_done_;
            ++totals_.lines;
            line_start_ = consumed_offset_;
        }
        consumed_line_ = lines_done_;
        if (pipeline.full()) {
            const std::size_t at = feed_base_ + line.end;
            pipeline.cut(*this, at);
            if (at >= compact_after()) {
                framing_paused_ = true;
                return true;
            }
        }
        return false;
    }

    /// What on_line does for a whole line of at most max_line_bytes ending at window index
    /// `end` (the common case when stitching ranges), without the branches for other events.
    template <class Pipeline>
    void add_line(Pipeline& pipeline, std::string_view text, std::size_t end) {
        const bool full = pipeline.add(*this, LineRef{text, ++lines_done_, line_start_});
        ++totals_.lines;
        line_start_ = consumed_offset_ = window_.base_offset_ + end;
        consumed_line_ = lines_done_;
        if (full) {
            pipeline.cut(*this, end);
        }
    }

    /// Feeds the framer the window's bytes [begin, end) (whole lines, when stitching ranges).
    template <class Pipeline>
    void feed(Pipeline& pipeline, std::size_t begin, std::size_t end) {
        feed_base_ = begin;
        framer_.feed(std::string_view(window_.data() + begin, end - begin),
                     [&](const FramedLine& line) { return on_line(pipeline, line); });
        feed_base_ = 0;
    }

    template <class Pipeline>
    void frame(Pipeline& pipeline) {
        feed_base_ = window_.scan_;
        window_.scan_ += framer_.feed(
            window_.unframed(), [&](const FramedLine& line) { return on_line(pipeline, line); });
    }

    /// Lines and records view the window, so it is compacted only when none of this reader's
    /// batches is pending; when less than `want` bytes are free, the pending batches go out
    /// first (this is the backpressure).
    template <class Pipeline>
    void make_room(Pipeline& pipeline, std::size_t want) {
        if (window_.wrapped() && window_.read_limit() - window_.end_ < want) {
            pipeline.deliver_inflight();  // the wrapped-over batch: the window above is free
        }
        const std::size_t room = window_.read_limit() - window_.end_;
        const bool pending = pipeline.holds(*this);
        if (pending && room >= want) {
            return;
        }
        if (pending || window_.hold_ != window_.scan_) {
            pipeline.flush();
        }
        window_.compact();
    }

    /// The read would land in the padding after the last line of the batch being parsed,
    /// which a parsing thread may be reading: let that batch finish first.
    template <class Pipeline>
    void guard_inflight_padding(Pipeline& pipeline) {
        const auto inflight = pipeline.inflight_of(*this);
        if (inflight.job != nullptr && !window_.is_wrapped_job(inflight.job) &&
            window_.end_ < inflight.hold + line_padding) {
            pipeline.deliver_inflight();
        }
    }

  private:
    // With parse threads, the batch in flight holds its part of the window while the next is
    // read, so the window cannot be compacted; instead, once a batch is cut far enough in, the
    // unframed rest moves to the front and reading goes on there, below the batch in flight,
    // so that the window's working set stays small (in cache) rather than the whole read-ahead.
    template <class Pipeline>
    bool wrap(Pipeline& pipeline) {
        if (!pipeline.parallel() || pipeline.holds_framing(*this)) {
            return false;
        }
        const auto inflight = pipeline.inflight_of(*this);
        if (inflight.job == nullptr || !window_.wrap_below(inflight.job, wrap_reserve())) {
            return false;
        }
        pipeline.rebase_inflight_hold(0);
        return true;
    }

    void start_at(std::uint64_t offset, std::uint64_t lines) {
        lines_done_ = lines;
        reset_window(offset);
        fingerprint_ = compute_fingerprint(file_.fd(), offset);
        delivered_fingerprint_ = fingerprint_;
    }

    void reset_window(std::uint64_t file_offset) noexcept {
        framing_paused_ = false;
        window_.reset(file_offset);
        line_start_ = consumed_offset_ = delivered_offset_ = file_offset;
        consumed_line_ = delivered_line_ = lines_done_;
        framer_.reset();
    }

    void update_fingerprint() {
        if (fingerprint_.bytes < max_fingerprint_bytes && consumed_offset_ > fingerprint_.bytes) {
            // A file that shrank meanwhile yields fewer bytes: keep the fingerprint of what
            // was read rather than one of the new, shorter content.
            const auto fresh = compute_fingerprint(file_.fd(), consumed_offset_);
            if (fresh.bytes > fingerprint_.bytes) {
                fingerprint_ = fresh;
            }
        }
    }

    void report(ErrorKind kind, std::string message, std::uint64_t offset, std::uint64_t line) {
        reporter_.report(kind, std::move(message), path_text_, offset, line);
    }

    const TailOptions& options_;
    std::string path_text_;
    TailerStats& totals_;
    Reporter& reporter_;
    FollowedFile file_;
    LineFramer framer_;
    ReadWindow window_;
    std::size_t feed_base_{0};  // window index of the framer's input
    std::uint64_t lines_done_{0};
    std::uint64_t line_start_{0};
    std::uint64_t consumed_offset_{0};
    std::uint64_t consumed_line_{0};
    std::uint64_t delivered_offset_{0};
    std::uint64_t delivered_line_{0};
    Fingerprint fingerprint_;            // of what has been consumed
    Fingerprint delivered_fingerprint_;  // of what has been delivered (never longer)
    bool framing_paused_{false};
    bool waiting_for_window_{false};
    // Past this far into the window, framing pauses after a cut (see on_line).
    std::size_t compact_after() const noexcept {
        return std::min(window_.capacity() / 2, compact_after_bytes);
    }
    // Room for reads to go on below a wrapped-over batch (scaled down for small windows).
    std::size_t wrap_reserve() const noexcept {
        return std::min(window_.capacity() / 8, read_chunk_bytes);
    }
};

}  // namespace snaptail::detail
