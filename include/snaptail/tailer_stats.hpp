// Counters a BatchingTailer publishes for monitoring.
#pragma once

#include <snaptail/position.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace snaptail {

/// One followed file's state, as of the tailer's last wait.
struct FileStats {
    std::string path;              ///< The name the file had when last seen.
    FileId file;                   ///< Device and inode.
    bool open{false};              ///< Whether its descriptor is open.
    bool done{false};              ///< Follow newest: read to its end and left for a newer file.
    std::uint64_t offset{0};       ///< Just past the last delivered line.
    std::uint64_t lines{0};        ///< Lines before that offset (the last delivered line's number).
    std::uint64_t size{0};         ///< Its size when last seen.
    std::size_t pending_bytes{0};  ///< Read but not delivered.
};

/// A snapshot of a tailer's counters, as of its last delivered batch or wait.
struct TailerStats {
    std::uint64_t lines{0};     ///< Lines read (ended by '\n', or final lines of retired files).
    std::uint64_t bytes{0};     ///< Bytes consumed from files.
    std::uint64_t records{0};   ///< Records delivered to the sink.
    std::uint64_t filtered{0};  ///< Lines the parser dropped (nullopt).
    std::uint64_t parse_errors{0};     ///< Lines whose parse threw.
    std::uint64_t long_lines{0};       ///< Lines longer than max_line_bytes.
    std::uint64_t batches{0};          ///< Batches the sink accepted.
    std::uint64_t sink_errors{0};      ///< Times the sink threw.
    std::uint64_t skipped_batches{0};  ///< Batches given up after sink_max_attempts.
    std::uint64_t skipped_records{0};  ///< Records in those batches.
    std::uint64_t rotations{0};    ///< Files retired because the path named another file or none.
    std::uint64_t truncations{0};  ///< Times the file shrank below the read offset.
    std::uint64_t io_errors{0};    ///< Failed opens and reads (each retried).
    std::uint64_t commits{0};      ///< Checkpoints written.
    std::uint64_t checkpoint_errors{0};  ///< Checkpoint writes that failed (retried next batch).
    std::string current_file;      ///< The path followed; in a file set the file being read (follow
                                   ///< newest), else "root/glob".
    bool file_open{false};         ///< Whether a file is open.
    bool waiting_for_path{false};  ///< No file is open because the path does not exist.
    std::uint64_t offset{0};       ///< Offset just past the last delivered line.
    std::uint64_t lag{0};          ///< File size minus offset, at the last check.
    std::size_t pending_bytes{0};  ///< Bytes read but not delivered (incomplete line included).
    std::size_t read_ahead_high_water{0};  ///< Most bytes ever held read but undelivered.
    /// Stretches of a backlog read by all parse threads at once (parse_threads > 1, while
    /// parsing keeps up with reading).
    std::uint64_t parallel_reads{0};
    /// Files being followed (open or waiting for more data; a single path: 0 or 1).
    std::uint64_t files{0};
    /// Files that appeared (found by a scan or an event) since the start.
    std::uint64_t files_found{0};
    /// Follow newest: files read to their end and left for a newer one.
    std::uint64_t files_done{0};
    /// Files gone before they were read to their end (each reported as a gap).
    std::uint64_t files_lost{0};
    /// Descriptors closed to stay within FileSet::max_open_files (reopened by identity).
    std::uint64_t files_closed_idle{0};
    /// Most bytes of read windows lent at once: the read-ahead budget in use (at most
    /// read_ahead_bytes, whatever the number of files).
    std::size_t budget_high_water{0};
    /// Reads put off because every window of the budget was lent (all files of a set: two
    /// files at a time hold one, one being framed and one being delivered).
    std::uint64_t budget_waits{0};
};

}  // namespace snaptail

template <>
struct fmt::formatter<snaptail::TailerStats> : fmt::formatter<std::string_view> {
    template <class Context>
    auto format(const snaptail::TailerStats& s, Context& ctx) const {
        return fmt::format_to(
            ctx.out(),
            "lines={} bytes={} records={} filtered={} parse_errors={} long_lines={} batches={} "
            "sink_errors={} skipped_batches={} skipped_records={} rotations={} truncations={} "
            "io_errors={} commits={} checkpoint_errors={} file={} open={} waiting_for_path={} "
            "offset={} lag={} pending_bytes={} "
            "read_ahead_high_water={} parallel_reads={} files={} files_found={} files_done={} "
            "files_lost={} files_closed_idle={} budget_high_water={} budget_waits={}",
            s.lines, s.bytes, s.records, s.filtered, s.parse_errors, s.long_lines, s.batches,
            s.sink_errors, s.skipped_batches, s.skipped_records, s.rotations, s.truncations,
            s.io_errors, s.commits, s.checkpoint_errors, s.current_file, s.file_open,
            s.waiting_for_path, s.offset, s.lag, s.pending_bytes, s.read_ahead_high_water,
            s.parallel_reads, s.files, s.files_found, s.files_done, s.files_lost,
            s.files_closed_idle, s.budget_high_water, s.budget_waits);
    }
};
