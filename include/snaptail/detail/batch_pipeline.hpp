// From framed lines to the sink: batches are cut by lines, bytes, linger or a change of file,
// parsed here or by the pool while the previous batch goes to the sink, then released to their
// reader, whose position then moves (and is committed).
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/detail/catch_up.hpp>
#include <snaptail/detail/delivery.hpp>
#include <snaptail/detail/file_reader.hpp>
#include <snaptail/detail/parse_job.hpp>
#include <snaptail/detail/pipeline_control.hpp>
#include <snaptail/detail/reporter.hpp>
#include <snaptail/tail_options.hpp>
#include <snaptail/tailer_stats.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <functional>
#include <optional>
#include <stop_token>
#include <utility>

namespace snaptail::detail {

/// Two batches: one being framed (from one reader), the other being parsed or delivered
/// (possibly from another reader). Not thread-safe: owned by the tailer's thread; the pool's
/// threads only parse jobs and read ranges handed to them.
template <class Parser, class R>
class BatchPipeline final : public PipelineControl {
  public:
    using clock = std::chrono::steady_clock;
    using Job = ParseJob<R>;
    /// Called after a batch's lines were released to their reader (its position moved).
    using Released = std::function<void(FileReader&)>;
    /// Waits up to a delay unless stop is requested (the sink's backoff).
    using Sleep = std::function<void(std::chrono::milliseconds)>;

    /// Starts parse_threads - 1 threads when there are several (throws InvalidOptions for a
    /// parser that cannot be copied to them).
    BatchPipeline(const TailOptions& options, Parser parser, typename Delivery<R>::Sink sink,
                  TailerStats& totals, Reporter& reporter, std::size_t window_bytes)
        : options_(options),
          parser_(std::move(parser)),
          totals_(totals),
          delivery_(options, std::move(sink), totals, reporter),
          catch_up_(options, window_bytes) {
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
    }

    BatchPipeline(const BatchPipeline&) = delete;
    BatchPipeline& operator=(const BatchPipeline&) = delete;

    ~BatchPipeline() = default;

    bool has_sink() const noexcept { return delivery_.has_sink(); }

    // --- PipelineControl ----------------------------------------------------------------

    void end_file(FileReader& reader) override {
        switch_to(reader);
        if (inflight_ != nullptr) {
            deliver_inflight();  // its reader rests: a resting `reader` can borrow a window
        }
        reader.end_file(*this);
    }
    void forget(FileReader& reader) override {
        if (current_ == &reader || holds(reader)) {
            flush();
        }
        if (current_ == &reader) {
            current_ = nullptr;
        }
    }
    void finish(FileReader& reader) override {
        switch_to(reader);
        reader.frame_rest(*this);
        flush();
    }

    /// For the length of one run: the stop token, the backoff's sleep, the release hook.
    void begin_run(std::stop_token stop, Sleep sleep, Released released) {
        stop_ = std::move(stop);
        sleep_ = std::move(sleep);
        released_ = std::move(released);
        frozen_ = false;
    }
    const std::stop_token& stop_token() const noexcept { return stop_; }

    // --- framing ------------------------------------------------------------------------

    /// Lines from `reader` follow: a batch being framed from another reader is cut first, so
    /// that every batch comes from one file.
    void switch_to(FileReader& reader) {
        FileReader* previous = std::exchange(current_, &reader);
        if (previous != nullptr && previous != &reader) {
            cut(*previous, previous->scan());
            rest_if_idle(*previous);
        }
    }
    /// Adds a framed line of `reader` to the batch being framed; true when it is full.
    bool add(FileReader& reader, const LineRef& line) {
        auto& job = framing();
        if (job.lines.empty()) {
            job.started = clock::now();
            owners_[framing_index_] = &reader;
        }
        job.lines.push_back(line);
        job.bytes += line.text.size();
        return full();
    }
    bool full() const noexcept {
        const auto& job = jobs_[framing_index_];
        return job.lines.size() >= options_.max_batch_lines ||
               job.bytes >= options_.max_batch_bytes;
    }
    bool framing_empty() const noexcept { return jobs_[framing_index_].empty(); }
    clock::time_point framing_started() const noexcept { return jobs_[framing_index_].started; }

