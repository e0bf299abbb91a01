// A batch between framing and delivery: its lines, then its parsed records; and the pool of
// threads that parses batches in contiguous slices when parse_threads > 1.
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/detail/range_read.hpp>
#include <snaptail/line_parser.hpp>
#include <snaptail/position.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace snaptail::detail {

/// A line whose parse threw.
struct ParseFailure {
    std::uint64_t line;
    std::uint64_t offset;
    std::string message;
};

/// What parsing one slice of a batch produced. Vectors are recycled between batches.
template <class R>
struct ParsedSlice {
    std::vector<R> records;
    std::vector<ParseFailure> failures;
    std::uint64_t filtered{0};
    std::uint64_t unrecorded_failures{0};  // failures that could not be stored (out of memory)
    std::uint64_t first_line{0};           // of the first record
    std::uint64_t last_line{0};            // of the last record
    // Indices (in the job's lines) of the lines that gave no record (filtered or failed), in
    // order: Batch::line_of maps a record back to its line with them. Grows only on drops.
    std::vector<std::uint32_t> dropped;

    void clear() noexcept {
        records.clear();
        failures.clear();
        dropped.clear();
        filtered = 0;
        unrecorded_failures = 0;
        first_line = last_line = 0;
    }
};

/// Stores a parse failure; when even that fails (out of memory), counts it instead.
template <class R>
void record_failure(ParsedSlice<R>& out, const LineRef& line, const char* message) noexcept {
    try {
        out.failures.push_back({line.line, line.offset, message});
    } catch (...) {
        ++out.unrecorded_failures;
    }
}

/// Parses `lines` (the job's lines from index `first` on) in order into `out`. Never throws: a
/// parser's exception becomes a failure of its line, and so does running out of memory for the
/// record. No allocation per line beyond the record vector's growth (and the parser's own).
template <class Parser, class R>
void parse_lines(Parser& parser, std::span<const LineRef> lines, ParsedSlice<R>& out,
                 std::size_t first = 0) {
    // Room for every line to be dropped, so that noting a drop never allocates (or fails).
    try {
        out.dropped.reserve(out.dropped.size() + lines.size());
    } catch (...) {
        // Out of memory before parsing: no record could be mapped to its line, so none is made;
        // every line is counted (and reported) as a failure rather than lost quietly.
        out.unrecorded_failures += lines.size();
        return;
    }
    // The per-line writes go to locals: two threads parse neighbouring slices of one job, and
    // the slices sit side by side in a vector, so writing `out` per line would bounce its cache
    // line between the cores (false sharing).
    std::vector<R> records = std::move(out.records);
    const bool had_records = !records.empty();
    std::size_t index = first;
    std::uint64_t filtered = 0;
    std::uint64_t first_line = 0;
    std::uint64_t last_line = 0;
    for (const LineRef& line : lines) {
        const auto at = static_cast<std::uint32_t>(index++);
        try {
            if constexpr (unwrap_optional<parse_result_t<Parser>>::is_optional) {
                auto record = parser.parse(line.text);
                if (!record) {
                    ++filtered;
                    out.dropped.push_back(at);
                    continue;
                }
                records.push_back(std::move(*record));
            } else {
                records.push_back(parser.parse(line.text));
            }
        } catch (const std::exception& e) {
            record_failure(out, line, e.what());
            out.dropped.push_back(at);
            continue;
        } catch (...) {
            record_failure(out, line, "parser threw a non-std exception");
            out.dropped.push_back(at);
            continue;
        }
        if (first_line == 0) {
            first_line = line.line;
        }
        last_line = line.line;
    }
    if (!had_records && first_line != 0) {
        out.first_line = first_line;
    }
    if (last_line != 0) {
        out.last_line = last_line;
    }
    out.filtered += filtered;
    out.records = std::move(records);
}

