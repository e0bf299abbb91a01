// How a BatchingTailer follows a file and cuts batches.
#pragma once

#include <snaptail/position.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace snaptail {

/// Bytes that are always readable after each line handed to a parser, so that
/// parsers such as simdjson can parse in place without copying the line.
inline constexpr std::size_t line_padding = 64;

/// Where reading starts. A checkpoint, when one is configured and valid, overrides it.
/// Files that appear later (after rotation, or a late creation) are always read from their start.
///
///     options.start = snaptail::StartAt::end;
///     options.start = snaptail::StartAt::position(saved);  // exactly-once sinks resume here
class StartAt {
  public:
    enum class Kind { beginning, end, position };

    /// From byte 0 of the file that exists at start: catch up with everything in it.
    static const StartAt beginning;
    /// After the last complete line of the file that exists at start (like `tail -F -n0`).
    static const StartAt end;
    /// From a position the user stored (Batch::end_position()), with the checkpoint resume
    /// rules: the same file, or that file found among rotated_glob, or a reported gap.
    static constexpr StartAt position(const Position& p) noexcept {
        return StartAt(Kind::position, p);
    }

    constexpr Kind kind() const noexcept { return kind_; }
    /// Meaningful when kind() is Kind::position.
    constexpr const Position& saved() const noexcept { return position_; }

    friend constexpr bool operator==(const StartAt&, const StartAt&) = default;

  private:
    constexpr StartAt(Kind kind, Position p) noexcept : kind_(kind), position_(p) {}

    Kind kind_;
    Position position_;
};

inline constexpr StartAt StartAt::beginning{StartAt::Kind::beginning, {}};
inline constexpr StartAt StartAt::end{StartAt::Kind::end, {}};

/// What a tailer does with a checkpoint file that exists but cannot be trusted.
enum class CorruptCheckpoint {
    fail,       ///< Construction throws CheckpointError naming the file and the problem.
    use_start,  ///< Report it through the error handler and start as TailOptions::start says.
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

/// How the files of a FileSet are put in order: which one is newer.
enum class FileOrder {
    /// By relative path, directory by directory, runs of digits compared as numbers:
    /// `9` < `10`, `20261204/23` < `20261205/0`.
    natural,
    /// By modification time when the file was first seen (ties: natural order). Fixed at first
    /// sight, so that a file being written does not move past newer ones.
    modified,
};

/// Which files of a FileSet are read.
enum class FollowMode {
    /// One file at a time, in order: once a newer file exists and the current one has been
    /// quiet at its end for rotate_wait, the current one is finished and the next in order is
    /// read from its first byte; none is skipped.
    newest,
    /// Every matching file at once, new ones as they appear, each read in turn a bounded amount,
    /// with at most max_open_files descriptors open.
    all_files,
};

/// A directory of rolling files: every regular file under `root` whose path relative to `root`
/// matches `glob`. A file keeps its identity (device and inode) across renames within the set.
struct FileSet {
    /// The directory the pattern starts from. It need not exist yet.
    std::filesystem::path root;
    /// '/'-separated; each part is a glob(7) pattern for one directory level (`*`, `?`,
    /// `[...]`, `\` escapes; a leading '.' is matched only by a '.' in the pattern), e.g.
    /// `hourly/*/*` or `*.log`. No `**`: the depth is fixed by the number of parts.
    std::string glob;
    FileOrder order{FileOrder::natural};
    FollowMode mode{FollowMode::newest};
    /// all_files: most descriptors open at once; the least recently active idle file is closed
    /// beyond it and reopened by identity when it grows.
    std::size_t max_open_files{1024};
    /// With inotify, a full rescan of the set this often as a guard against missed events
    /// (without inotify the set is rescanned every poll_interval).
    std::chrono::milliseconds scan_interval{std::chrono::seconds{10}};
    /// The checkpoint keeps the position of a file that is gone from the set this long
    /// (it may come back, renamed or on a remounted disk), then forgets it.
    std::chrono::seconds forget_after{std::chrono::hours{24}};

