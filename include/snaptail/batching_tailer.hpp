// Follows a file like `tail -F`, parses its lines, and hands a sink batches by count, bytes or
// linger time. The file on disk is the buffer: when the sink lags, reading stops.
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/checkpoint_store.hpp>
#include <snaptail/detail/file_watcher.hpp>
#include <snaptail/detail/parse_job.hpp>
#include <snaptail/detail/path_follower.hpp>
#include <snaptail/detail/range_read.hpp>
#include <snaptail/detail/rotated_files.hpp>
#include <snaptail/error.hpp>
#include <snaptail/line_framer.hpp>
#include <snaptail/line_parser.hpp>
#include <snaptail/position.hpp>
#include <snaptail/tail_options.hpp>
#include <snaptail/tailer_stats.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace snaptail {

namespace detail {

template <class P>
struct record_or_void {
    using type = void;
};
template <LineParser P>
struct record_or_void<P> {
    using type = record_t<P>;
};

// Reads are large so that syscalls stay rare, and small enough that a chunk is framed while
// it is still in cache. (Tests may shrink it to put many read boundaries in small files.)
#ifdef SNAPTAIL_TEST_READ_CHUNK_BYTES
inline constexpr std::size_t read_chunk_bytes = SNAPTAIL_TEST_READ_CHUNK_BYTES;
#else
inline constexpr std::size_t read_chunk_bytes = std::size_t{256} << 10;
#endif
// Past this far into the buffer, framing pauses after a cut so that the rest moves to the
// front: a small working set stays in cache.
inline constexpr std::size_t compact_after_bytes = std::size_t{1} << 20;
// Catching up with parse threads: a backlog at least this large is read by all threads at once.
inline constexpr std::size_t range_min_bytes = 2 * read_chunk_bytes;
// Pieces per thread in one range read (each read_chunk_bytes).
inline constexpr std::size_t range_pieces_per_thread = 4;

}  // namespace detail

/// Follows one file and delivers its lines, parsed by `Parser`, in batches to a sink.
///
///     snaptail::TailOptions options;
///     options.path = "/var/log/orders.log";
///     snaptail::BatchingTailer tailer(options, snaptail::RawLineParser{},
///         [](snaptail::Batch<std::string_view>& batch) {
///             for (std::string_view line : batch.records()) { consume(line); }
///         });
///     tailer.start();  // ... tailer.stop() delivers what was read, then joins.
///
/// Delivery: a batch is cut once it holds max_batch_lines lines or max_batch_bytes bytes, or
/// its first line has waited `linger`; its parsed records then go to the sink (lines the
/// parser drops or throws on are not among them). The sink runs on the tailer's thread; while
/// it runs nothing more is read (with parse_threads > 1, the next batch is parsed meanwhile,
/// or, catching up with a cheap parser, the range already handed out is read), so memory stays
/// within read_ahead_bytes whatever the backlog. Faults go to the error
/// handler (by default a RateLimitedPrinter on stderr); none stops the tailer.
template <class Parser>
class BatchingTailer {
    static_assert(LineParser<Parser>,
                  "snaptail::BatchingTailer<Parser>: Parser must have a member function "
                  "parse(std::string_view) returning a movable record R or std::optional<R> "
                  "(see snaptail::LineParser)");

  public:
    using parser_type = Parser;
    using record_type = typename detail::record_or_void<Parser>::type;
    using batch_type = Batch<record_type>;
    /// Receives each batch on the tailer's thread. May throw: the batch is then retried.
    using Sink = std::function<void(batch_type&)>;
    using clock = std::chrono::steady_clock;

    /// Validates the options (throws InvalidOptions naming the bad one), allocates the read
    /// buffer and loads the checkpoint (throws CheckpointError when it is corrupt, unless
    /// corrupt_checkpoint says use_start). Starts nothing.
    BatchingTailer(TailOptions options, Parser parser, Sink sink,
                   ErrorHandler on_error = RateLimitedPrinter{})
        : options_((validate(options), std::move(options))),
          parser_(std::move(parser)),
          sink_(std::move(sink)),
          on_error_(on_error ? std::move(on_error) : ErrorHandler(RateLimitedPrinter{})),
          framer_(options_.max_line_bytes, options_.long_lines, options_.strip_cr),
          follower_(options_.path, options_.rotate_wait),
          buffer_(
              std::make_unique_for_overwrite<char[]>(options_.read_ahead_bytes + line_padding)) {
        if (!sink_) {
            throw InvalidOptions(
                "snaptail: BatchingTailer needs a sink (an empty function was given)");
        }
        std::memset(buffer_.get() + options_.read_ahead_bytes, 0, line_padding);
        for (auto& job : jobs_) {
            job.lines.reserve(std::min<std::size_t>(options_.max_batch_lines, 1 << 16));
            job.slices.resize(1);
        }
        if (options_.parse_threads > 1) {
            if constexpr (std::copy_constructible<Parser>) {
                pool_.emplace(options_.parse_threads - 1, parser_);
            } else {
                throw InvalidOptions(fmt::format(
                    "snaptail: TailOptions::parse_threads = {}: parsing on several threads "
                    "needs a copyable Parser (each thread parses with its own copy)",
                    options_.parse_threads));
            }
        }
        shared_stats_.current_file = options_.path.string();
        if (options_.start.kind() == StartAt::Kind::position) {
            resume_ = options_.start.saved();
        }
        if (options_.checkpoint_path) {
            load_checkpoint();
        }
    }

    BatchingTailer(const BatchingTailer&) = delete;
    BatchingTailer& operator=(const BatchingTailer&) = delete;

    /// Stops and joins a tailer started with start(). Blocks until the sink returns.
    ~BatchingTailer() { stop(); }

    /// Follows the file in the calling thread until `stop` is requested (or idle_exit passes),
    /// then delivers the complete lines already read and returns. Blocks. Not reentrant:
    /// throws std::logic_error if the tailer is already running.
    void run(std::stop_token stop) {
        if (running_.exchange(true)) {
            throw std::logic_error("snaptail: BatchingTailer::run: the tailer is already running");
        }
        run_claimed(std::move(stop));
    }

