// What a sink receives: a run of consecutive records and where they end in the file.
#pragma once

#include <snaptail/position.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace snaptail {

/// Where a record came from in its file.
struct LineInfo {
    std::uint64_t line{0};    ///< 1-based line number (the pieces of a split line share it).
    std::uint64_t offset{0};  ///< File offset of the record's first byte: unique per record in
                              ///< a file (a piece of a split line has its own).
};

namespace detail {

/// A framed line waiting for its parser: a view into the read buffer and where it came from.
struct LineRef {
    std::string_view text;
    std::uint64_t line;    // 1-based line number
    std::uint64_t offset;  // file offset of text's first byte (the line's start, or a piece's)
};

/// A batch's lines and the indices of those that gave no record, to map records to lines.
struct BatchLines {
    std::span<const LineRef> lines;
    std::span<const std::uint32_t> dropped;  // ascending
};

}  // namespace detail

/// A batch of records in file order, valid until the sink returns (records may view the
/// tailer's read buffer). The sink may move from records(). Not thread-safe.
template <class R>
class Batch {
  public:
    Batch(std::span<R> records, std::uint64_t first_line, std::uint64_t last_line,
          Position end_position, std::size_t bytes, detail::BatchLines lines = {},
          std::string_view path = {}) noexcept
        : records_(records),
          first_line_(first_line),
          last_line_(last_line),
          end_position_(end_position),
          bytes_(bytes),
          lines_(lines),
          path_(path) {}

    /// The records, in file order.
    std::span<R> records() const noexcept { return records_; }
    std::size_t size() const noexcept { return records_.size(); }
    bool empty() const noexcept { return records_.empty(); }
    /// 1-based number, in its file, of the line of the first record.
    std::uint64_t first_line() const noexcept { return first_line_; }
    /// 1-based number, in its file, of the line of the last record.
    std::uint64_t last_line() const noexcept { return last_line_; }
    /// The path of the batch's file (every batch comes from one file): in a file set, the name
    /// the file had when the batch was cut.
    std::string_view path() const noexcept { return path_; }
    /// The file and the byte offset just past the last line consumed for this batch: what a
    /// checkpoint stores to resume after it.
    const Position& end_position() const noexcept { return end_position_; }
    /// Bytes of the lines offered to the parser for this batch (without newlines), including
    /// lines it dropped or threw on.
    std::size_t bytes() const noexcept { return bytes_; }
    /// The line number and file offset of record `i` (< size()): with end_position().file, a
    /// key that names the record uniquely (a message id, a primary key). O(1) when no line of
    /// the batch was dropped, O(log dropped) otherwise. Never allocates; not thread-safe.
    LineInfo line_of(std::size_t i) const noexcept {
        const auto& dropped = lines_.dropped;
        // Record i is line i + k, where k counts the dropped lines before it: the m-th dropped
        // index d_m lies before it when d_m - m <= i (d_m - m never decreases).
        std::size_t k = 0;
        if (!dropped.empty()) {
            std::size_t lo = 0;
            std::size_t hi = dropped.size();
            while (lo < hi) {
                const std::size_t mid = lo + (hi - lo) / 2;
                if (dropped[mid] - mid <= i) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            k = lo;
        }
        const std::size_t at = i + k;
        if (at >= lines_.lines.size()) {
            return {};
        }
        return LineInfo{lines_.lines[at].line, lines_.lines[at].offset};
    }

  private:
    std::span<R> records_;
    std::uint64_t first_line_;
    std::uint64_t last_line_;
    Position end_position_;
    std::size_t bytes_;
    detail::BatchLines lines_;
    std::string_view path_;
};

}  // namespace snaptail