    friend bool operator==(const FileSet&, const FileSet&) = default;
};

/// Options of a BatchingTailer. Plain data; validated when the tailer is constructed.
struct TailOptions {
    /// The file to follow. It need not exist yet. Exactly one of `path` and `files` is given.
    std::filesystem::path path;
    /// A directory of rolling files to follow instead of one path.
    std::optional<FileSet> files;
    /// Where to start in the file that exists at start; in a file set: beginning reads every
    /// file present from its first byte (follow newest: the oldest first); end starts after the
    /// last complete line of the newest file (all_files: of every file); position starts in the
    /// file it names (follow newest: files before it in order count as read).
    StartAt start{StartAt::beginning};
    /// A file set only: positions stored outside the tailer, one per file (what an exactly-once
    /// sink stored: Batch::end_position()), used like StartAt::position when no checkpoint is
    /// valid. Each file they name resumes there; in follow newest, files ordered before the last
    /// of them that have none count as read. Files they do not name start as `start` says.
    std::vector<Position> resume_positions;

    /// A batch is handed to the sink when it holds this many records...
    std::size_t max_batch_lines{4096};
    /// ...or this many bytes of lines...
    std::size_t max_batch_bytes{std::size_t{1} << 20};
    /// ...or when its oldest complete line has waited this long (0: as soon as no more input is
    /// ready). With parse_threads > 1, while the batch before it is still being parsed and reads
    /// keep returning data, a batch keeps growing up to the limits above instead of being cut
    /// after every read: the batch before it has to reach the sink first anyway.
    std::chrono::milliseconds linger{20};

    /// Lines longer than this are handled by long_lines; memory for one line never exceeds it.
    std::size_t max_line_bytes{std::size_t{1} << 20};
    LongLinePolicy long_lines{LongLinePolicy::truncate};

    /// Threads that parse each batch's lines, in chunks, the tailer's own thread included
    /// (1: it parses alone; n: n - 1 more are started, and the tailer's thread parses while it
    /// waits for them). More than 1 needs a copyable Parser: each thread parses with its own
    /// copy. The sink still sees records in file order. While parsing keeps up with reading
    /// (a cheap parser) and a backlog of 512 KiB or more is on disk, the same threads also read
    /// it, each a 256 KiB piece, finding that piece's line ends (TailerStats::parallel_reads).
    unsigned parse_threads{1};

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

    /// Where the position is committed after each delivered batch (none: no checkpoint).
    /// On start a valid checkpoint decides where reading resumes.
    std::optional<std::filesystem::path> checkpoint_path;
    /// At most one checkpoint write per this interval (0: after every batch); stop always
    /// commits. A crash re-delivers at most the lines of one interval.
    std::chrono::milliseconds commit_interval{0};
    /// At most one disk flush (fsync) of the checkpoint per this interval; stop always flushes.
    std::chrono::milliseconds checkpoint_sync_interval{1000};
    /// What a corrupt or unreadable checkpoint does.
    CorruptCheckpoint corrupt_checkpoint{CorruptCheckpoint::fail};
    /// Permission bits of the checkpoint files written (0600: readable by the running user
    /// only, whatever the umask).
    unsigned checkpoint_mode{0600};
    /// Read a checkpoint that is a symlink or owned by another user. Refused by default (as a
    /// corrupt checkpoint is): in a directory others can write, they could otherwise make the
    /// tailer resume where they like.
    bool checkpoint_trust_any_owner{false};
    /// Where a checkpointed file rotated while the tailer was down may be found (glob(7));
    /// empty means "<path>.*".
    std::string rotated_glob;