    /// Whether any of `reader`'s lines are in a batch not yet delivered.
    bool holds(const FileReader& reader) const noexcept {
        return holds_framing(reader) || (inflight_ != nullptr && owner(*inflight_) == &reader);
    }
    bool holds_framing(const FileReader& reader) const noexcept {
        return !framing_empty() && owners_[framing_index_] == &reader;
    }
    struct Inflight {
        const void* job{nullptr};
        std::size_t hold{0};
    };
    /// The batch in flight, if it holds lines of `reader`.
    Inflight inflight_of(const FileReader& reader) const noexcept {
        if (inflight_ == nullptr || owner(*inflight_) != &reader) {
            return {};
        }
        return {inflight_, inflight_->hold};
    }
    /// The reader wrapped below the batch in flight: releasing it frees from index `hold` on.
    void rebase_inflight_hold(std::size_t hold) noexcept { inflight_->hold = hold; }

    bool parallel() const noexcept { return pool_.has_value(); }

    bool linger_expired(clock::time_point now) const noexcept {
        return !framing_empty() && now - framing_started() >= options_.linger;
    }
    // While the batch in flight is still being parsed, the one being framed has to wait for it
    // to reach the sink anyway, so on a busy pipeline it keeps growing (up to the batch limits)
    // rather than being cut after every read, whatever the linger: small batches would make
    // the threads wait on each other once per read.
    bool parsing_inflight() const noexcept {
        return inflight_ != nullptr && inflight_->pending.load(std::memory_order_relaxed) != 0;
    }
    bool idle() const noexcept {
        return jobs_[0].empty() && jobs_[1].empty() && inflight_ == nullptr;
    }

    // --- catching up with all threads -----------------------------------------------------

    bool wants_range(FileReader& reader) {
        return pool_ && parsing_keeps_up_ && catch_up_.worthwhile(reader);
    }
    std::optional<bool> read_range(FileReader& reader) { return catch_up_.read(reader, *this); }
    // For CatchUp.
    bool parsing_keeps_up() const noexcept { return parsing_keeps_up_; }
    void parse_here(bool on) noexcept { parse_here_ = on; }
    void lines_from_now() noexcept { lines_since_ = clock::now(); }
    ParsePool<Parser, R>& pool() noexcept { return *pool_; }

    // --- cutting and delivering -----------------------------------------------------------