    /// Runs the tailer on an owned thread; running() is true from the moment it returns.
    /// Throws std::logic_error if it is already running. A tailer whose run ended (stop(),
    /// idle_exit) may be started again.
    void start() {
        if (running_.exchange(true)) {
            throw std::logic_error(
                "snaptail: BatchingTailer::start: the tailer is already running");
        }
        if (thread_.joinable()) {
            thread_.join();  // a finished run's thread
        }
        thread_ = std::jthread([this](std::stop_token stop) {
            try {
                run_claimed(std::move(stop));
            } catch (const std::exception& e) {
                report(ErrorKind::stopped, fmt::format("tailer stopped: {}", e.what()));
            } catch (...) {
                report(ErrorKind::stopped, "tailer stopped: unknown exception");
            }
        });
    }

    /// Requests stop and joins the thread started by start(); the complete lines already read
    /// are delivered first. Blocks while the sink finishes. Call from any thread but the sink's.
    void stop() {
        if (thread_.joinable()) {
            thread_.request_stop();
            thread_.join();
        }
    }

    /// Blocks until the run started by start() ends by itself (idle_exit) or is stopped.
    /// Call from any thread but the sink's.
    void join() {
        if (thread_.joinable()) {
            thread_.join();
        }
    }

    /// True while run() is executing (on start()'s thread or a caller's).
    bool running() const noexcept { return running_; }

    /// A snapshot of the counters as of the last delivered batch or wait. Thread-safe; copies
    /// one string.
    TailerStats stats() const {
        std::lock_guard lock(stats_mutex_);
        return shared_stats_;
    }

    /// The validated options. Thread-safe (immutable).
    const TailOptions& options() const noexcept { return options_; }

  private:
    void run_claimed(std::stop_token stop) {
        struct Running {
            std::atomic<bool>& flag;
            ~Running() { flag = false; }
        } running{running_};
        detail::FileWatcher watcher(options_.path, options_.use_inotify);
        std::stop_callback wake_on_stop(stop, [&watcher] { watcher.wake(); });
        watcher_ = &watcher;
        stop_ = std::move(stop);
        loop();
        finish_run();
        watcher_ = nullptr;
    }

    void loop() {
        bool first_open = true;
        position_frozen_ = false;
        next_open_ = clock::now();
        last_input_ = clock::now();
        while (!stop_.stop_requested()) {
            auto now = clock::now();
            if (!follower_.file().is_open() && now >= next_open_) {
                open_file(first_open, now);
                first_open = false;
            }
            if (follower_.file().is_open() && read_and_frame()) {
                last_input_ = clock::now();
                if (linger_expired(last_input_) && !parsing_inflight()) {
                    cut(scan_);
                    // With parse threads, as after a cut by size: far into the buffer, the next
                    // read wraps below the batch in flight rather than going on up, so that how
                    // much of the buffer a run touches does not depend on timing. (Without them
                    // nothing is pending now, and make_room compacts before the next read.)
                    framing_paused_ = pool_.has_value() && scan_ >= compact_after_;
                }
                continue;
            }
            // Nothing more to read for now: a batch already parsed need not wait any longer.
            if (inflight_ != nullptr) {
                deliver_inflight();
            }
            now = clock::now();
            bool changed = false;
            if (follower_.file().is_open()) {
                changed = check_path(now);
            }
            if (linger_expired(now)) {
                flush();
            }
            if (changed) {
                continue;
            }
            if (commit_pending_ && now - last_commit_ >= options_.commit_interval) {
                commit(false);
            }
            if (idle_done(now)) {
                break;
            }
            publish_stats();
            watcher_->wait(next_timeout(now));
        }
    }

    void finish_run() {
        // Stop: every complete line read goes out; an incomplete last line stays unread.
        frame_rest();
        flush();
        commit(true);
        if (store_) {
            try {
                store_->sync();
            } catch (const std::exception& e) {
                ++stats_.checkpoint_errors;
                report(ErrorKind::checkpoint, e.what());
            }
        }
        publish_stats();
    }

    // --- checkpoints -------------------------------------------------------------------

    void load_checkpoint() {
        store_.emplace(*options_.checkpoint_path, options_.checkpoint_sync_interval);
        try {
            std::string saved_for;
            auto saved = store_->load(&saved_for);
            if (saved && saved_for != options_.path.string()) {
                throw CheckpointError(
                    fmt::format("snaptail: checkpoint {}: it was saved for {}, not for {}",
                                store_->path().string(), saved_for, options_.path.string()));
            }
            if (saved) {
                resume_ = saved;
            }
        } catch (const CheckpointError& e) {
            if (options_.corrupt_checkpoint == CorruptCheckpoint::fail) {
                throw;
            }
            report(ErrorKind::checkpoint,
                   fmt::format("{}; starting as TailOptions::start says instead", e.what()));
        }
    }

    Position delivered_position() const {
        return Position{follower_.file().id(), delivered_fingerprint_, delivered_offset_,
                        delivered_line_};
    }

    // Saves the position of what the sink has accepted: after every batch, or at most once per
    // commit_interval, and always when forced (stop).
    void commit(bool force) {
        if (!store_ || !follower_.file().is_open()) {
            return;
        }
        const Position position = delivered_position();
        if (committed_ && *committed_ == position) {
            commit_pending_ = false;
            return;
        }
        const auto now = clock::now();
        if (!force && committed_ && now - last_commit_ < options_.commit_interval) {
            commit_pending_ = true;
            return;
        }
        try {
            store_->save(position, options_.path.string());
            committed_ = position;
            ++stats_.commits;
        } catch (const std::exception& e) {
            ++stats_.checkpoint_errors;
            report(ErrorKind::checkpoint, e.what(), position.offset, position.line);
        }
        last_commit_ = now;
        commit_pending_ = !committed_ || *committed_ != position;
    }

