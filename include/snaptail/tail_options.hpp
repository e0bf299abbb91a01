// How a BatchingTailer follows a file and cuts batches.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace snaptail {

/// Bytes that are always readable after each line handed to a parser, so that
/// parsers such as simdjson can parse in place without copying the line.
inline constexpr std::size_t line_padding = 64;

/// Where reading starts in the file that exists when the tailer starts.
/// Files that appear later (after rotation, or a late creation) are always read from their start.
enum class StartAt {
    beginning,  ///< From byte 0: catch up with everything in the file.
    end,        ///< From the current end: only lines written from now on (like `tail -F -n0`).
};

/// What happens to a line longer than max_line_bytes. Each such line is counted.
enum class LongLinePolicy {
    truncate,  ///< Deliver the first max_line_bytes bytes, discard the rest of the line.
    skip,      ///< Drop the whole line.
    split,     ///< Deliver it in pieces of at most max_line_bytes (all with the same line number).
};

/// Thrown at construction for options that cannot work; the message names the option and value.
class InvalidOptions : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

/// Options of a BatchingTailer. Plain data; validated when the tailer is constructed.
struct TailOptions {
    /// The file to follow. It need not exist yet.
    std::filesystem::path path;
    /// Where to start in the file that exists at start.
    StartAt start{StartAt::beginning};

    /// A batch is handed to the sink when it holds this many records...
    std::size_t max_batch_lines{4096};
    /// ...or this many bytes of lines...
    std::size_t max_batch_bytes{std::size_t{1} << 20};
    /// ...or when its oldest complete line has waited this long (0: as soon as no more input is
    /// ready).
    std::chrono::milliseconds linger{20};

    /// Lines longer than this are handled by long_lines; memory for one line never exceeds it.
    std::size_t max_line_bytes{std::size_t{1} << 20};
    LongLinePolicy long_lines{LongLinePolicy::truncate};

    /// Bound on bytes read from the file but not yet delivered: the reader's whole buffer.
    /// When the sink lags, reading stops here and the file on disk holds the backlog.
    std::size_t read_ahead_bytes{std::size_t{8} << 20};

    /// How often the path is checked without inotify, and the period of the guard check with it.
    std::chrono::milliseconds poll_interval{250};
    /// Wake up on inotify events (Linux); falls back to polling when unavailable.
    bool use_inotify{true};
    /// Remove a '\r' before the '\n' (CRLF files).
    bool strip_cr{true};
    /// After rotation, how long the old file is kept open and read for late writes.
    std::chrono::milliseconds rotate_wait{1000};

    /// A throwing sink is retried with exponential backoff from this delay...
    std::chrono::milliseconds sink_retry_initial{100};
    /// ...doubling up to this delay...
    std::chrono::milliseconds sink_retry_max{std::chrono::seconds{5}};
    /// ...at most this many attempts per batch (0: retry until it succeeds or stop is requested).
    unsigned sink_max_attempts{0};

    /// run() returns once everything read has been delivered and nothing new has arrived for
    /// this long (0: never). For batch jobs that catch up and exit.
    std::chrono::milliseconds idle_exit{0};
};

namespace detail {

[[noreturn]] inline void reject_option(std::string_view name, std::string_view value,
                                       std::string_view why) {
    throw InvalidOptions(fmt::format("snaptail: TailOptions::{} = {}: {}", name, value, why));
}

}  // namespace detail

/// Throws InvalidOptions naming the first option that cannot work. Allocates only to throw.
inline void validate(const TailOptions& o) {
    using detail::reject_option;
    if (o.path.empty()) {
        reject_option("path", "\"\"", "a path to follow is required");
    }
    if (o.path.has_filename() == false) {
        reject_option("path", o.path.string(), "must name a file, not a directory");
    }
    if (o.max_batch_lines == 0) {
        reject_option("max_batch_lines", "0", "must be at least 1");
    }
    if (o.max_batch_bytes == 0) {
        reject_option("max_batch_bytes", "0", "must be at least 1");
    }
    if (o.max_line_bytes == 0) {
        reject_option("max_line_bytes", "0", "must be at least 1");
    }
    if (o.read_ahead_bytes <= o.max_line_bytes + 1) {
        reject_option("read_ahead_bytes", std::to_string(o.read_ahead_bytes),
                      fmt::format("must exceed max_line_bytes + 1 ({}) so that a whole line fits",
                                  o.max_line_bytes + 1));
    }
    auto non_negative = [](std::string_view name, std::chrono::milliseconds value) {
        if (value.count() < 0) {
            reject_option(name, fmt::format("{}ms", value.count()), "must not be negative");
        }
    };
    non_negative("linger", o.linger);
    non_negative("rotate_wait", o.rotate_wait);
    non_negative("idle_exit", o.idle_exit);
    non_negative("sink_retry_initial", o.sink_retry_initial);
    if (o.poll_interval.count() <= 0) {
        reject_option("poll_interval", fmt::format("{}ms", o.poll_interval.count()),
                      "must be positive");
    }
    if (o.sink_retry_max < o.sink_retry_initial) {
        reject_option("sink_retry_max", fmt::format("{}ms", o.sink_retry_max.count()),
                      "must not be below sink_retry_initial");
    }
}

}  // namespace snaptail
