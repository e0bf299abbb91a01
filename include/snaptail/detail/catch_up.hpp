// Catching up on a backlog with all parse threads: each reads a piece of the file and finds its
// line ends while the bytes are in its cache; the tailer's thread strings the lines together.
#pragma once

#include <snaptail/detail/file_reader.hpp>
#include <snaptail/detail/range_read.hpp>
#include <snaptail/detail/read_window.hpp>
#include <snaptail/tail_options.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace snaptail::detail {

// A backlog at least this large is read by all threads at once.
inline constexpr std::size_t range_min_bytes = 2 * read_chunk_bytes;
// Pieces per thread in one range read (each read_chunk_bytes).
inline constexpr std::size_t range_pieces_per_thread = 4;

/// Catching up, the parse threads would wait for the tailer's thread to read and frame the next
/// batch when their parsing is cheap: reading (the copy out of the page cache) and finding line
/// ends are most of the work then. So while parsing keeps up and a backlog is on disk, all
/// threads read it, each a piece, and this thread strings the lines together in order. Live
/// tailing (a small backlog) and slow parsers keep the single read. The ranges are recycled
/// and shared by all readers (one reads at a time). Not thread-safe: the tailer's thread.
class CatchUp {
  public:
    CatchUp(const TailOptions& options, std::size_t window_bytes)
        : range_max_(std::size_t{options.parse_threads} * range_pieces_per_thread *
                     read_chunk_bytes),
          range_window_(std::min(window_bytes, 2 * range_max_)),
          strip_cr_(options.strip_cr) {}

    /// Whether `reader` has a backlog worth reading in a range.
    bool worthwhile(FileReader& reader) const {
        if (reader.framer().in_long_line()) {
            return false;
        }
        const auto& file = reader.file();
        const long long size = file.size();
        return size >= 0 && static_cast<std::uint64_t>(size) >= file.offset() + range_min_bytes;
    }

    /// Reads ranges while the backlog lasts and the window has room, each next one read ahead
    /// by the other threads while this one strings together the lines of the last. Returns
    /// whether it read anything, or nullopt when a single read should be made instead: no room
    /// for a range (a line nearly as long as the window is in it) or the first range read
    /// nothing with no error to report (the single read finds out why).
    template <class Pipeline>
    std::optional<bool> read(FileReader& reader, Pipeline& pipeline) {
        Scope<Pipeline> scope(*this, reader, pipeline);
        auto& window = reader.window();
        // Ranges stay within the first range_window_ bytes of the window: a smaller working set.
        reader.make_room(pipeline, window.end_ + range_min_bytes > range_window_ ? window.capacity()
                                                                                 : range_min_bytes);
        if (limit(window) - window.end_ < range_min_bytes) {
            return std::nullopt;
        }
        reader.guard_inflight_padding(pipeline);
        pipeline.lines_from_now();
        unsigned current = 0;
        if (!scope.submit(ranges_[current])) {
            return std::nullopt;
        }
        scope.wait();
        if (!accept(reader, ranges_[current])) {
            if (failed(reader, ranges_[current])) {
                return false;
            }
            return std::nullopt;
        }
        constexpr std::size_t no_limit = std::numeric_limits<std::size_t>::max();
        Cursor done;  // of the range before the current one, when it is not all framed
        for (;;) {
            if (done.range != nullptr) {
                // Its last lines waited for the current range to be read: their padding lies
                // in it, and a parsing thread may read that padding as soon as they are cut.
                stitch(reader, pipeline, done, no_limit);
                done = {};
            }
            auto& range = ranges_[current];
            auto& next = ranges_[current ^ 1];
            const std::size_t ahead_from = window.end_;
            bool ahead = range.complete && !pipeline.stop_token().stop_requested() &&
                         pipeline.parsing_keeps_up() &&
                         limit(window) - window.end_ >= range_min_bytes;
            if (ahead) {
                // The batch in flight may have been cut (by the pool) at a line whose padding
                // reaches past the window's end, where the next range goes: it goes first.
                reader.guard_inflight_padding(pipeline);
                ahead = scope.submit(next);
            }
            Cursor cursor{&range};
            stitch(reader, pipeline, cursor, ahead ? ahead_from : no_limit);
            if (!ahead) {
                break;
            }
            scope.wait();
            done = cursor;
            current ^= 1;
            if (!accept(reader, next)) {
                stitch(reader, pipeline, done, no_limit);
                break;
            }
        }
        reader.resume_framing();  // ranges are framed whole; make_room compacts when needed
        reader.frame(pipeline);   // the rest after the last line end: a long partial line
        return true;
    }