    void update_fingerprint() {
        if (fingerprint_.bytes < max_fingerprint_bytes && consumed_offset_ > fingerprint_.bytes) {
            // A file that shrank meanwhile yields fewer bytes: keep the fingerprint of what
            // was read rather than one of the new, shorter content.
            const auto fresh = detail::compute_fingerprint(follower_.file().fd(), consumed_offset_);
            if (fresh.bytes > fingerprint_.bytes) {
                fingerprint_ = fresh;
            }
        }
    }

    // --- which file -------------------------------------------------------------------

    void open_file(bool first_open, clock::time_point now) {
        detail::OpenOutcome outcome = follower_.open(0);
        path_missing_ = outcome.missing;
        lines_done_ = 0;
        if (resume_ && (outcome.missing || follower_.file().is_open())) {
            const Position saved = *resume_;
            resume_.reset();
            resume_from(saved, outcome.size);
        } else if (outcome.missing) {
            open_backoff_ = {};
            return;  // not there yet: its creation wakes us (or the next poll finds it)
        } else if (follower_.file().is_open() && first_open && options_.start == StartAt::end) {
            seek_to_last_line_start(outcome.size);
        }
        if (!follower_.file().is_open() && !outcome.missing) {
            ++stats_.io_errors;
            report(outcome.not_a_file ? ErrorKind::not_a_file : ErrorKind::io, outcome.error);
            open_backoff_ = open_backoff_ == std::chrono::milliseconds{0}
                                ? options_.poll_interval
                                : std::min(open_backoff_ * 2, max_backoff);
            next_open_ = now + open_backoff_;
            return;
        }
        if (!follower_.file().is_open()) {
            return;
        }
        open_backoff_ = {};
        auto& file = follower_.file();
        reset_buffer(file.offset());
        fingerprint_ = detail::compute_fingerprint(file.fd(), file.offset());
        delivered_fingerprint_ = fingerprint_;
        watcher_->watch_file(file.fd());
        last_input_ = now;
        // Where this file starts being read is a position too: a crash before its first batch
        // must resume here, not in the file before it or at an offset that no longer applies.
        commit(true);
    }

    // The resume rules: the same file at the path continues from the saved offset (or from 0 if
    // it shrank); otherwise the saved file is looked for among rotated_glob and read to its end
    // first; if it is nowhere, the possible gap is reported and the path is read from byte 0.
    void resume_from(const Position& saved, std::uint64_t size_at_path) {
        auto& file = follower_.file();
        if (file.is_open() && file.id() == saved.file && size_at_path < saved.offset) {
            // Shorter than the offset: truncated (or a new file on a reused inode; the
            // fingerprint cannot tell them apart, and either way it is read from its start).
            ++stats_.truncations;
            report(ErrorKind::truncated,
                   fmt::format("file is {} bytes, shorter than the saved offset {}: it was "
                               "truncated; reading from offset 0",
                               size_at_path, saved.offset),
                   saved.offset, saved.line);
            return;
        }
        if (file.is_open() && detail::same_file(file.fd(), saved)) {
            file.seek(saved.offset);
            lines_done_ = saved.line;
            return;
        }
        const std::string pattern = options_.rotated_glob.empty()
                                        ? detail::default_rotated_glob(options_.path.string())
                                        : options_.rotated_glob;
        if (auto rotated = detail::find_rotated(pattern, saved)) {
            std::vector<FileId> skip{rotated->id};
            if (file.is_open()) {
                skip.push_back(file.id());
            }
            const auto skipped = detail::rotated_after(pattern, rotated->modified, skip);
            if (!skipped.empty()) {
                report(ErrorKind::gap,
                       fmt::format("{} file(s) rotated after the saved one ({}) will not be read: "
                                   "{}",
                                   skipped.size(), rotated->name, fmt::join(skipped, ", ")),
                       saved.offset, saved.line);
            }
            if (rotated->size < saved.offset) {
                report(ErrorKind::gap,
                       fmt::format("rotated file {} is {} bytes, shorter than the saved offset {}",
                                   rotated->name, rotated->size, saved.offset),
                       saved.offset, saved.line);
            }
            const auto offset = std::min(rotated->size, saved.offset);
            follower_.adopt(std::move(rotated->fd), rotated->id, offset);
            lines_done_ = offset == saved.offset ? saved.line : 0;
            return;
        }
        report(ErrorKind::gap,
               fmt::format("the saved file {} is neither at the path nor among '{}'; reading the "
                           "path from its first byte: lines written to the saved file after "
                           "offset {} may be lost",
                           saved.file, pattern, saved.offset),
               saved.offset, saved.line);
    }

    // Starts at the beginning of the last (possibly incomplete) line, so that no line is cut,
    // and counts the lines before it so that line numbers stay true to the file.
    void seek_to_last_line_start(std::uint64_t size) {
        auto& file = follower_.file();
        std::uint64_t last_start = 0;
        file.seek(0);
        while (file.offset() < size) {
            const std::uint64_t at = file.offset();
            const auto want = static_cast<std::size_t>(
                std::min<std::uint64_t>(options_.read_ahead_bytes, size - at));
            const long n = file.read(buffer_.get(), want);
            if (n <= 0) {
                break;
            }
            const char* begin = buffer_.get();
            const char* end = begin + n;
            for (const char* p = begin; (p = static_cast<const char*>(std::memchr(
                                             p, '\n', static_cast<std::size_t>(end - p))));) {
                ++lines_done_;
                ++p;
                last_start = at + static_cast<std::uint64_t>(p - begin);
            }
        }
        file.seek(last_start);
    }