    /// run() returns once everything read has been delivered and nothing new has arrived for
    /// this long (0: never). For batch jobs that catch up and exit.
    std::chrono::milliseconds idle_exit{0};
};

namespace detail {

[[noreturn]] inline void reject_option(std::string_view name, std::string_view value,
                                       std::string_view why) {
    throw InvalidOptions(fmt::format("snaptail: TailOptions::{} = {}: {}", name, value, why));
}

inline void validate_file_set(const TailOptions& o) {
    const FileSet& set = *o.files;
    if (!o.path.empty()) {
        reject_option("path", o.path.string(),
                      "give either a path or a file set (TailOptions::files), not both");
    }
    if (set.root.empty()) {
        reject_option("files.root", "\"\"", "the file set needs a root directory");
    }
    if (set.glob.empty()) {
        reject_option("files.glob", "\"\"", "the file set needs a pattern, e.g. \"*.log\"");
    }
    if (set.glob.front() == '/' || set.glob.back() == '/' ||
        set.glob.find("//") != std::string::npos) {
        reject_option("files.glob", set.glob,
                      "must be relative to files.root, with no empty part between slashes");
    }
    for (std::string_view rest = set.glob; !rest.empty();) {
        const auto slash = rest.find('/');
        const std::string_view part = rest.substr(0, slash);
        if (part == "." || part == ".." || part == "**") {
            reject_option("files.glob", set.glob,
                          fmt::format("part '{}' is not supported (each part matches names in "
                                      "one directory)",
                                      part));
        }
        rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    }
    if (set.mode == FollowMode::all_files && o.read_ahead_bytes / 2 <= o.max_line_bytes + 1) {
        reject_option("read_ahead_bytes", std::to_string(o.read_ahead_bytes),
                      fmt::format("reading all files of a set splits it into two windows, each "
                                  "of which must exceed max_line_bytes + 1 ({})",
                                  o.max_line_bytes + 1));
    }
    if (set.max_open_files == 0) {
        reject_option("files.max_open_files", "0", "must be at least 1");
    }
    if (set.scan_interval.count() <= 0) {
        reject_option("files.scan_interval", fmt::format("{}ms", set.scan_interval.count()),
                      "must be positive");
    }
    if (set.forget_after.count() < 0) {
        reject_option("files.forget_after", fmt::format("{}s", set.forget_after.count()),
                      "must not be negative");
    }
    if (!o.rotated_glob.empty()) {
        reject_option("rotated_glob", o.rotated_glob,
                      "applies to a single path; a file set finds its files by identity");
    }
}

}  // namespace detail

/// Throws InvalidOptions naming the first option that cannot work. Allocates only to throw.
inline void validate(const TailOptions& o) {
    using detail::reject_option;
    if (o.files) {
        detail::validate_file_set(o);
    } else if (!o.resume_positions.empty()) {
        reject_option("resume_positions", fmt::format("({} positions)", o.resume_positions.size()),
                      "applies to a file set; a single path resumes with StartAt::position");
    } else if (o.path.empty()) {
        reject_option("path", "\"\"",
                      "a path to follow is required (or a file set in TailOptions::files)");
    } else if (o.path.has_filename() == false) {
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
    if (o.parse_threads == 0 || o.parse_threads > 256) {
        reject_option("parse_threads", std::to_string(o.parse_threads), "must be 1 to 256");
    }
    non_negative("linger", o.linger);
    non_negative("rotate_wait", o.rotate_wait);
    non_negative("idle_exit", o.idle_exit);
    non_negative("sink_retry_initial", o.sink_retry_initial);
    if (o.poll_interval.count() <= 0) {
        reject_option("poll_interval", fmt::format("{}ms", o.poll_interval.count()),
                      "must be positive");
    }
    non_negative("commit_interval", o.commit_interval);
    non_negative("checkpoint_sync_interval", o.checkpoint_sync_interval);
    if (o.checkpoint_path && o.checkpoint_path->empty()) {
        reject_option("checkpoint_path", "\"\"", "must name a file (or be left unset)");
    }
    if (o.checkpoint_path && !o.files && *o.checkpoint_path == o.path) {
        reject_option("checkpoint_path", o.checkpoint_path->string(),
                      "must not be the followed file itself");
    }
    if (o.checkpoint_mode > 07777) {
        reject_option("checkpoint_mode", fmt::format("{:o}", o.checkpoint_mode),
                      "must be permission bits (at most 07777)");
    }
    if (o.sink_retry_max < o.sink_retry_initial) {
        reject_option("sink_retry_max", fmt::format("{}ms", o.sink_retry_max.count()),
                      "must not be below sink_retry_initial");
    }
}

}  // namespace snaptail
