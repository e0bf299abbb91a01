// Follows a file like `tail -F`, parses its lines, and hands a sink batches by count, bytes or
// linger time. The file on disk is the buffer: when the sink lags, reading stops.
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/checkpoint_store.hpp>
#include <snaptail/detail/batch_pipeline.hpp>
#include <snaptail/detail/committer.hpp>
#include <snaptail/detail/follow_all.hpp>
#include <snaptail/detail/follow_newest.hpp>
#include <snaptail/detail/path_source.hpp>
#include <snaptail/detail/reporter.hpp>
#include <snaptail/detail/source.hpp>
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

}  // namespace detail

/// Follows one file, or a directory of rolling files (TailOptions::files), and delivers their
/// lines, parsed by `Parser`, in batches to a sink; every batch comes from one file.
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

    /// Validates the options (throws InvalidOptions naming the bad one), starts the parse
    /// threads and loads the checkpoint (throws CheckpointError when it is corrupt, unless
    /// corrupt_checkpoint says use_start). Starts nothing.
    BatchingTailer(TailOptions options, Parser parser, Sink sink,
                   ErrorHandler on_error = RateLimitedPrinter{})
        : options_((validate(options), std::move(options))),
          reporter_(on_error ? std::move(on_error) : ErrorHandler(RateLimitedPrinter{})),
          windows_(options_.read_ahead_bytes, window_count(options_)),
          pipeline_(options_, std::move(parser), std::move(sink), stats_, reporter_,
                    windows_.window_bytes()),
          committer_(options_, stats_, reporter_, source_name(options_)) {
        if (!pipeline_.has_sink()) {
            throw InvalidOptions(
                "snaptail: BatchingTailer needs a sink (an empty function was given)");
        }
        std::optional<Position> resume;
        if (options_.start.kind() == StartAt::Kind::position) {
            resume = options_.start.saved();
        }
        if (options_.files) {
            make_set_source(resume);
        } else {
            if (options_.checkpoint_path) {
                load_checkpoint(resume);
            }
            source_ = std::make_unique<detail::PathSource>(options_, stats_, reporter_, pipeline_,
                                                           committer_, windows_, resume);
        }
        shared_stats_.current_file = source_name(options_);
        committer_.set_state([this] { return source_->checkpoint_state(); });
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
                reporter_.report(ErrorKind::stopped, fmt::format("tailer stopped: {}", e.what()),
                                 source_name(options_));
            } catch (...) {
                reporter_.report(ErrorKind::stopped, "tailer stopped: unknown exception",
                                 source_name(options_));
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

    /// One entry per followed file, at most a second old while running, and as of the end of a
    /// run after it. Thread-safe; allocates the copy.
    std::vector<FileStats> file_stats() const {
        std::lock_guard lock(stats_mutex_);
        return shared_files_;
    }

    /// The validated options. Thread-safe (immutable).
    const TailOptions& options() const noexcept { return options_; }

  private:
    void run_claimed(std::stop_token stop) {
        struct Running {
            std::atomic<bool>& flag;
            ~Running() { flag = false; }
        } running{running_};
        source_->begin_run();
        struct EndRun {
            detail::Source& source;
            ~EndRun() { source.end_run(); }
        } end_run{*source_};
        std::stop_callback wake_on_stop(stop, [this] { source_->wake(); });
        stop_ = stop;
        pipeline_.begin_run(
            std::move(stop),
            [this](std::chrono::milliseconds delay) { sleep_unless_stopped(delay); },
            [this](detail::FileReader&) { on_released(); });
        loop();
        finish_run();
    }

    void loop() {
        last_input_ = clock::now();
        while (!stop_.stop_requested()) {
            auto now = clock::now();
            if (source_->refresh(now)) {
                last_input_ = now;
            }
            bool got = false;
            const auto readers = source_->turn();
            for (std::size_t i = 0; i < readers.size(); ++i) {
                detail::FileReader* reader = readers[i];
                pipeline_.switch_to(*reader);
                const bool read = reader->read_and_frame(pipeline_);
                source_->was_read(i, read, now);
                if (read) {
                    got = true;
                    last_input_ = clock::now();
                    if (pipeline_.linger_expired(last_input_) && !pipeline_.parsing_inflight()) {
                        pipeline_.cut(*reader, reader->scan());
                        // With parse threads, as after a cut by size: far into the window, the
                        // next read wraps below the batch in flight rather than going on up, so
                        // that how much of the window a run touches does not depend on timing.
                        // (Without them nothing is pending now, and make_room compacts before
                        // the next read.)
                        reader->pause_framing(pipeline_.parallel() && reader->far_in());
                    }
                }
            }
            if (got) {
                continue;
            }
            pipeline_.deliver_parsed();
            now = clock::now();
            const bool changed = source_->check(now);
            if (pipeline_.linger_expired(now)) {
                pipeline_.flush();
            }
            if (changed) {
                continue;
            }
            if (committer_.pending() && now >= committer_.due()) {
                committer_.commit(false);
            }
            if (idle_done(now)) {
                break;
            }
            publish_stats(true);
            source_->wait(next_timeout(now));
        }
    }

    void finish_run() {
        // Stop: every complete line read goes out; an incomplete last line stays unread.
        source_->finish();
        pipeline_.flush();
        committer_.commit(true);
        committer_.sync();
        publish_stats(true, true);
    }

    // A batch went out (or was given up): its position moved, unless stop froze positions.
    void on_released() {
        if (!pipeline_.frozen()) {
            committer_.commit(false);
        }
        publish_stats(false);
    }

    // One window holds a single file's read-ahead; reading all files of a set, two share the
    // budget: one being framed, one whose batch is being parsed or delivered.
    static std::size_t window_count(const TailOptions& options) noexcept {
        return options.files && options.files->mode == FollowMode::all_files ? 2 : 1;
    }

    // "the path", or "root/glob" for a file set: what reports and stats name.
    static std::string source_name(const TailOptions& options) {
        return options.files ? (options.files->root / options.files->glob).string()
                             : options.path.string();
    }

    // A file set resumes from a version 2 checkpoint of the same root and pattern, or, from a
    // version 1 checkpoint (a single path before), in the file that position names.
    void make_set_source(std::optional<Position> resume) {
        detail::SetStart start;
        start.positions = options_.resume_positions;
        if (resume) {
            start.positions.push_back(*resume);
        }
        if (auto* store = committer_.store()) {
            try {
                if (auto saved = store->load_state()) {
                    if (saved->version == 1) {
                        start.positions = {saved->files.front().position};
                    } else if (saved->root != options_.files->root.string() ||
                               saved->glob != options_.files->glob) {
                        throw CheckpointError(fmt::format(
                            "snaptail: checkpoint {}: it was saved for the file set {}/{}, not "
                            "for {}",
                            store->path().string(), saved->root, saved->glob,
                            source_name(options_)));
                    } else {
                        start.positions.clear();
                        start.saved = std::move(saved);
                    }
                }
            } catch (const CheckpointError& e) {
                if (options_.corrupt_checkpoint == CorruptCheckpoint::fail) {
                    throw;
                }
                reporter_.report(
                    ErrorKind::checkpoint,
                    fmt::format("{}; starting as TailOptions::start says instead", e.what()),
                    source_name(options_));
            }
        }
        if (options_.files->mode == FollowMode::all_files) {
            source_ = std::make_unique<detail::FollowAll>(options_, stats_, reporter_, pipeline_,
                                                          committer_, windows_, std::move(start));
        } else {
            source_ = std::make_unique<detail::FollowNewest>(
                options_, stats_, reporter_, pipeline_, committer_, windows_, std::move(start));
        }
    }

    void load_checkpoint(std::optional<Position>& resume) {
        auto* store = committer_.store();
        try {
            std::string saved_for;
            auto saved = store->load(&saved_for);
            if (saved && saved_for != options_.path.string()) {
                throw CheckpointError(
                    fmt::format("snaptail: checkpoint {}: it was saved for {}, not for {}",
                                store->path().string(), saved_for, options_.path.string()));
            }
            if (saved) {
                resume = saved;
            }
        } catch (const CheckpointError& e) {
            if (options_.corrupt_checkpoint == CorruptCheckpoint::fail) {
                throw;
            }
            reporter_.report(
                ErrorKind::checkpoint,
                fmt::format("{}; starting as TailOptions::start says instead", e.what()),
                options_.path.string());
        }
    }

    void sleep_unless_stopped(std::chrono::milliseconds delay) {
        const auto until = clock::now() + delay;
        for (auto now = clock::now(); now < until && !stop_.stop_requested(); now = clock::now()) {
            source_->wait(std::chrono::ceil<std::chrono::milliseconds>(until - now));
        }
    }

    bool idle_done(clock::time_point now) const {
        return options_.idle_exit.count() > 0 && pipeline_.idle() && source_->settled() &&
               now - last_input_ >= options_.idle_exit;
    }

    std::chrono::milliseconds next_timeout(clock::time_point now) const {
        auto deadline = now + options_.poll_interval;
        if (!pipeline_.framing_empty()) {
            deadline = std::min(deadline, pipeline_.framing_started() + options_.linger);
        }
        if (auto at = source_->deadline(now)) {
            deadline = std::min(deadline, *at);
        }
        if (options_.idle_exit.count() > 0) {
            deadline = std::min(deadline, last_input_ + options_.idle_exit);
        }
        if (committer_.pending()) {
            deadline = std::min(deadline, committer_.due());
        }
        if (deadline <= now) {
            return std::chrono::milliseconds{0};
        }
        return std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    }

    // Publishes the counters for stats(); with `files`, the per-file stats too, at most once a
    // second unless `final` (a file set may have thousands: at waits, not after every batch,
    // and into the one copy stats() readers see, not through another).
    void publish_stats(bool files, bool final = false) {
        source_->publish(stats_);
        stats_.budget_high_water = windows_.high_water();
        const auto now = clock::now();
        files = files && (final || now - files_published_ >= std::chrono::seconds{1});
        std::lock_guard lock(stats_mutex_);
        if (files) {
            source_->publish_files(shared_files_);
            files_published_ = now;
        }
        std::string file = std::move(shared_stats_.current_file);
        shared_stats_ = stats_;
        shared_stats_.current_file = std::move(file);
        if (const std::string* current = source_->current_file();
            current != nullptr && *current != shared_stats_.current_file) {
            shared_stats_.current_file = *current;  // a file set moved on to its next file
        }
    }

    const TailOptions options_;
    TailerStats stats_;  // owned by the running thread; published to shared_stats_
    detail::Reporter reporter_;
    detail::WindowPool windows_;  // before the pipeline and readers, which borrow from it
    detail::BatchPipeline<Parser, record_type> pipeline_;
    detail::Committer committer_;
    std::unique_ptr<detail::Source> source_;
    clock::time_point files_published_{};
    clock::time_point last_input_{};
    std::stop_token stop_;

    mutable std::mutex stats_mutex_;
    TailerStats shared_stats_;
    std::vector<FileStats> shared_files_;
    std::atomic<bool> running_{false};
    std::jthread thread_;  // last: joined before the members it uses are destroyed
};

}  // namespace snaptail