    // The file has no more data: what does the path say now?
    bool check_path(clock::time_point now) {
        auto& file = follower_.file();
        switch (follower_.check(now)) {
            case detail::PathChange::none: {
                const long long size = file.size();
                if (size >= 0) {
                    const auto delivered = delivered_offset_;
                    const auto usize = static_cast<std::uint64_t>(size);
                    stats_.lag = usize > delivered ? usize - delivered : 0;
                }
                return false;
            }
            case detail::PathChange::truncated: {
                const std::uint64_t old_offset = file.offset();
                end_file();
                ++stats_.truncations;
                report(ErrorKind::truncated,
                       fmt::format("file shrank below the read offset {} (copy-and-truncate?); "
                                   "reading again from offset 0",
                                   old_offset),
                       old_offset, 0);
                file.seek(0);
                lines_done_ = 0;
                reset_buffer(0);
                fingerprint_ = delivered_fingerprint_ = {};
                commit(true);  // a crash from now on resumes at the start of the new content
                return true;
            }
            case detail::PathChange::retire:
                end_file();
                ++stats_.rotations;
                follower_.close();
                watcher_->unwatch_file();
                lines_done_ = 0;
                reset_buffer(0);
                fingerprint_ = delivered_fingerprint_ = {};
                next_open_ = now;
                return true;
        }
        return false;
    }

    // No more bytes will follow in this file: its incomplete last line is a line after all.
    void end_file() {
        frame_rest();
        feed_base_ = scan_;
        framer_.finish(std::string_view(buffer_.get() + scan_, end_ - scan_),
                       [this](const FramedLine& line) { on_line(line); });
        scan_ = end_;
        flush();
    }

    // --- how to read it --------------------------------------------------------------

    bool read_and_frame() {
        if (std::exchange(framing_paused_, false)) {
            if (!wrap()) {
                make_room(detail::read_chunk_bytes / 4);  // moves the unframed rest to the front
            }
            frame();
            return true;
        }
        if (range_worthwhile()) {
            if (const auto read = read_range()) {
                return *read;
            }
        }
        make_room(detail::read_chunk_bytes / 4);
        guard_inflight_padding();
        auto& file = follower_.file();
        const std::size_t room = read_limit() - end_;
        const long n = file.read(buffer_.get() + end_, std::min(room, detail::read_chunk_bytes));
        if (n < 0) {
            ++stats_.io_errors;
            report(ErrorKind::io, fmt::format("read failed: {}", detail::errno_text(errno)),
                   file.offset(), 0);
            return false;
        }
        if (n == 0) {
            return false;
        }
        end_ += static_cast<std::size_t>(n);
        stats_.bytes += static_cast<std::uint64_t>(n);
        stats_.read_ahead_high_water = std::max(stats_.read_ahead_high_water, pending_bytes());
        frame();
        return true;
    }

    void guard_inflight_padding() {
        if (inflight_ != nullptr && inflight_ != high_job_ &&
            end_ < inflight_->hold + line_padding) {
            // The read would land in the padding after the last line of the batch being
            // parsed, which a parsing thread may be reading: let that batch finish first.
            deliver_inflight();
        }
    }

    // Catching up, the parse threads would wait for this one to read and frame the next batch
    // when their parsing is cheap: reading (the copy out of the page cache) and finding line
    // ends are most of the work then. So while parsing keeps up and a backlog is on disk, all
    // threads read it, each a piece, finding that piece's line ends while it is in its cache;
    // this thread then strings the lines together in order. Live tailing (a small backlog) and
    // slow parsers keep the single read.
    bool range_worthwhile() {
        if (!pool_ || !parsing_keeps_up_ || framer_.in_long_line()) {
            return false;
        }
        const auto& file = follower_.file();
        const long long size = file.size();
        return size >= 0 &&
               static_cast<std::uint64_t>(size) >= file.offset() + detail::range_min_bytes;
    }

    // Reads ranges while the backlog lasts and the buffer has room, each next one read ahead
    // by the other threads while this one strings together the lines of the last. Returns
    // whether it read anything, or nullopt when a single read should be made instead: no room
    // for a range (a line nearly as long as the window is in the buffer) or the first range
    // read nothing with no error to report (the single read finds out why).
    std::optional<bool> read_range() {
        RangeScope scope(*this);
        // Ranges stay within the first range_window_ bytes of the buffer: a smaller working set.
        make_room(end_ + detail::range_min_bytes > range_window_ ? options_.read_ahead_bytes
                                                                 : detail::range_min_bytes);
        if (range_limit() - end_ < detail::range_min_bytes) {
            return std::nullopt;
        }
        guard_inflight_padding();
        lines_since_ = clock::now();
        unsigned current = 0;
        if (!scope.submit(ranges_[current])) {
            return std::nullopt;
        }
        scope.wait();
        if (!accept_range(ranges_[current])) {
            if (range_failed(ranges_[current])) {
                return false;
            }
            return std::nullopt;
        }
        StitchCursor done;  // of the range before the current one, when it is not all framed
        for (;;) {
            if (done.range != nullptr) {
                // Its last lines waited for the current range to be read: their padding lies
                // in it, and a parsing thread may read that padding as soon as they are cut.
                stitch(done, std::numeric_limits<std::size_t>::max());
                done = {};
            }
            auto& range = ranges_[current];
            auto& next = ranges_[current ^ 1];
            const std::size_t ahead_from = end_;
            bool ahead = range.complete && !stop_.stop_requested() && parsing_keeps_up_ &&
                         range_limit() - end_ >= detail::range_min_bytes;
            if (ahead) {
                // The batch in flight may have been cut (by the pool) at a line whose padding
                // reaches past end_, where the next range goes: it is delivered first.
                guard_inflight_padding();
                ahead = scope.submit(next);
            }
            StitchCursor cursor{&range};
            stitch(cursor, ahead ? ahead_from : std::numeric_limits<std::size_t>::max());
            if (!ahead) {
                break;
            }
            scope.wait();
            done = cursor;
            current ^= 1;
            if (!accept_range(next)) {
                stitch(done, std::numeric_limits<std::size_t>::max());
                break;
            }
        }
        framing_paused_ = false;  // ranges are framed whole; make_room compacts when needed
        frame();  // the rest after the last line end: acts on a long partial line as usual
        return true;
    }

