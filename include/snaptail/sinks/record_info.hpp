// What the sinks in snaptail/sinks/ tell a record mapping about where a record came from.
// Needs nothing beyond snaptail's core headers.
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/position.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace snaptail {

/// Where record `i` of a batch came from: its file (device and inode), 1-based line number,
/// the file offset of its first byte, and the path the file had when the batch was cut.
/// (file, offset) names a record uniquely while the file exists.
struct RecordInfo {
    FileId file;              ///< Device and inode of the record's file.
    std::uint64_t line{0};    ///< 1-based line number (the pieces of a split line share it).
    std::uint64_t offset{0};  ///< File offset of the record's first byte.
    std::string_view path;    ///< The file's name when its batch was cut; valid during the call.
};

/// The RecordInfo of record `i` of `batch` (i < batch.size()). O(1) unless lines were dropped
/// (see Batch::line_of); never allocates; not thread-safe, as Batch.
template <class R>
RecordInfo record_info(const Batch<R>& batch, std::size_t i) noexcept {
    const LineInfo at = batch.line_of(i);
    return RecordInfo{batch.end_position().file, at.line, at.offset, batch.path()};
}

}  // namespace snaptail