    // Ends the batch being framed at window index `new_hold` of `reader`. With a pool it is
    // handed to the parsing threads, and the batch before it (parsed meanwhile) goes to the
    // sink while they work; without one it is parsed and delivered here.
    void cut(FileReader& reader, std::size_t new_hold) {
        auto& job = framing();
        owners_[framing_index_] = &reader;
        job.end = reader.consumed_position();
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
            parse_lines(parser_, std::span<const LineRef>(job.lines), job.slices[0]);
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

    /// Delivers everything framed: the batch being framed and the one in flight.
    void flush() {
        if (current_ != nullptr) {
            cut(*current_, current_->scan());
        }
        if (inflight_ != nullptr) {
            deliver_inflight();
        }
    }

    /// Nothing more to read for now: a batch already parsed need not wait any longer.
    void deliver_parsed() {
        if (inflight_ != nullptr) {
            deliver_inflight();
        }
    }

    void deliver_inflight() {
        auto* job = std::exchange(inflight_, nullptr);
        pool_->wait(*job, parser_);
        deliver_job(*job);
    }

    /// Positions stay where they are from now on (set when a batch went undelivered at stop).
    bool frozen() const noexcept { return frozen_; }

  private:
    // Catching up with a parser that keeps up, the other threads read the backlog and this one
    // parses each batch itself: handing lines that cheap to another core would cost more in
    // cache misses than the parsing. Parsing that takes longer than getting the batch's lines
    // did hands parsing back to the threads.
    void parse_here(Job& job) {
        if (inflight_ != nullptr) {
            deliver_inflight();
        }
        const auto started = clock::now();
        parse_lines(parser_, std::span<const LineRef>(job.lines), job.slices[0]);
        const auto parsed = clock::now();
        parsing_keeps_up_ = parsed - started <= started - lines_since_;
        job.merge();
        deliver_job(job);
        lines_since_ = clock::now();
    }

    // Reports the batch's parse failures, hands its records to the sink (retrying a throwing
    // sink with backoff), then releases its part of the window and commits its position.
    void deliver_job(Job& job) {
        FileReader& reader = *owner(job);
        std::uint64_t first_line = 0;
        std::uint64_t last_line = 0;
        for (auto& slice : job.slices) {
            report_failures(reader, job, slice);
            if (slice.first_line != 0 && first_line == 0) {
                first_line = slice.first_line;
            }
            if (slice.last_line != 0) {
                last_line = slice.last_line;
            }
        }
        if (!job.records.empty()) {
            Batch<R> batch(std::span<R>(job.records), first_line, last_line, job.end, job.bytes,
                           job.batch_lines(), reader.path_text());
            if (frozen_) {
                delivery_.report_undelivered(batch, reader.path_text());
            } else if (!delivery_.send(batch, reader.path_text(), stop_, sleep_)) {
                // Stopped while the sink was failing: this batch and every later one stay
                // uncommitted, so a restart from the checkpoint delivers them, in order.
                frozen_ = true;
            }
        }
        release(job);
    }

    void report_failures(FileReader& reader, const Job& job, const ParsedSlice<R>& slice) {
        totals_.filtered += slice.filtered;
        totals_.parse_errors += slice.failures.size() + slice.unrecorded_failures;
        for (const auto& failure : slice.failures) {
            reader_report(reader, ErrorKind::parse,
                          fmt::format("parser threw: {}", failure.message), failure.offset,
                          failure.line);
        }
        if (slice.unrecorded_failures != 0) {
            reader_report(reader, ErrorKind::parse,
                          fmt::format("{} more lines of this batch failed to parse; out of "
                                      "memory for their messages",
                                      slice.unrecorded_failures),
                          job.lines.front().offset, job.lines.front().line);
        }
    }

    void reader_report(FileReader& reader, ErrorKind kind, std::string message,
                       std::uint64_t offset, std::uint64_t line) {
        reader.reporter().report(kind, std::move(message), reader.path_text(), offset, line);
    }

    void release(Job& job) {
        FileReader& reader = *owner(job);
        reader.released(&job, job.hold, job.end, frozen_);
        job.clear();
        if (&reader != current_) {
            rest_if_idle(reader);
        }
        if (released_) {
            released_(reader);
        }
    }

    // A reader that is not being read and has nothing framed pending gives its window back
    // (see WindowPool): memory then stays within read_ahead_bytes whatever the number of files.
    void rest_if_idle(FileReader& reader) noexcept {
        if (!holds(reader) && reader.can_rest()) {
            reader.rest();
        }
    }

    Job& framing() noexcept { return jobs_[framing_index_]; }
    FileReader* owner(const Job& job) const noexcept {
        return owners_[static_cast<std::size_t>(&job - jobs_.data())];
    }

    const TailOptions& options_;
    Parser parser_;
    TailerStats& totals_;
    Delivery<R> delivery_;
    std::array<Job, 2> jobs_;
    std::array<FileReader*, 2> owners_{};  // the reader each job's lines come from
    unsigned framing_index_{0};
    Job* inflight_{nullptr};
    FileReader* current_{nullptr};  // the reader being framed
    bool frozen_{false};            // a batch went undelivered at stop: commit nothing after it
    // Declared before pool_, whose threads may read into its ranges, so that they outlive it.
    CatchUp catch_up_;
    std::optional<ParsePool<Parser, R>> pool_;
    // Whether parsing keeps up with reading: with the pool, the last batch waited for was
    // parsed before it was needed; parsing here, it took no longer than getting its lines.
    bool parsing_keeps_up_{true};
    bool parse_here_{false};         // while stitching ranges: batches are parsed on this thread
    clock::time_point lines_since_;  // parsing here: when this batch's lines began to be got
    std::stop_token stop_;
    Sleep sleep_;
    Released released_;
};

}  // namespace snaptail::detail