    // Prepares `range` for the backlog (up to the room above end_ and range_max_) and hands
    // it to the pool. False when there is nothing to read.
    bool submit_range(detail::RangeRead& range) {
        auto& file = follower_.file();
        const long long size = file.size();
        const std::uint64_t backlog = size > 0 && static_cast<std::uint64_t>(size) > file.offset()
                                          ? static_cast<std::uint64_t>(size) - file.offset()
                                          : 0;
        const auto want = static_cast<std::size_t>(
            std::min<std::uint64_t>({range_limit() - end_, backlog, range_max_}));
        if (want == 0) {
            return false;
        }
        range.prepare(file.fd(), buffer_.get() + end_, file.offset(), want,
                      detail::read_chunk_bytes);
        pool_->submit_read(range);
        ++stats_.parallel_reads;
        return true;
    }

    // Takes what a range read (see RangeRead::accept): the buffer and the file offset move past
    // it. False when nothing was read.
    bool accept_range(detail::RangeRead& range) {
        const std::size_t accepted = range.accept();
        auto& file = follower_.file();
        if (accepted == 0) {
            return false;
        }
        file.seek(file.offset() + accepted);
        end_ += accepted;
        stats_.bytes += accepted;
        stats_.read_ahead_high_water = std::max(stats_.read_ahead_high_water, pending_bytes());
        return true;
    }

    // A range whose first piece failed: reported as a failed read. (Later pieces that fail are
    // read again by the next read, which reports them if they fail again.)
    bool range_failed(const detail::RangeRead& range) {
        if (range.count == 0 || range.pieces[0].got >= 0) {
            return false;
        }
        ++stats_.io_errors;
        report(ErrorKind::io,
               fmt::format("read failed: {}", detail::errno_text(range.pieces[0].error)),
               follower_.file().offset(), 0);
        return true;
    }

    // For the length of read_range: batches cut are parsed on this thread (see parse_here),
    // and a range handed to the pool is waited for before the buffer can change, also when
    // an exception (out of memory) leaves read_range.
    class RangeScope {
      public:
        explicit RangeScope(BatchingTailer& tailer) noexcept : tailer_(tailer) {
            tailer_.parse_here_ = true;
        }
        RangeScope(const RangeScope&) = delete;
        RangeScope& operator=(const RangeScope&) = delete;
        ~RangeScope() {
            wait();
            tailer_.parse_here_ = false;
        }
        // Hands `range` to the pool for the backlog; false when there is none.
        bool submit(detail::RangeRead& range) {
            if (!tailer_.submit_range(range)) {
                return false;
            }
            outstanding_ = &range;
            return true;
        }
        // Reads the outstanding range's pieces with the pool until all are read.
        void wait() {
            if (auto* range = std::exchange(outstanding_, nullptr)) {
                tailer_.pool_->wait_read(*range);
            }
        }

      private:
        BatchingTailer& tailer_;
        detail::RangeRead* outstanding_{nullptr};
    };

    struct StitchCursor {
        const detail::RangeRead* range{nullptr};
        std::size_t piece{0};
        std::size_t entry{0};
    };

    // Frames the lines whose ends a range's pieces found, in order, from `cursor` on, up to the
    // first line that ends within line_padding of `limit` (the cursor is left there). A line
    // that ends in a piece starts after the line end before it, in this piece or an earlier
    // one (or in the bytes left unframed before the range). Lines over max_line_bytes (rare)
    // go through the framer, which applies the long-line policy as to any complete line.
    void stitch(StitchCursor& cursor, std::size_t limit) {
        const char* const buffer = buffer_.get();
        const std::size_t max = framer_.max_line_bytes();
        const auto& range = *cursor.range;
        feed_base_ = 0;
        for (; cursor.piece < range.accepted; ++cursor.piece, cursor.entry = 0) {
            const auto& piece = range.pieces[cursor.piece];
            const auto piece_base = static_cast<std::size_t>(piece.dst - buffer);
            for (; cursor.entry < piece.ends.size(); ++cursor.entry) {
                const std::uint32_t entry = piece.ends[cursor.entry];
                const std::size_t newline = piece_base + (entry >> 1);
                if (newline + 1 + line_padding > limit) {
                    return;
                }
                std::size_t content_end = newline;
                if (options_.strip_cr && newline > scan_ &&
                    ((entry & 1) != 0 || ((entry >> 1) == 0 && buffer[newline - 1] == '\r'))) {
                    --content_end;
                }
                if (content_end - scan_ <= max) {
                    add_line(std::string_view(buffer + scan_, content_end - scan_), newline + 1);
                } else {
                    feed_base_ = scan_;
                    framer_.feed(std::string_view(buffer + scan_, newline + 1 - scan_),
                                 [this](const FramedLine& line) { return on_line(line); });
                    feed_base_ = 0;
                }
                scan_ = newline + 1;
            }
        }
    }

    // Frames what a pause left unframed.
    void frame_rest() {
        while (std::exchange(framing_paused_, false)) {
            make_room(detail::read_chunk_bytes / 4);
            frame();
        }
    }

    void frame() {
        feed_base_ = scan_;
        scan_ += framer_.feed(std::string_view(buffer_.get() + scan_, end_ - scan_),
                              [this](const FramedLine& line) { return on_line(line); });
    }

    // Lines and records view the buffer, so it is compacted only when no batch is pending;
    // when less than `want` bytes are free, the pending batches go out first (this is the
    // backpressure).
    void make_room(std::size_t want) {
        if (high_job_ != nullptr && read_limit() - end_ < want) {
            deliver_inflight();  // it is the wrapped-over batch: the buffer above is free again
        }
        const std::size_t room = read_limit() - end_;
        const bool pending = !framing().empty() || inflight_ != nullptr;
        if (pending && room >= want) {
            return;
        }
        if (pending || hold_ != scan_) {
            flush();
        }
        if (scan_ > 0) {
            std::memmove(buffer_.get(), buffer_.get() + scan_, end_ - scan_);
            base_offset_ += scan_;
            end_ -= scan_;
            scan_ = 0;
            hold_ = 0;
        }
    }