  private:
    // For the length of read(): batches cut are parsed on this thread (see parse_here), and a
    // range handed to the pool is waited for before the window can change, also when an
    // exception (out of memory) leaves read().
    template <class Pipeline>
    class Scope {
      public:
        Scope(CatchUp& catch_up, FileReader& reader, Pipeline& pipeline) noexcept
            : catch_up_(catch_up), reader_(reader), pipeline_(pipeline) {
            pipeline_.parse_here(true);
        }
        Scope(const Scope&) = delete;
        Scope& operator=(const Scope&) = delete;
        ~Scope() {
            wait();
            pipeline_.parse_here(false);
        }
        // Hands `range` to the pool for the backlog; false when there is none.
        bool submit(RangeRead& range) {
            if (!catch_up_.prepare(reader_, range)) {
                return false;
            }
            pipeline_.pool().submit_read(range);
            ++reader_.totals().parallel_reads;
            outstanding_ = &range;
            return true;
        }
        // Reads the outstanding range's pieces with the pool until all are read.
        void wait() {
            if (auto* range = std::exchange(outstanding_, nullptr)) {
                pipeline_.pool().wait_read(*range);
            }
        }

      private:
        CatchUp& catch_up_;
        FileReader& reader_;
        Pipeline& pipeline_;
        RangeRead* outstanding_{nullptr};
    };

    struct Cursor {
        const RangeRead* range{nullptr};
        std::size_t piece{0};
        std::size_t entry{0};
    };

    std::size_t limit(const ReadWindow& window) const noexcept {
        return std::max(window.end_, std::min(window.read_limit(), range_window_));
    }

    // Prepares `range` for the backlog (up to the room above the window's end and range_max_).
    // False when there is nothing to read.
    bool prepare(FileReader& reader, RangeRead& range) {
        auto& file = reader.file();
        auto& window = reader.window();
        const long long size = file.size();
        const std::uint64_t backlog = size > 0 && static_cast<std::uint64_t>(size) > file.offset()
                                          ? static_cast<std::uint64_t>(size) - file.offset()
                                          : 0;
        const auto want = static_cast<std::size_t>(
            std::min<std::uint64_t>({limit(window) - window.end_, backlog, range_max_}));
        if (want == 0) {
            return false;
        }
        range.prepare(file.fd(), window.data() + window.end_, file.offset(), want,
                      read_chunk_bytes);
        return true;
    }

    // Takes what a range read (see RangeRead::accept): the window and the file offset move
    // past it. False when nothing was read.
    static bool accept(FileReader& reader, RangeRead& range) {
        const std::size_t accepted = range.accept();
        if (accepted == 0) {
            return false;
        }
        reader.file().seek(reader.file().offset() + accepted);
        reader.took(accepted);
        return true;
    }

    // A range whose first piece failed: reported as a failed read. (Later pieces that fail are
    // read again by the next read, which reports them if they fail again.)
    static bool failed(FileReader& reader, const RangeRead& range) {
        if (range.count == 0 || range.pieces[0].got >= 0) {
            return false;
        }
        ++reader.totals().io_errors;
        reader.reporter().report(ErrorKind::io,
                                 fmt::format("read failed: {}", errno_text(range.pieces[0].error)),
                                 reader.path_text(), reader.file().offset(), 0);
        return true;
    }

    // Frames the lines whose ends a range's pieces found, in order, from `cursor` on, up to the
    // first line that ends within line_padding of `limit` (the cursor is left there). A line
    // that ends in a piece starts after the line end before it, in this piece or an earlier
    // one (or in the bytes left unframed before the range). Lines over max_line_bytes (rare)
    // go through the framer, which applies the long-line policy as to any complete line.
    template <class Pipeline>
    void stitch(FileReader& reader, Pipeline& pipeline, Cursor& cursor, std::size_t limit) {
        auto& window = reader.window();
        const char* const buffer = window.data();
        const std::size_t max = reader.framer().max_line_bytes();
        const auto& range = *cursor.range;
        for (; cursor.piece < range.accepted; ++cursor.piece, cursor.entry = 0) {
            const auto& piece = range.pieces[cursor.piece];
            const auto piece_base = static_cast<std::size_t>(piece.dst - buffer);
            for (; cursor.entry < piece.ends.size(); ++cursor.entry) {
                const std::uint32_t entry = piece.ends[cursor.entry];
                const std::size_t newline = piece_base + (entry >> 1);
                if (newline + 1 + line_padding > limit) {
                    return;
                }
                const std::size_t scan = window.scan_;
                std::size_t content_end = newline;
                if (strip_cr_ && newline > scan &&
                    ((entry & 1) != 0 || ((entry >> 1) == 0 && buffer[newline - 1] == '\r'))) {
                    --content_end;
                }
                if (content_end - scan <= max) {
                    reader.add_line(pipeline, std::string_view(buffer + scan, content_end - scan),
                                    newline + 1);
                } else {
                    reader.feed(pipeline, scan, newline + 1);
                }
                window.scan_ = newline + 1;
            }
        }
    }

    const std::size_t range_max_;
    // Two ranges: one being framed, one read ahead.
    const std::size_t range_window_;
    const bool strip_cr_;
    std::array<RangeRead, 2> ranges_;
};

}  // namespace snaptail::detail
