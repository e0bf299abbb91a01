// What a sink receives: a run of consecutive records and where they end in the file.
#pragma once

#include <snaptail/position.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace snaptail {

/// A batch of records in file order, valid until the sink returns (records may view the
/// tailer's read buffer). The sink may move from records(). Not thread-safe.
template <class R>
class Batch {
  public:
    Batch(std::span<R> records, std::uint64_t first_line, std::uint64_t last_line,
          Position end_position, std::size_t bytes) noexcept
        : records_(records),
          first_line_(first_line),
          last_line_(last_line),
          end_position_(end_position),
          bytes_(bytes) {}

    /// The records, in file order.
    std::span<R> records() const noexcept { return records_; }
    std::size_t size() const noexcept { return records_.size(); }
    bool empty() const noexcept { return records_.empty(); }
    /// 1-based number, in its file, of the line of the first record.
    std::uint64_t first_line() const noexcept { return first_line_; }
    /// 1-based number, in its file, of the line of the last record.
    std::uint64_t last_line() const noexcept { return last_line_; }
    /// The file and the byte offset just past the last line consumed for this batch: what a
    /// checkpoint stores to resume after it.
    const Position& end_position() const noexcept { return end_position_; }
    /// Bytes of the lines offered to the parser for this batch (without newlines), including
    /// lines it dropped or threw on.
    std::size_t bytes() const noexcept { return bytes_; }

  private:
    std::span<R> records_;
    std::uint64_t first_line_;
    std::uint64_t last_line_;
    Position end_position_;
    std::size_t bytes_;
};

}  // namespace snaptail