    // With parse threads, the batch in flight holds its part of the buffer while the next is
    // read, so the buffer cannot be compacted; instead, once a batch is cut far enough in, the
    // unframed rest moves to the front and reading goes on there, below the batch in flight,
    // so that the buffer's working set stays small (in cache) rather than the whole read-ahead.
    bool wrap() {
        if (!pool_ || inflight_ == nullptr || !framing().empty() || high_job_ != nullptr) {
            return false;
        }
        const std::size_t rest = end_ - scan_;
        const std::size_t batch = scan_ - hold_;
        if (hold_ < rest + batch + wrap_reserve_) {
            return false;
        }
        std::memmove(buffer_.get(), buffer_.get() + scan_, rest);
        high_job_ = inflight_;
        high_begin_ = hold_;
        high_end_ = scan_;
        inflight_->hold = 0;
        base_offset_ += scan_;
        end_ = rest;
        scan_ = 0;
        hold_ = 0;
        return true;
    }

    std::size_t range_limit() const noexcept {
        return std::max(end_, std::min(read_limit(), range_window_));
    }

    std::size_t read_limit() const noexcept {
        return high_job_ != nullptr ? high_begin_ : options_.read_ahead_bytes;
    }

    std::size_t pending_bytes() const noexcept {
        return end_ - hold_ + (high_job_ != nullptr ? high_end_ - high_begin_ : 0);
    }

    void reset_buffer(std::uint64_t file_offset) {
        high_job_ = nullptr;
        framing_paused_ = false;
        base_offset_ = file_offset;
        hold_ = scan_ = end_ = 0;
        line_start_ = consumed_offset_ = delivered_offset_ = file_offset;
        consumed_line_ = delivered_line_ = lines_done_;
        framer_.reset();
    }

    // --- parse and batch ---------------------------------------------------------------

    // Returns true to pause framing: a batch was just cut far into the buffer, so the rest is
    // better moved to the front (still in cache) than read after it (compacted, or wrapped
    // below the batch in flight); walking the whole read-ahead buffer would cost cache misses
    // on every read.
    bool on_line(const FramedLine& line) {
        const std::uint64_t line_number = lines_done_ + 1;
        consumed_offset_ = base_offset_ + feed_base_ + line.end;
        if (line.first_of_long) {
            ++stats_.long_lines;
            if (options_.long_lines != LongLinePolicy::split) {
                report(ErrorKind::long_line,
                       fmt::format(
                           "line longer than max_line_bytes ({}) was {}", options_.max_line_bytes,
                           options_.long_lines == LongLinePolicy::skip ? "skipped" : "truncated"),
                       line_start_, line_number);
            }
        }
        if (line.deliver) {
            auto& job = framing();
            if (job.lines.empty()) {
                job.started = clock::now();
            }
            // A piece of a split line has an offset of its own, so that records stay unique
            // by (file, offset); other lines start at line_start_.
            const std::uint64_t offset =
                line.long_line
                    ? base_offset_ + static_cast<std::uint64_t>(line.text.data() - buffer_.get())
                    : line_start_;
            job.lines.push_back({line.text, line_number, offset});
            job.bytes += line.text.size();
        }
        if (line.ends_line) {
            ++lines_done_;
            ++stats_.lines;
            line_start_ = consumed_offset_;
        }
        consumed_line_ = lines_done_;
        if (framing().lines.size() >= options_.max_batch_lines ||
            framing().bytes >= options_.max_batch_bytes) {
            const std::size_t at = feed_base_ + line.end;
            cut(at);
            if (at >= compact_after_) {
                framing_paused_ = true;
                return true;
            }
        }
        return false;
    }

    // What on_line does for a whole line of at most max_line_bytes ending at buffer index
    // `end` (the common case when stitching ranges), without the branches for other events.
    void add_line(std::string_view text, std::size_t end) {
        auto& job = framing();
        if (job.lines.empty()) {
            job.started = clock::now();
        }
        job.lines.push_back({text, ++lines_done_, line_start_});
        job.bytes += text.size();
        ++stats_.lines;
        line_start_ = consumed_offset_ = base_offset_ + end;
        consumed_line_ = lines_done_;
        if (job.lines.size() >= options_.max_batch_lines || job.bytes >= options_.max_batch_bytes) {
            cut(end);
        }
    }

    detail::ParseJob<record_type>& framing() noexcept { return jobs_[framing_index_]; }

    // While the batch in flight is still being parsed, the one being framed has to wait for it
    // to reach the sink anyway, so on a busy pipeline it keeps growing (up to the batch limits)
    // rather than being cut after every read, whatever the linger: small batches would make
    // the threads wait on each other once per read.
    bool parsing_inflight() const noexcept {
        return inflight_ != nullptr && inflight_->pending.load(std::memory_order_relaxed) != 0;
    }

    bool linger_expired(clock::time_point now) noexcept {
        return !framing().empty() && now - framing().started >= options_.linger;
    }

    // Ends the batch being framed at buffer index `new_hold`. With a pool it is handed to the
    // parsing threads, and the batch before it (parsed meanwhile) goes to the sink while they
    // work; without one it is parsed and delivered here.
    void cut(std::size_t new_hold) {
        update_fingerprint();
        auto& job = framing();
        job.end = Position{follower_.file().id(), fingerprint_, consumed_offset_, consumed_line_};
        job.hold = new_hold;
        if (job.empty()) {
            // Lines consumed without anything to parse (skipped long lines): only the
            // position moves, after whatever is still in flight.
            if (inflight_ != nullptr) {
                deliver_inflight();
            }
            release(job);
            return;
        }
        if (!pool_) {
            detail::parse_lines(parser_, std::span<const detail::LineRef>(job.lines),
                                job.slices[0]);
            job.merge();
            deliver_job(job);
            return;
        }
        if (parse_here_ && parsing_keeps_up_) {
            parse_here(job);
            return;
        }
        // Queued behind the batch in flight: the threads flow on to it while this thread
        // finishes the previous batch and hands it to the sink.
        pool_->submit(job);
        auto* previous = std::exchange(inflight_, &job);
        framing_index_ ^= 1;
        if (previous != nullptr) {
            // Parsed before it was needed: reading, not parsing, is what the threads wait on.
            parsing_keeps_up_ = previous->pending.load(std::memory_order_relaxed) == 0;
            pool_->wait(*previous, parser_);
            deliver_job(*previous);
        }
    }