/// One batch on its way from the framer to the sink.
template <class R>
struct ParseJob {
    std::vector<LineRef> lines;
    std::vector<ParsedSlice<R>> slices;  // one per chunk of lines, in file order
    std::vector<R> records;              // the slices' records, merged in file order
    std::vector<std::uint32_t> dropped;  // the slices' dropped line indices, merged in order
    std::size_t bytes{0};                // line bytes offered to the parser
    std::chrono::steady_clock::time_point started{};
    Position end;                // just past the last line consumed for this batch
    std::size_t hold{0};         // buffer index up to which it may be released once delivered
    std::size_t chunk_lines{0};  // lines per chunk (the last may have fewer)
    std::atomic<std::size_t> next_chunk{0};  // the next chunk a thread may take
    std::atomic<std::size_t> pending{0};     // chunks not parsed yet
    std::size_t active{0};  // workers holding this job (guarded by the pool's mutex)

    bool empty() const noexcept { return lines.empty(); }

    void clear() noexcept {
        lines.clear();
        for (auto& slice : slices) {
            slice.clear();
        }
        records.clear();
        dropped.clear();
        bytes = 0;
    }

    /// Moves the slices' records into `records`, in order (a swap when only the first slice
    /// has any: a single slice, or a job parsed by one thread).
    void merge() {
        merge_dropped();
        if (std::all_of(slices.begin() + 1, slices.end(),
                        [](const ParsedSlice<R>& slice) { return slice.records.empty(); })) {
            records.swap(slices[0].records);
            return;
        }
        std::size_t total = 0;
        for (const auto& slice : slices) {
            total += slice.records.size();
        }
        records.reserve(total);
        for (auto& slice : slices) {
            for (auto& record : slice.records) {
                records.push_back(std::move(record));
            }
            slice.records.clear();
        }
    }

    /// The lines of record `i` of `records` (after merge()), for Batch::line_of.
    BatchLines batch_lines() const noexcept {
        return BatchLines{std::span<const LineRef>(lines), std::span<const std::uint32_t>(dropped)};
    }

  private:
    void merge_dropped() {
        if (std::all_of(slices.begin() + 1, slices.end(),
                        [](const ParsedSlice<R>& slice) { return slice.dropped.empty(); })) {
            dropped.swap(slices[0].dropped);
            return;
        }
        for (auto& slice : slices) {
            dropped.insert(dropped.end(), slice.dropped.begin(), slice.dropped.end());
        }
    }
};

/// Threads that parse jobs in chunks. Jobs queue in submission order; workers take chunks of
/// the oldest job and move on to the next as soon as its chunks are all taken, so a new batch
/// can be submitted before the previous one is finished and nobody idles between batches.
/// The tailer's thread parses chunks of a job too while it waits for it. Each thread parses
/// with its own copy of the parser. The same threads read the pieces of a RangeRead (one at a
/// time, before any queued parsing) when the tailer catches up on a backlog. submit(), wait(),
/// submit_read() and wait_read() belong to one thread (the tailer's); the workers are joined
/// on destruction.
template <class Parser, class R>
class ParsePool {
  public:
    ParsePool(unsigned threads, const Parser& parser) : thread_count_(threads) {
        parsers_.reserve(threads);
        for (unsigned i = 0; i < threads; ++i) {
            parsers_.push_back(parser);
        }
        workers_.reserve(threads);
        for (unsigned i = 0; i < threads; ++i) {
            workers_.emplace_back([this, i](std::stop_token stop) { work(i, stop); });
        }
    }
    ParsePool(const ParsePool&) = delete;
    ParsePool& operator=(const ParsePool&) = delete;
    ~ParsePool() {
        for (auto& worker : workers_) {
            worker.request_stop();
        }
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        start_.notify_all();
    }  // jthreads join here

    std::size_t threads() const noexcept { return thread_count_; }

    /// Queues `job` for parsing. Never blocks beyond the lock; allocates only while the queue
    /// grows. The job must stay alive and untouched until wait(job) returns.
    void submit(ParseJob<R>& job) {
        const std::size_t n = job.lines.size();
        const std::size_t chunks = std::max<std::size_t>(
            1, std::min(n / min_chunk_lines, (thread_count_ + 1) * chunks_per_thread));
        job.chunk_lines = (n + chunks - 1) / chunks;
        job.slices.resize(chunks);
        job.next_chunk.store(0, std::memory_order_relaxed);
        job.pending.store(chunks, std::memory_order_relaxed);
        {
            std::lock_guard lock(mutex_);
            job.active = 0;
            queue_.push_back(&job);
        }
        start_.notify_all();
    }