    // Catching up with a parser that keeps up, the other threads read the backlog and this one
    // parses each batch itself: handing lines that cheap to another core would cost more in
    // cache misses than the parsing. Parsing that takes longer than getting the batch's lines
    // did hands parsing back to the threads.
    void parse_here(detail::ParseJob<record_type>& job) {
        if (inflight_ != nullptr) {
            deliver_inflight();
        }
        const auto started = clock::now();
        detail::parse_lines(parser_, std::span<const detail::LineRef>(job.lines), job.slices[0]);
        const auto parsed = clock::now();
        parsing_keeps_up_ = parsed - started <= started - lines_since_;
        job.merge();
        deliver_job(job);
        lines_since_ = clock::now();
    }

    // Delivers everything framed: the batch being framed and the one in flight.
    void flush() {
        cut(scan_);
        if (inflight_ != nullptr) {
            deliver_inflight();
        }
    }

    void deliver_inflight() {
        auto* job = std::exchange(inflight_, nullptr);
        pool_->wait(*job, parser_);
        deliver_job(*job);
    }

    // Reports the batch's parse failures, hands its records to the sink (retrying a throwing
    // sink with backoff), then releases its part of the buffer and commits its position.
    void deliver_job(detail::ParseJob<record_type>& job) {
        std::uint64_t first_line = 0;
        std::uint64_t last_line = 0;
        for (auto& slice : job.slices) {
            stats_.filtered += slice.filtered;
            stats_.parse_errors += slice.failures.size() + slice.unrecorded_failures;
            for (auto& failure : slice.failures) {
                report(ErrorKind::parse, fmt::format("parser threw: {}", failure.message),
                       failure.offset, failure.line);
            }
            if (slice.unrecorded_failures != 0) {
                report(ErrorKind::parse,
                       fmt::format("{} more lines of this batch failed to parse; out of memory "
                                   "for their messages",
                                   slice.unrecorded_failures),
                       job.lines.front().offset, job.lines.front().line);
            }
            if (slice.first_line != 0 && first_line == 0) {
                first_line = slice.first_line;
            }
            if (slice.last_line != 0) {
                last_line = slice.last_line;
            }
        }
        if (!job.records.empty()) {
            batch_type batch(std::span<record_type>(job.records), first_line, last_line, job.end,
                             job.bytes, job.batch_lines());
            if (position_frozen_) {
                report_undelivered(batch);
            } else if (!send(batch)) {
                // Stopped while the sink was failing: this batch and every later one stay
                // uncommitted, so a restart from the checkpoint delivers them, in order.
                position_frozen_ = true;
            }
            const long long size = follower_.file().size();
            if (size >= 0) {
                const auto usize = static_cast<std::uint64_t>(size);
                stats_.lag = usize > job.end.offset ? usize - job.end.offset : 0;
            }
        }
        release(job);
    }

    void release(detail::ParseJob<record_type>& job) {
        hold_ = job.hold;
        if (&job == high_job_) {
            high_job_ = nullptr;
        }
        job.clear();
        if (!position_frozen_) {
            delivered_offset_ = job.end.offset;
            delivered_line_ = job.end.line;
            delivered_fingerprint_ = job.end.fingerprint;
            commit(false);
        }
        publish_stats();
    }

    // Offers the batch to the sink until it accepts it (true), retrying with backoff. Gives up
    // after sink_max_attempts (counted and reported; true: the position moves past it), or
    // when stop is requested (false: the batch stays undelivered and uncommitted).
    bool send(batch_type& batch) {
        auto delay = options_.sink_retry_initial;
        for (unsigned attempt = 1;; ++attempt) {
            std::string failure;
            try {
                sink_(batch);
                ++stats_.batches;
                stats_.records += batch.size();
                return true;
            } catch (const std::exception& e) {
                failure = e.what();
            } catch (...) {
                failure = "non-std exception";
            }
            ++stats_.sink_errors;
            report(ErrorKind::sink,
                   fmt::format("sink threw on attempt {} for lines {}-{}: {}", attempt,
                               batch.first_line(), batch.last_line(), failure),
                   batch.end_position().offset, batch.first_line());
            if (options_.sink_max_attempts != 0 && attempt >= options_.sink_max_attempts) {
                ++stats_.skipped_batches;
                stats_.skipped_records += batch.size();
                report(ErrorKind::sink_gave_up,
                       fmt::format("{} records of lines {}-{} (ending at byte {}) were skipped "
                                   "after {} attempts (sink_max_attempts)",
                                   batch.size(), batch.first_line(), batch.last_line(),
                                   batch.end_position().offset, attempt),
                       batch.end_position().offset, batch.first_line());
                return true;
            }
            if (stop_.stop_requested()) {
                report_undelivered(batch);
                return false;
            }
            sleep_unless_stopped(delay);
            delay = std::min(delay * 2, options_.sink_retry_max);
        }
    }

    void report_undelivered(const batch_type& batch) {
        report(ErrorKind::undelivered,
               fmt::format("{} records of lines {}-{} (ending at byte {}) were not delivered "
                           "before stop; the position stays before them{}",
                           batch.size(), batch.first_line(), batch.last_line(),
                           batch.end_position().offset,
                           store_ ? ", so a restart from the checkpoint delivers them" : ""),
               batch.end_position().offset, batch.first_line());
    }

    void sleep_unless_stopped(std::chrono::milliseconds delay) {
        const auto until = clock::now() + delay;
        for (auto now = clock::now(); now < until && !stop_.stop_requested(); now = clock::now()) {
            watcher_->wait(std::chrono::ceil<std::chrono::milliseconds>(until - now));
        }
    }

    // --- waiting -----------------------------------------------------------------------

    bool idle_done(clock::time_point now) const {
        return options_.idle_exit.count() > 0 && jobs_[0].empty() && jobs_[1].empty() &&
               inflight_ == nullptr && hold_ == scan_ && follower_.file().is_open() &&
               !follower_.retire_deadline() && now - last_input_ >= options_.idle_exit;
    }

    std::chrono::milliseconds next_timeout(clock::time_point now) const {
        auto deadline = now + options_.poll_interval;
        if (!jobs_[framing_index_].empty()) {
            deadline = std::min(deadline, jobs_[framing_index_].started + options_.linger);
        }
        if (auto retire = follower_.retire_deadline()) {
            deadline = std::min(deadline, *retire);
        }
        if (!follower_.file().is_open()) {
            deadline = std::min(deadline, std::max(next_open_, now));
        }
        if (options_.idle_exit.count() > 0) {
            deadline = std::min(deadline, last_input_ + options_.idle_exit);
        }
        if (commit_pending_) {
            deadline = std::min(deadline, last_commit_ + options_.commit_interval);
        }
        if (deadline <= now) {
            return std::chrono::milliseconds{0};
        }
        return std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    }

    // --- reporting ---------------------------------------------------------------------

    void report(ErrorKind kind, std::string message, std::uint64_t offset = 0,
                std::uint64_t line = 0) noexcept {
        try {
            on_error_(Error{kind, std::move(message), options_.path.string(), offset, line});
        } catch (...) {
            // An error handler that throws must not take the tailer down with it.
        }
    }

    void publish_stats() {
        stats_.file_open = follower_.file().is_open();
        stats_.waiting_for_path = !stats_.file_open && path_missing_;
        stats_.offset = delivered_offset_;
        stats_.pending_bytes = pending_bytes();
        std::lock_guard lock(stats_mutex_);
        std::string file = std::move(shared_stats_.current_file);
        shared_stats_ = stats_;
        shared_stats_.current_file = std::move(file);
    }

    static constexpr std::chrono::milliseconds max_backoff{5000};

    const TailOptions options_;
    Parser parser_;
    Sink sink_;
    ErrorHandler on_error_;

    // Owned by the running thread.
    LineFramer framer_;
    detail::PathFollower follower_;
    std::unique_ptr<char[]> buffer_;  // read_ahead_bytes + line_padding
    std::uint64_t base_offset_{0};    // file offset of buffer_[0]
    std::size_t hold_{0};             // buffer_[hold_, end_) is read but not delivered
    std::size_t scan_{0};             // buffer_[scan_, end_) is not framed yet
    std::size_t end_{0};
    std::size_t feed_base_{0};
    std::uint64_t lines_done_{0};
    std::uint64_t line_start_{0};
    std::uint64_t consumed_offset_{0};
    std::uint64_t consumed_line_{0};
    std::uint64_t delivered_offset_{0};
    std::uint64_t delivered_line_{0};
    Fingerprint fingerprint_;            // of what has been consumed
    Fingerprint delivered_fingerprint_;  // of what has been delivered (never longer)
    std::optional<Position> resume_;     // where the first open resumes (checkpoint or StartAt)
    std::optional<CheckpointStore> store_;
    std::optional<Position> committed_;
    clock::time_point last_commit_{};
    bool commit_pending_{false};
    // Two batches: one being framed, the other being parsed or delivered.
    std::array<detail::ParseJob<record_type>, 2> jobs_;
    unsigned framing_index_{0};
    detail::ParseJob<record_type>* inflight_{nullptr};
    bool framing_paused_{false};
    const detail::ParseJob<record_type>* high_job_{nullptr};  // in flight above a wrap
    std::size_t high_begin_{0};                               // the buffer it holds
    std::size_t high_end_{0};
    bool position_frozen_{false};  // a batch went undelivered at stop: commit nothing after it
    const std::size_t compact_after_{
        std::min(options_.read_ahead_bytes / 2, detail::compact_after_bytes)};
    // Room for reads to go on below a wrapped-over batch (scaled down for small buffers).
    const std::size_t wrap_reserve_{
        std::min(options_.read_ahead_bytes / 8, detail::read_chunk_bytes)};
    // With pool_: the pieces of catch-up reads, recycled (one being framed, one read ahead).
    // Declared before pool_, whose threads may read into them, so that they outlive it.
    std::array<detail::RangeRead, 2> ranges_;
    std::optional<detail::ParsePool<Parser, record_type>> pool_;
    // Whether parsing keeps up with reading: with the pool, the last batch waited for was
    // parsed before it was needed; parsing here, it took no longer than getting its lines.
    bool parsing_keeps_up_{true};
    bool parse_here_{false};         // while stitching ranges: batches are parsed on this thread
    clock::time_point lines_since_;  // parsing here: when this batch's lines began to be got
    const std::size_t range_max_{std::size_t{options_.parse_threads} *
                                 detail::range_pieces_per_thread * detail::read_chunk_bytes};
    // Two ranges: one being framed, one read ahead.
    const std::size_t range_window_{std::min(options_.read_ahead_bytes, 2 * range_max_)};
    clock::time_point next_open_{};
    clock::time_point last_input_{};
    std::chrono::milliseconds open_backoff_{0};
    bool path_missing_{false};
    detail::FileWatcher* watcher_{nullptr};
    std::stop_token stop_;
    TailerStats stats_;

    mutable std::mutex stats_mutex_;
    TailerStats shared_stats_;
    std::atomic<bool> running_{false};
    std::jthread thread_;  // last: joined before the members it uses are destroyed
};

}  // namespace snaptail