    /// Queues `read` ahead of any parsing. Never blocks beyond the lock; never allocates. The
    /// read must stay alive and untouched until wait_read(read) returns.
    void submit_read(RangeRead& read) {
        {
            std::lock_guard lock(mutex_);
            read.active = 0;
            read_ = &read;
        }
        start_.notify_all();
    }

    /// Reads pieces of `read` while any remain, then blocks until the workers' pieces are read
    /// too. After it returns no worker touches `read` or the buffer it was read into.
    void wait_read(RangeRead& read) {
        bool last = false;
        while (read.take_piece(last)) {
        }
        std::unique_lock lock(mutex_);
        if (read_ == &read) {
            read_ = nullptr;
        }
        done_.wait(lock, [&] {
            return read.pending.load(std::memory_order_acquire) == 0 && read.active == 0;
        });
    }

    /// Parses chunks of `job` with `parser` (the caller's own) while any remain, then blocks
    /// until the workers' chunks are done too, and merges the records in file order.
    void wait(ParseJob<R>& job, Parser& parser) {
        while (take_chunk(job, parser)) {
        }
        {
            // Done when every chunk is parsed and no worker still holds the job: after this,
            // the job may be cleared and refilled without a late worker touching it.
            std::unique_lock lock(mutex_);
            retire_locked(job);
            done_.wait(lock, [&] {
                return job.pending.load(std::memory_order_acquire) == 0 && job.active == 0;
            });
        }
        job.merge();
    }

  private:
    static constexpr std::size_t chunks_per_thread = 8;
    static constexpr std::size_t min_chunk_lines = 32;

    // Takes `job` off the queue once all its chunks are taken: nobody new may pick it up.
    void retire_locked(ParseJob<R>& job) {
        const auto it = std::find(queue_.begin(), queue_.end(), &job);
        if (it != queue_.end()) {
            queue_.erase(it);
        }
    }

    // Parses the next untaken chunk, if any; false when none is left.
    bool take_chunk(ParseJob<R>& job, Parser& parser) {
        const std::size_t chunk = job.next_chunk.fetch_add(1, std::memory_order_relaxed);
        if (chunk >= job.slices.size()) {
            return false;
        }
        const std::size_t begin = chunk * job.chunk_lines;
        const std::size_t end = std::min(job.lines.size(), begin + job.chunk_lines);
        parse_lines(parser, std::span<const LineRef>(job.lines).subspan(begin, end - begin),
                    job.slices[chunk], begin);
        if (job.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            std::lock_guard lock(mutex_);  // so that the waiter cannot miss the notification
            done_.notify_one();
        }
        return true;
    }

    // Reads pieces of `read` while any remain (a worker's share of a range read).
    void read_pieces(std::unique_lock<std::mutex>& lock) {
        RangeRead* read = read_;
        ++read->active;
        lock.unlock();
        bool last = false;
        while (read->take_piece(last)) {
            if (last) {
                std::lock_guard notify_lock(mutex_);
                done_.notify_one();
            }
        }
        lock.lock();
        if (read_ == read) {
            read_ = nullptr;  // all its pieces are taken
        }
        --read->active;
        done_.notify_one();
    }

    void work(unsigned index, std::stop_token stop) {
        for (;;) {
            ParseJob<R>* job = nullptr;
            {
                std::unique_lock lock(mutex_);
                start_.wait(lock, [&] { return !queue_.empty() || read_ != nullptr || stopping_; });
                if (stopping_ || stop.stop_requested()) {
                    return;
                }
                if (read_ != nullptr) {
                    read_pieces(lock);
                    continue;
                }
                job = queue_.front();
                ++job->active;
            }
            while (take_chunk(*job, parsers_[index])) {
            }
            std::lock_guard lock(mutex_);
            retire_locked(*job);  // all its chunks are taken: the next job is at the front
            --job->active;
            done_.notify_one();
        }
    }

    const std::size_t thread_count_;
    std::vector<Parser> parsers_;
    std::mutex mutex_;
    std::condition_variable start_;
    std::condition_variable done_;
    std::vector<ParseJob<R>*> queue_;  // jobs with chunks left to take, oldest first
    RangeRead* read_{nullptr};         // a range read with pieces left to take
    bool stopping_{false};
    std::vector<std::jthread> workers_;  // last: stopped and joined first
};

}  // namespace snaptail::detail
