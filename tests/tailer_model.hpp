// The model-based randomized test of BatchingTailer: operation sequences over one followed path,
// generated from a seed, run against the real tailer in a temporary directory and against an
// in-memory model of what must be delivered; a failing sequence is shrunk and printed so that
// one environment variable replays it.
//
// How the model stays exact. Operations run on the test thread; the tailer runs on its own.
// Before anything that depends on what the tailer has read (rotate, truncate, delete, stop,
// crash, and the end of a sequence) the test waits until the tailer has delivered every complete
// line written so far, reported every line the parser rejects, and read the current file to its
// end (its unterminated last line pending). At those points the model knows what was read, and
// the documented rules say what happens next: a rotated, deleted or truncated file's
// unterminated last line is delivered as a line; line numbers restart in a new file and after a
// truncation; a clean stop delivers what was read and commits.
//
// How a crash is emulated. The sink is armed to "crash" at its next batch, before or after taking
// it (or the error handler, as the tailer reports a truncation). At that moment it copies the
// checkpoint file: what a process killed there would leave behind (checkpoints are replaced
// atomically). From then on the tailer's deliveries and reports are ignored, as a dead process
// makes none; it is stopped, the copy is put back, and a new tailer resumes from it. With
// commit_interval 0 every accepted batch is committed before the next is offered, so the new
// tailer must resume exactly at the first line of the interrupted batch: nothing lost, and at
// most that one batch (<= max_batch_lines lines) delivered twice. Rejected lines after the last
// accepted one may be reported again.
//
// What is checked, per tailer instance: its deliveries are exactly the model's accepted lines
// from where it must resume, in order, with the batch line numbers the model gives; its parse
// reports are consecutive rejected lines with their line numbers and offsets; in-run truncation
// reports carry the size that was read; sink failures are all reported and counted; no other
// fault is reported, except a gap or a resume-time truncation where the checkpoint may name a
// file that is gone; the stats agree with what the sink and the handler saw; and the read-ahead
// high water stays within read_ahead_bytes. At the end, the last tailer has delivered every line.
#pragma once

#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>
#include <snaptail/detail/followed_file.hpp>

#include <dirent.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace snaptail::test::model {

using clock = std::chrono::steady_clock;

// --- random numbers --------------------------------------------------------------------------

/// SplitMix64 with its own range reduction: a seed means the same sequence with every compiler
/// and standard library (std:: distributions differ between them).
class Random {
  public:
    explicit Random(std::uint64_t seed) noexcept : state_(seed) {}

    std::uint64_t next() noexcept {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    /// Uniform enough in [0, n); n > 0.
    unsigned below(unsigned n) noexcept { return static_cast<unsigned>(next() % n); }
    bool percent(unsigned p) noexcept { return below(100) < p; }
    template <class T, std::size_t N>
    T pick(const std::array<T, N>& choices) noexcept {
        return choices[below(static_cast<unsigned>(N))];
    }

  private:
    std::uint64_t state_;
};

// --- configuration --------------------------------------------------------------------------

/// Lines are never longer than this, so the long-line policy never applies.
inline constexpr std::size_t max_line_bytes = 512;
/// An unterminated line is never grown beyond this (a completed one stays below max_line_bytes).
inline constexpr std::size_t max_partial_bytes = 300;
/// Lines that contain this make the parser throw.
inline constexpr std::string_view bad_marker = "!bad";

/// The tailer options and the starting state of one sequence, drawn from its seed.
struct Config {
    std::size_t max_batch_lines{4096};
    std::size_t max_batch_bytes{std::size_t{1} << 20};
    std::size_t read_ahead_bytes{std::size_t{1} << 16};
    std::chrono::milliseconds linger{1};
    std::chrono::milliseconds poll_interval{5};
    std::chrono::milliseconds rotate_wait{10};
    std::chrono::milliseconds sink_retry{1};
    unsigned parse_threads{1};
    bool use_inotify{true};
    bool initial_file{false};   ///< The path exists when the first tailer starts...
    unsigned initial_lines{0};  ///< ...holding this many lines.
};

inline Config config_for(std::uint64_t seed) {
    using std::chrono::milliseconds;
    Random random(seed ^ 0x636f6e666967ULL);
    Config c;
    c.max_batch_lines = random.pick(std::array<std::size_t, 6>{1, 2, 3, 5, 16, 4096});
    c.max_batch_bytes = random.pick(std::array<std::size_t, 4>{64, 300, 4096, 1 << 20});
    c.read_ahead_bytes = random.pick(std::array<std::size_t, 3>{1024, 4096, 1 << 16});
    c.linger = milliseconds{random.below(3)};
    c.use_inotify = random.percent(80);
    c.poll_interval = milliseconds{c.use_inotify ? 10 : 2 + random.below(4)};
    c.rotate_wait = random.pick(
        std::array<milliseconds, 3>{milliseconds{0}, milliseconds{5}, milliseconds{10}});
    c.sink_retry = milliseconds{random.below(2)};
    c.parse_threads = random.pick(std::array<unsigned, 4>{1, 1, 2, 3});
    c.initial_file = random.percent(60);
    c.initial_lines = c.initial_file ? random.below(6) : 0;
    return c;
}

inline std::string describe(const Config& c) {
    return fmt::format(
        "max_batch_lines={} max_batch_bytes={} read_ahead_bytes={} linger={}ms poll_interval={}ms "
        "rotate_wait={}ms sink_retry={}ms parse_threads={} use_inotify={} initial_file={} "
        "initial_lines={}",
        c.max_batch_lines, c.max_batch_bytes, c.read_ahead_bytes, c.linger.count(),
        c.poll_interval.count(), c.rotate_wait.count(), c.sink_retry.count(), c.parse_threads,
        c.use_inotify, c.initial_file, c.initial_lines);
}

/// The path is dir/app.log, rotated to app.log.N, copied to app.log.cN; the checkpoint is
/// dir/checkpoint, outside the rotated_glob "app.log.*".
inline TailOptions options_for(const Config& c, const fs::path& dir) {
    TailOptions options;
    options.path = dir / "app.log";
    options.checkpoint_path = dir / "checkpoint";
    options.max_batch_lines = c.max_batch_lines;
    options.max_batch_bytes = c.max_batch_bytes;
    options.read_ahead_bytes = c.read_ahead_bytes;
    options.max_line_bytes = max_line_bytes;
    options.linger = c.linger;
    options.poll_interval = c.poll_interval;
    options.use_inotify = c.use_inotify;
    options.rotate_wait = c.rotate_wait;
    options.sink_retry_initial = c.sink_retry;
    options.sink_retry_max = c.sink_retry * 2;
    options.parse_threads = c.parse_threads;
    options.commit_interval = std::chrono::milliseconds{0};  // the duplicate bound is one batch
    return options;
}

// --- operations -----------------------------------------------------------------------------

enum class OpKind {
    lines,           ///< append n whole lines in `writes` write(2) calls
    partial,         ///< append an unterminated piece of a line
    complete,        ///< append the rest of a line and its '\n'
    rotate,          ///< rename to app.log.N and create an empty app.log
    truncate,        ///< copy to app.log.cN and truncate to 0
    remove,          ///< delete the file
    recreate,        ///< create the deleted file anew, empty
    pause,           ///< the sink blocks until the next synchronisation point
    sink_throw,      ///< the sink throws on its next n calls
    restart,         ///< stop, append n lines while stopped, start a new tailer from the checkpoint
    rotate_stopped,  ///< stop, append n lines, rotate while stopped, start from the checkpoint
    crash,           ///< the tailer dies at its next batch (in a burst of n lines), then restarts
    truncate_crash,  ///< copy and truncate; the tailer dies as it reports it; n lines are
                     ///< written while it is down; it restarts
    stop_failing,    ///< stop while the sink throws on a burst of n lines, then restart
};

inline constexpr std::array<std::string_view, 14> op_names{
    "lines", "partial", "complete", "rotate",         "truncate", "delete",         "recreate",
    "pause", "throw",   "restart",  "rotate-stopped", "crash",    "truncate-crash", "stop-failing"};

inline std::string_view name_of(OpKind kind) {
    return op_names[static_cast<std::size_t>(kind)];
}

inline std::optional<OpKind> kind_named(std::string_view name) {
    for (std::size_t i = 0; i < op_names.size(); ++i) {
        if (op_names[i] == name) {
            return static_cast<OpKind>(i);
        }
    }
    return std::nullopt;
}

struct Op {
    OpKind kind{OpKind::lines};
    unsigned n{0};       ///< lines, restarts, crash, stop-failing: lines; throw: failures
    unsigned bad{0};     ///< bit i: line i makes the parser throw (partial, complete: bit 0)
    unsigned writes{1};  ///< lines: write(2) calls the bytes are split into
    unsigned pad{0};     ///< filler bytes in each line or piece
    bool after{false};   ///< crash: the sink had taken the batch when the tailer died

    friend bool operator==(const Op&, const Op&) = default;
};

/// "lines(n=3,bad=5,writes=2,pad=10)": the name, then the fields that differ from the default.
inline std::string to_string(const Op& op) {
    std::vector<std::string> fields;
    if (op.n != 0) {
        fields.push_back(fmt::format("n={}", op.n));
    }
    if (op.bad != 0) {
        fields.push_back(fmt::format("bad={}", op.bad));
    }
    if (op.writes != 1) {
        fields.push_back(fmt::format("writes={}", op.writes));
    }
    if (op.pad != 0) {
        fields.push_back(fmt::format("pad={}", op.pad));
    }
    if (op.after) {
        fields.push_back("after=1");
    }
    std::string out(name_of(op.kind));
    if (!fields.empty()) {
        out += fmt::format("({})", fmt::join(fields, ","));
    }
    return out;
}

inline std::string to_string(const std::vector<Op>& ops) {
    std::vector<std::string> parts;
    parts.reserve(ops.size());
    for (const auto& op : ops) {
        parts.push_back(to_string(op));
    }
    return fmt::format("{}", fmt::join(parts, " "));
}

/// Parses what to_string(ops) printed. Throws std::invalid_argument naming the bad token.
inline std::vector<Op> parse_ops(std::string_view text) {
    std::vector<Op> ops;
    std::istringstream words{std::string(text)};
    std::string token;
    while (words >> token) {
        const auto open = token.find('(');
        const std::string_view name = std::string_view(token).substr(0, open);
        const auto kind = kind_named(name);
        if (!kind) {
            throw std::invalid_argument(fmt::format("unknown operation '{}'", token));
        }
        Op op{*kind};
        if (open != std::string::npos) {
            if (token.back() != ')') {
                throw std::invalid_argument(fmt::format("missing ')' in '{}'", token));
            }
            std::string_view fields =
                std::string_view(token).substr(open + 1, token.size() - open - 2);
            while (!fields.empty()) {
                const auto comma = fields.find(',');
                const std::string_view field = fields.substr(0, comma);
                fields =
                    comma == std::string_view::npos ? std::string_view{} : fields.substr(comma + 1);
                const auto eq = field.find('=');
                unsigned value = 0;
                const std::string_view digits =
                    eq == std::string_view::npos ? std::string_view{} : field.substr(eq + 1);
                const auto [end, ec] =
                    std::from_chars(digits.data(), digits.data() + digits.size(), value);
                if (eq == std::string_view::npos || ec != std::errc{} ||
                    end != digits.data() + digits.size()) {
                    throw std::invalid_argument(
                        fmt::format("bad field '{}' in '{}'", field, token));
                }
                const std::string_view key = field.substr(0, eq);
                if (key == "n") {
                    op.n = value;
                } else if (key == "bad") {
                    op.bad = value;
                } else if (key == "writes") {
                    op.writes = value;
                } else if (key == "pad") {
                    op.pad = value;
                } else if (key == "after") {
                    op.after = value != 0;
                } else {
                    throw std::invalid_argument(
                        fmt::format("unknown field '{}' in '{}'", key, token));
                }
            }
        }
        ops.push_back(op);
    }
    return ops;
}

/// A bit mask over `bits` bits, each set with probability percent/100.
inline unsigned random_mask(Random& random, unsigned bits, unsigned percent) {
    unsigned mask = 0;
    for (unsigned i = 0; i < bits && i < 32; ++i) {
        if (random.percent(percent)) {
            mask |= 1u << i;
        }
    }
    return mask;
}

/// 5 to 16 operations from `seed`, each valid in the state the previous ones leave (the runner
/// also copes with invalid ones, which shrinking produces: it skips them). `excluded` kinds are
/// never drawn.
inline std::vector<Op> generate(std::uint64_t seed, const Config& config,
                                const std::vector<OpKind>& excluded = {}) {
    Random random(seed ^ 0x6f7065726174696fULL);
    bool exists = config.initial_file;
    std::size_t partial = 0;
    struct Weight {
        OpKind kind;
        unsigned weight;
    };
    const std::array<Weight, 14> weights{{{OpKind::lines, 30},
                                          {OpKind::partial, 9},
                                          {OpKind::complete, 9},
                                          {OpKind::rotate, 7},
                                          {OpKind::truncate, 5},
                                          {OpKind::remove, 5},
                                          {OpKind::recreate, 40},
                                          {OpKind::pause, 4},
                                          {OpKind::sink_throw, 4},
                                          {OpKind::restart, 2},
                                          {OpKind::rotate_stopped, 2},
                                          {OpKind::crash, 4},
                                          {OpKind::truncate_crash, 2},
                                          {OpKind::stop_failing, 1}}};
    auto valid = [&](OpKind kind) {
        if (std::find(excluded.begin(), excluded.end(), kind) != excluded.end()) {
            return false;
        }
        switch (kind) {
            case OpKind::complete:
                return partial > 0;
            case OpKind::partial:
                return partial + 60 <= max_partial_bytes;
            case OpKind::rotate:
            case OpKind::truncate:
            case OpKind::remove:
            case OpKind::rotate_stopped:
            case OpKind::truncate_crash:
                return exists;
            case OpKind::recreate:
                return !exists;
            default:
                return true;
        }
    };
    const unsigned length = 5 + random.below(12);
    std::vector<Op> ops;
    while (ops.size() < length) {
        unsigned total = 0;
        for (const auto& w : weights) {
            total += valid(w.kind) ? w.weight : 0;
        }
        if (total == 0) {
            break;
        }
        unsigned draw = random.below(total);
        OpKind kind = OpKind::lines;
        for (const auto& w : weights) {
            if (!valid(w.kind)) {
                continue;
            }
            if (draw < w.weight) {
                kind = w.kind;
                break;
            }
            draw -= w.weight;
        }
        Op op{kind};
        switch (kind) {
            case OpKind::lines:
                op.n = 1 + random.below(random.percent(15) ? 40 : 6);
                op.bad = random.percent(25) ? random_mask(random, op.n, 25) : 0;
                op.writes = 1 + random.below(3);
                op.pad = random.pick(std::array<unsigned, 5>{0, 3, 10, 40, 120});
                exists = true;
                partial = 0;
                break;
            case OpKind::partial:
                op.pad = random.below(40);
                op.bad = random.percent(15) ? 1 : 0;
                exists = true;
                partial += 12 + op.pad;
                break;
            case OpKind::complete:
                op.pad = random.below(40);
                op.bad = random.percent(15) ? 1 : 0;
                partial = 0;
                break;
            case OpKind::rotate:
            case OpKind::truncate:
            case OpKind::recreate:
                exists = true;
                partial = 0;
                break;
            case OpKind::remove:
                exists = false;
                partial = 0;
                break;
            case OpKind::sink_throw:
                op.n = 1 + random.below(3);
                break;
            case OpKind::crash:
                op.n = 2 + random.below(10);
                op.bad = random.percent(30) ? random_mask(random, op.n - 1, 25) : 0;
                op.pad = random.pick(std::array<unsigned, 3>{0, 10, 60});
                op.after = random.percent(50);
                exists = true;
                partial = 0;
                break;
            case OpKind::truncate_crash:
                op.n = 1 + random.below(8);
                op.bad = random.percent(30) ? random_mask(random, op.n, 25) : 0;
                op.pad = random.pick(std::array<unsigned, 3>{0, 10, 60});
                partial = 0;
                break;
            case OpKind::stop_failing:
                op.n = 1 + random.below(6);
                op.bad = random.percent(30) ? random_mask(random, op.n - 1, 25) : 0;
                exists = true;
                partial = 0;
                break;
            case OpKind::restart:
                op.n = random.percent(50) ? random.below(4) : 0;
                op.bad = random.percent(30) ? random_mask(random, op.n, 30) : 0;
                partial = op.n > 0 ? 0 : partial;
                break;
            case OpKind::rotate_stopped:
                op.n = random.below(4);
                op.bad = random.percent(30) ? random_mask(random, op.n, 30) : 0;
                partial = 0;
                break;
            case OpKind::pause:
                break;
        }
        ops.push_back(op);
    }
    return ops;
}

// --- the model ------------------------------------------------------------------------------

/// A line the tailer must deliver (or report, when the parser rejects it): its text, its
/// 1-based number and the byte offset of its start in its file.
struct Expected {
    std::string text;
    bool bad{false};
    std::uint64_t line{0};
    std::uint64_t offset{0};
};

/// What the followed path holds, and every line ever framed from it in delivery order.
/// A file's unterminated last line becomes a line when the file is retired (rotated, deleted,
/// truncated), as the library documents.
class Model {
  public:
    bool exists() const noexcept { return exists_; }
    FileId file() const noexcept { return file_; }
    std::size_t size() const noexcept { return content_.size(); }
    /// Bytes of the unterminated last line.
    std::size_t partial() const noexcept { return content_.size() - framed_; }

    const std::vector<Expected>& all() const noexcept { return all_; }
    /// Indices into all() of the lines the sink must get, and of those the parser rejects.
    const std::vector<std::size_t>& good() const noexcept { return good_; }
    const std::vector<std::size_t>& bad() const noexcept { return bad_; }
    const Expected& good_line(std::size_t i) const { return all_[good_[i]]; }
    const Expected& bad_line(std::size_t i) const { return all_[bad_[i]]; }

    std::optional<std::size_t> good_index(const std::string& text) const {
        const auto it = good_by_text_.find(text);
        return it == good_by_text_.end() ? std::nullopt : std::optional(it->second);
    }
    std::optional<std::size_t> bad_index(const std::string& text) const {
        const auto it = bad_by_text_.find(text);
        return it == bad_by_text_.end() ? std::nullopt : std::optional(it->second);
    }
    /// How many rejected lines come before all()[index].
    std::size_t bad_before(std::size_t index) const {
        return static_cast<std::size_t>(std::lower_bound(bad_.begin(), bad_.end(), index) -
                                        bad_.begin());
    }

    /// A new, empty file at the path.
    void create(FileId id) {
        exists_ = true;
        file_ = id;
        restart_numbering();
    }
    void append(std::string_view bytes) {
        content_ += bytes;
        for (auto nl = content_.find('\n', framed_); nl != std::string::npos;
             nl = content_.find('\n', framed_)) {
            add(content_.substr(framed_, nl - framed_));
            framed_ = nl + 1;
        }
    }
    /// Copy-and-truncate: the unterminated line is a line; the same file starts over.
    void truncate() {
        finish();
        restart_numbering();
    }
    /// Rename or delete: the unterminated line is a line; the path no longer names this file.
    void retire() {
        finish();
        exists_ = false;
        restart_numbering();
    }

  private:
    void finish() {
        if (framed_ < content_.size()) {
            add(content_.substr(framed_));
            framed_ = content_.size();
        }
    }
    void restart_numbering() {
        content_.clear();
        framed_ = 0;
        lines_ = 0;
    }
    void add(std::string text) {
        const bool is_bad = text.find(bad_marker) != std::string::npos;
        const std::size_t index = all_.size();
        (is_bad ? bad_by_text_ : good_by_text_).emplace(text, (is_bad ? bad_ : good_).size());
        (is_bad ? bad_ : good_).push_back(index);
        all_.push_back(Expected{std::move(text), is_bad, ++lines_, framed_});
    }

    bool exists_{false};
    FileId file_{};
    std::string content_;
    std::size_t framed_{0};
    std::uint64_t lines_{0};
    std::vector<Expected> all_;
    std::vector<std::size_t> good_;
    std::vector<std::size_t> bad_;
    std::unordered_map<std::string, std::size_t> good_by_text_;
    std::unordered_map<std::string, std::size_t> bad_by_text_;
};

// --- what the tailers did -------------------------------------------------------------------

/// Rejects the lines that contain bad_marker; the exception's message is the line.
struct MarkingParser {
    std::string_view parse(std::string_view line) const {
        if (line.find(bad_marker) != std::string_view::npos) {
            throw std::runtime_error(std::string(line));
        }
        return line;
    }
};

using Tailer = BatchingTailer<MarkingParser>;

struct BatchRecord {
    std::size_t begin{0};  ///< index in Instance::lines of its first record
    std::size_t size{0};
    std::uint64_t first_line{0};
    std::uint64_t last_line{0};
};

struct ParseReport {
    std::string text;
    std::uint64_t line{0};
    std::uint64_t offset{0};
};

/// Why a tailer instance started, which decides where it must resume.
enum class Start { first, clean, crash, failed_stop };

inline std::string_view name_of(Start start) {
    switch (start) {
        case Start::first:
            return "the first start";
        case Start::clean:
            return "a clean restart";
        case Start::crash:
            return "a crash-restart";
        case Start::failed_stop:
            return "a restart after a stop while the sink failed";
    }
    return "?";
}

/// One tailer's life: what the model expects of it, and what it did.
struct Instance {
    // Expected (set by the test thread when it starts the instance).
    Start start{Start::first};
    std::size_t good_start{0};  ///< index in Model::good() of its first delivered line
    std::size_t bad_low{0};     ///< its first parse report is Model::bad()[i], bad_low <= i...
    std::size_t bad_high{0};    ///< ...<= bad_high
    bool checkpoint_may_be_gone{false};  ///< so a gap, or a "truncation" of a reused inode
    std::vector<std::uint64_t> truncations_expected;  ///< offsets of in-run truncation reports
    bool stopped_while_failing{false};

    // Observed (under the recorder's mutex).
    std::vector<std::string> lines;
    std::vector<BatchRecord> batches;
    std::vector<ParseReport> parse;
    std::vector<Error> truncations;  ///< "the file shrank" while running
    std::vector<Error> resume_truncations;
    std::vector<Error> gaps;
    std::size_t sink_errors{0};
    std::size_t sink_throws{0};
    std::size_t undelivered{0};
    std::vector<Error> unexpected;
    bool crashed{false};
    bool crash_after{false};
    std::size_t crash_begin{0};  ///< lines recorded before the interrupted batch
    std::size_t crash_size{0};
    std::optional<std::string> snapshot;  ///< the checkpoint file at the crash (none: no file)
    std::optional<TailerStats> final_stats;
};

/// The sink and error handler of every tailer in a sequence, with the faults the test injects.
class Recorder {
  public:
    explicit Recorder(fs::path checkpoint) : checkpoint_(std::move(checkpoint)) {}

    std::function<void(Batch<std::string_view>&)> sink() {
        return [this](Batch<std::string_view>& batch) { on_batch(batch); };
    }
    ErrorHandler handler() {
        return [this](const Error& error) { on_error(error); };
    }

    void begin(Instance instance) {
        std::lock_guard lock(mutex_);
        instances_.push_back(std::move(instance));
    }
    void pause() {
        std::lock_guard lock(mutex_);
        paused_ = true;
    }
    void resume() {
        std::lock_guard lock(mutex_);
        paused_ = false;
        changed_.notify_all();
    }
    void add_throws(unsigned n) {
        std::lock_guard lock(mutex_);
        throws_left_ += n;
    }
    void fail_always(bool on) {
        std::lock_guard lock(mutex_);
        fail_always_ = on;
    }
    void arm_crash(bool after) {
        std::lock_guard lock(mutex_);
        crash_ = after;
    }
    /// The tailer "dies" as it reports a truncation (after the report).
    void arm_crash_on_truncation() {
        std::lock_guard lock(mutex_);
        crash_on_truncation_ = true;
    }
    /// Undoes every injected fault, so that a tailer can be stopped whatever happened.
    void clear_faults() {
        std::lock_guard lock(mutex_);
        paused_ = false;
        fail_always_ = false;
        throws_left_ = 0;
        crash_.reset();
        crash_on_truncation_ = false;
        changed_.notify_all();
    }

    /// Runs f(instances) under the lock.
    template <class F>
    auto with(F&& f) {
        std::lock_guard lock(mutex_);
        return std::forward<F>(f)(instances_);
    }
    /// Waits up to `timeout` for a delivery, a report or a fault change.
    void wait_change(std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, timeout);
    }
    /// Waits until pred(instances) holds (false at `until`).
    template <class Pred>
    bool wait_until(clock::time_point until, Pred pred) {
        std::unique_lock lock(mutex_);
        return changed_.wait_until(lock, until, [&] { return pred(instances_); });
    }

  private:
    void on_batch(Batch<std::string_view>& batch) {
        std::unique_lock lock(mutex_);
        Instance& in = instances_.back();
        if (in.crashed) {
            return;  // a dead process delivers nothing
        }
        if (crash_) {
            in.crashed = true;
            in.crash_after = *crash_;
            in.crash_begin = in.lines.size();
            in.crash_size = batch.size();
            crash_.reset();
            if (in.crash_after) {
                record(in, batch);
            }
            in.snapshot = read_checkpoint();
            changed_.notify_all();
            return;
        }
        if (fail_always_ || throws_left_ > 0) {
            if (!fail_always_) {
                --throws_left_;
            }
            ++in.sink_throws;
            changed_.notify_all();
            throw std::runtime_error("injected sink failure");
        }
        changed_.wait(lock, [this] { return !paused_; });
        record(in, batch);
        changed_.notify_all();
    }

    static void record(Instance& in, const Batch<std::string_view>& batch) {
        in.batches.push_back(
            BatchRecord{in.lines.size(), batch.size(), batch.first_line(), batch.last_line()});
        for (std::string_view line : batch.records()) {
            in.lines.emplace_back(line);
        }
    }

    std::optional<std::string> read_checkpoint() const {
        std::ifstream in(checkpoint_, std::ios::binary);
        if (!in) {
            return std::nullopt;
        }
        return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }

    void on_error(const Error& error) {
        std::lock_guard lock(mutex_);
        Instance& in = instances_.back();
        if (in.crashed) {
            return;
        }
        switch (error.kind) {
            case ErrorKind::parse: {
                constexpr std::string_view prefix = "parser threw: ";
                std::string text = error.message;
                if (text.starts_with(prefix)) {
                    text.erase(0, prefix.size());
                }
                in.parse.push_back(ParseReport{std::move(text), error.line, error.offset});
                break;
            }
            case ErrorKind::sink:
                ++in.sink_errors;
                break;
            case ErrorKind::truncated:
                // On resume the message says "shorter than the saved offset"; while running, the
                // file "shrank below the read offset".
                if (error.message.find("saved offset") != std::string::npos) {
                    in.resume_truncations.push_back(error);
                } else {
                    in.truncations.push_back(error);
                    if (std::exchange(crash_on_truncation_, false)) {
                        in.crashed = true;
                        in.crash_begin = in.lines.size();
                        in.snapshot = read_checkpoint();
                    }
                }
                break;
            case ErrorKind::gap:
                in.gaps.push_back(error);
                break;
            case ErrorKind::undelivered:
                ++in.undelivered;
                break;
            default:
                in.unexpected.push_back(error);
                break;
        }
        changed_.notify_all();
    }

    const fs::path checkpoint_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<Instance> instances_;
    bool paused_{false};
    bool fail_always_{false};
    unsigned throws_left_{0};
    std::optional<bool> crash_;  // armed: true crashes after taking the batch
    bool crash_on_truncation_{false};
};

/// True when some descriptor of this process refers to file `id`: the tailer's open file (the
/// test itself holds none between operations).
inline bool process_holds(FileId id) {
    DIR* fds = ::opendir("/proc/self/fd");
    if (fds == nullptr) {
        throw std::runtime_error("cannot list /proc/self/fd");
    }
    bool found = false;
    while (const dirent* entry = ::readdir(fds)) {
        const std::string name = entry->d_name;
        if (name == "." || name == "..") {
            continue;
        }
        struct stat st {};
        if (::stat(("/proc/self/fd/" + name).c_str(), &st) == 0 && detail::file_id(st) == id) {
            found = true;
            break;
        }
    }
    ::closedir(fds);
    return found;
}

/// A mismatch between the tailer and the model.
class Failure : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// --- running a sequence ---------------------------------------------------------------------

/// Runs one sequence against a real tailer in `dir` (emptied first) and checks it against the
/// model at every synchronisation point and at the end. Throws Failure on a mismatch.
class SequenceRun {
  public:
    SequenceRun(const fs::path& dir, const Config& config, std::chrono::milliseconds deadline)
        : dir_(dir),
          path_(dir / "app.log"),
          checkpoint_(dir / "checkpoint"),
          config_(config),
          options_(options_for(config, dir)),
          deadline_(deadline),
          recorder_(checkpoint_) {
        for (const auto& entry : fs::directory_iterator(dir_)) {
            fs::remove_all(entry.path());
        }
    }
    SequenceRun(const SequenceRun&) = delete;
    SequenceRun& operator=(const SequenceRun&) = delete;
    ~SequenceRun() {
        recorder_.clear_faults();
        tailer_.reset();  // stops the thread before the recorder it delivers to goes away
    }

    void run(const std::vector<Op>& ops) {
        if (config_.initial_file) {
            create();
            write_lines(config_.initial_lines, 0, 1, 5);
        }
        Instance first;
        first.start = Start::first;
        start(std::move(first));
        for (std::size_t i = 0; i < ops.size(); ++i) {
            try {
                apply(ops[i]);
            } catch (const Failure& failure) {
                throw Failure(fmt::format("at operation {} {}: {}", i + 1, to_string(ops[i]),
                                          failure.what()));
            }
        }
        try {
            synchronise("the end");
            stop();
            check(true);
        } catch (const Failure& failure) {
            throw Failure(fmt::format("at the end: {}", failure.what()));
        }
    }

  private:
    // --- operations ---

    void apply(const Op& op) {
        switch (op.kind) {
            case OpKind::lines:
                write_lines(op.n, op.bad, op.writes, op.pad);
                break;
            case OpKind::partial: {
                ensure_file();
                const std::string piece = make_piece('P', op.pad, (op.bad & 1) != 0);
                if (model_.partial() + piece.size() <= max_partial_bytes) {
                    write(piece);
                }
                break;
            }
            case OpKind::complete:
                ensure_file();
                write(make_piece('C', op.pad, (op.bad & 1) != 0) + "\n");
                break;
            case OpKind::rotate:
                if (model_.exists()) {
                    synchronise("rotate");
                    fs::rename(path_, dir_ / fmt::format("app.log.{}", ++rotated_));
                    model_.retire();
                    create();
                }
                break;
            case OpKind::truncate:
                if (model_.exists()) {
                    truncate();
                }
                break;
            case OpKind::remove:
                if (model_.exists()) {
                    synchronise("delete");
                    fs::remove(path_);
                    model_.retire();
                }
                break;
            case OpKind::recreate:
                if (!model_.exists()) {
                    create();
                }
                break;
            case OpKind::pause:
                recorder_.pause();
                break;
            case OpKind::sink_throw:
                recorder_.add_throws(op.n);
                break;
            case OpKind::restart:
                synchronise("restart");
                restart_clean([&] { write_lines(op.n, op.bad, 1, 0); });
                break;
            case OpKind::rotate_stopped:
                synchronise("rotate-stopped");
                restart_clean([&] {
                    // Only a file the stopped tailer read can be found among the rotated ones:
                    // with no file at the path, the lines go to a new file, not rotated.
                    const bool rotate = model_.exists();
                    write_lines(op.n, op.bad, 1, 0);
                    if (rotate) {
                        fs::rename(path_, dir_ / fmt::format("app.log.{}", ++rotated_));
                        model_.retire();
                        create();
                    }
                });
                break;
            case OpKind::crash:
                crash(op);
                break;
            case OpKind::truncate_crash:
                if (model_.exists()) {
                    truncate_crash(op);
                }
                break;
            case OpKind::stop_failing:
                stop_failing(op);
                break;
        }
    }

    // A piece of a line: a tag, a number no other piece has, '.', filler, maybe the marker.
    // Every file starts with a unique piece, so fingerprints tell files apart.
    std::string make_piece(char tag, unsigned pad, bool is_bad) {
        const std::uint64_t id = next_id_++;
        std::string piece = fmt::format("{}{}.", tag, id);
        for (unsigned i = 0; i < pad; ++i) {
            piece += static_cast<char>('a' + (id + i) % 26);
        }
        if (is_bad) {
            piece += bad_marker;
        }
        return piece;
    }

    void create() {
        append(path_, "");
        struct stat st {};
        if (::stat(path_.c_str(), &st) != 0) {
            throw Failure(fmt::format("cannot stat {} after creating it", path_.string()));
        }
        model_.create(detail::file_id(st));
    }
    void ensure_file() {
        if (!model_.exists()) {
            create();
        }
    }
    void write(std::string_view bytes) {
        append(path_, bytes);
        model_.append(bytes);
    }

    void write_lines(unsigned n, unsigned bad, unsigned writes, unsigned pad) {
        if (n == 0) {
            return;
        }
        ensure_file();
        std::string text;
        for (unsigned i = 0; i < n; ++i) {
            const unsigned line_pad = pad == 0 ? 0 : (pad * (i + 3) * 7919u) % (pad + 1);
            text += make_piece('L', line_pad, i < 32 && ((bad >> i) & 1u) != 0);
            text += '\n';
        }
        writes = std::max(writes, 1u);
        std::size_t from = 0;
        for (unsigned k = 1; k <= writes; ++k) {
            const std::size_t to = text.size() * k / writes;
            if (to > from) {
                write(std::string_view(text).substr(from, to - from));
            }
            from = to;
        }
    }

    // A burst for crash and stop-failing: at least two lines, the last one accepted by the
    // parser, so that a batch certainly reaches the sink.
    void write_burst(const Op& op) {
        const unsigned n = std::clamp(op.n, 2u, 32u);
        write_lines(n, op.bad & ~(1u << (n - 1)), 1, op.pad);
    }

    void truncate() {
        synchronise("truncate");
        fs::copy_file(path_, dir_ / fmt::format("app.log.c{}", ++copied_));
        const std::uint64_t before = model_.size();
        fs::resize_file(path_, 0);
        model_.truncate();
        if (before == 0) {
            return;  // nothing was read, nothing shrank
        }
        // The tailer has read all `before` bytes, so it must see the file shrink; wait for that
        // before writing again, since a file that grows back past the offset first hides it.
        const std::size_t expected = recorder_.with([&](std::vector<Instance>& instances) {
            auto& in = instances.back();
            in.truncations_expected.push_back(before);
            return in.truncations_expected.size();
        });
        if (!recorder_.wait_until(clock::now() + deadline_, [&](std::vector<Instance>& instances) {
                return instances.back().truncations.size() >= expected;
            })) {
            throw Failure(
                fmt::format("the tailer did not report the truncation of a file it had "
                            "read to byte {} within {} ms",
                            before, deadline_.count()));
        }
    }

    void crash(const Op& op) {
        synchronise("crash");
        recorder_.arm_crash(op.after);
        write_burst(op);
        if (!recorder_.wait_until(clock::now() + deadline_, [](std::vector<Instance>& instances) {
                return instances.back().crashed;
            })) {
            throw Failure("the armed crash never happened: no batch reached the sink");
        }
        stop();
        const auto [snapshot, resume_at] = recorder_.with([](std::vector<Instance>& instances) {
            const auto& in = instances.back();
            return std::pair(in.snapshot, in.good_start + in.crash_begin);
        });
        restore(snapshot);
        start(resumed(Start::crash, resume_at));
    }

    // The tailer dies right after it reports a copy-and-truncate: what it committed for the old
    // content must not let a restart skip into the new content written while it was down.
    void truncate_crash(const Op& op) {
        synchronise("truncate-crash");
        if (model_.size() == 0) {
            return;  // nothing read, nothing to see shrink
        }
        recorder_.arm_crash_on_truncation();
        truncate();
        if (!recorder_.wait_until(clock::now() + deadline_, [](std::vector<Instance>& instances) {
                return instances.back().crashed;
            })) {
            throw Failure("the tailer reported the truncation but the crash never happened");
        }
        stop();
        const auto snapshot =
            recorder_.with([](std::vector<Instance>& in) { return in.back().snapshot; });
        // Everything before the truncation was delivered and committed (the unterminated line
        // as a line): the restart must begin with the new content, written while it is down.
        Instance next;
        next.start = Start::crash;
        next.good_start = model_.good().size();
        next.bad_low = next.bad_high = model_.bad().size();
        next.checkpoint_may_be_gone = true;  // a gap, or a "truncation" seen on resume
        write_lines(op.n, op.bad, 1, op.pad);
        restore(snapshot);
        start(std::move(next));
    }

    void restore(const std::optional<std::string>& snapshot) {
        if (snapshot) {
            std::ofstream out(checkpoint_, std::ios::binary | std::ios::trunc);
            out << *snapshot;
        } else {
            fs::remove(checkpoint_);
        }
    }

    void stop_failing(const Op& op) {
        synchronise("stop-failing");
        const std::size_t throws_before =
            recorder_.with([](std::vector<Instance>& in) { return in.back().sink_throws; });
        recorder_.fail_always(true);
        write_burst(op);
        if (!recorder_.wait_until(clock::now() + deadline_, [&](std::vector<Instance>& in) {
                return in.back().sink_throws > throws_before;
            })) {
            throw Failure("the failing sink was never called");
        }
        const std::size_t resume_at = recorder_.with([](std::vector<Instance>& instances) {
            auto& in = instances.back();
            in.stopped_while_failing = true;
            return in.good_start + in.lines.size();
        });
        stop();  // the retried batch is given up: reported, and it must not be committed
        recorder_.fail_always(false);
        start(resumed(Start::failed_stop, resume_at));
        // A line after the burst: if the restart skipped the burst, this arrives in its place.
        write_lines(1, 0, 1, 0);
    }

    // A clean stop, `while_stopped`, and a new tailer: it continues after the last line the
    // stopped one read, found by the resume rules wherever while_stopped moved it.
    template <class WhileStopped>
    void restart_clean(WhileStopped while_stopped) {
        stop();
        Instance next;
        next.start = Start::clean;
        next.good_start = model_.good().size();
        next.bad_low = next.bad_high = model_.bad().size();
        // With no file at the path, the checkpoint names a deleted file: a gap is reported, or
        // a "truncation" when a new file has taken its inode (documented).
        next.checkpoint_may_be_gone = !model_.exists();
        while_stopped();
        start(std::move(next));
    }

    // A tailer that resumes from a checkpoint that may precede lines already delivered: it must
    // deliver again from good line `resume_at` (the first line the sink had not accepted for
    // good), and may report again the rejected lines after the previous accepted line.
    Instance resumed(Start why, std::size_t resume_at) const {
        Instance next;
        next.start = why;
        next.good_start = resume_at;
        next.bad_low = resume_at == 0 ? 0 : model_.bad_before(model_.good()[resume_at - 1]);
        next.bad_high = resume_at < model_.good().size()
                            ? model_.bad_before(model_.good()[resume_at])
                            : model_.bad().size();
        // The checkpoint may name a file deleted since (its inode perhaps reused), a file
        // truncated since, or a rotated file older than copies made since.
        next.checkpoint_may_be_gone = true;
        return next;
    }

    void start(Instance instance) {
        recorder_.begin(std::move(instance));
        tailer_.reset();
        tailer_ = std::make_unique<Tailer>(options_, MarkingParser{}, recorder_.sink(),
                                           recorder_.handler());
        tailer_->start();
    }

    void stop() {
        recorder_.resume();
        tailer_->stop();
        const TailerStats stats = tailer_->stats();
        recorder_.with([&](std::vector<Instance>& in) { in.back().final_stats = stats; });
    }

    // --- synchronisation ---

    // Waits until the tailer has delivered every line the model expects, reported every line
    // the parser rejects, and read the current file to its end (or, with no file at the path,
    // finished the old one and waits for the path). Checks what arrived meanwhile.
    void synchronise(std::string_view before) {
        recorder_.resume();
        const auto until = clock::now() + deadline_;
        for (;;) {
            check(false);
            if (caught_up()) {
                return;
            }
            if (clock::now() > until) {
                throw Failure(
                    fmt::format("the tailer did not catch up before '{}' within {} ms; {}", before,
                                deadline_.count(), describe_progress()));
            }
            recorder_.wait_change(std::chrono::milliseconds{1});
        }
    }

    struct Progress {
        std::size_t delivered_to{0};  // good lines up to which the current tailer delivered
        std::size_t reported_to{0};   // rejected lines up to which some tailer reported
    };

    Progress progress() {
        return recorder_.with([&](std::vector<Instance>& instances) {
            Progress p;
            const auto& current = instances.back();
            p.delivered_to = current.good_start + current.lines.size();
            for (const auto& in : instances) {
                if (in.parse.empty()) {
                    continue;
                }
                if (auto first = model_.bad_index(in.parse.front().text)) {
                    p.reported_to = std::max(p.reported_to, *first + in.parse.size());
                }
            }
            return p;
        });
    }

    bool caught_up() {
        const Progress p = progress();
        if (p.delivered_to != model_.good().size() || p.reported_to != model_.bad().size()) {
            return false;
        }
        const TailerStats stats = tailer_->stats();
        if (!model_.exists()) {
            return stats.waiting_for_path && !stats.file_open;
        }
        // The tailer holds the file at the path (so it retired the one before), and the stats
        // say everything up to its size was read. Stats describe the last batch or wait; the
        // last ones published before a file (or a truncated file's content) is left show nothing
        // pending, so pending bytes prove that these describe the current file.
        return process_holds(model_.file()) && stats.file_open &&
               stats.offset + stats.pending_bytes == model_.size() &&
               stats.pending_bytes >= model_.partial();
    }

    std::string describe_progress() {
        const Progress p = progress();
        const TailerStats stats = tailer_->stats();
        return fmt::format(
            "delivered up to good line {} of {}, reported up to rejected line {} of {}; path {} "
            "({} bytes, {} unterminated){}; tailer stats: {}",
            p.delivered_to, model_.good().size(), p.reported_to, model_.bad().size(),
            model_.exists() ? "exists" : "is missing", model_.size(), model_.partial(),
            model_.exists() && !process_holds(model_.file()) ? ", not open in the tailer" : "",
            stats);
    }

    // --- checks ---

    [[noreturn]] void fail(std::size_t instance, const Instance& in, std::string what) const {
        throw Failure(
            fmt::format("tailer #{} (started by {}): {}", instance, name_of(in.start), what));
    }

    std::string context(std::size_t good_index) const {
        const std::size_t from = good_index >= 2 ? good_index - 2 : 0;
        std::vector<std::string> around;
        for (std::size_t i = from; i < std::min(good_index + 3, model_.good().size()); ++i) {
            around.push_back(
                fmt::format("{}{}", i == good_index ? "*" : "", model_.good_line(i).text));
        }
        return fmt::format("expected around it: [{}]", fmt::join(around, ", "));
    }

    void check(bool final) {
        recorder_.with([&](std::vector<Instance>& instances) {
            for (std::size_t i = 0; i < instances.size(); ++i) {
                const bool stopped = i + 1 < instances.size() || final;
                check_instance(i, instances[i], stopped);
            }
            if (final) {
                const auto& last = instances.back();
                const std::size_t delivered = last.good_start + last.lines.size();
                if (delivered != model_.good().size()) {
                    fail(instances.size() - 1, last,
                         fmt::format("delivered up to good line {} but {} were written", delivered,
                                     model_.good().size()));
                }
            }
        });
    }

    void check_instance(std::size_t index, const Instance& in, bool stopped) const {
        // Deliveries: exactly the model's good lines from good_start on, in order.
        for (std::size_t j = 0; j < in.lines.size(); ++j) {
            const std::size_t k = in.good_start + j;
            const std::string& got = in.lines[j];
            if (k < model_.good().size() && model_.good_line(k).text == got) {
                continue;
            }
            std::string where = "a line the model never wrote";
            if (auto at = model_.good_index(got)) {
                where = *at < k
                            ? fmt::format("good line {}: {} line(s) delivered again", *at, k - *at)
                            : fmt::format("good line {}: {} line(s) skipped", *at, *at - k);
            }
            fail(index, in,
                 fmt::format("its delivery #{} should be good line {} '{}' but was '{}' ({}); "
                             "{}",
                             j, k,
                             k < model_.good().size() ? model_.good_line(k).text
                                                      : std::string("(none: all were delivered)"),
                             got, where, context(std::min(k, model_.good().size()))));
        }
        for (const auto& b : in.batches) {
            const auto& first = model_.good_line(in.good_start + b.begin);
            const auto& last = model_.good_line(in.good_start + b.begin + b.size - 1);
            if (b.first_line != first.line || b.last_line != last.line) {
                fail(
                    index, in,
                    fmt::format("batch of '{}'..'{}' says lines {}-{}, the model {}-{}", first.text,
                                last.text, b.first_line, b.last_line, first.line, last.line));
            }
        }
        // Parse reports: consecutive rejected lines, starting where the resume rules allow,
        // each with its line number and offset.
        if (!in.parse.empty()) {
            const auto first = model_.bad_index(in.parse.front().text);
            if (!first) {
                fail(index, in,
                     fmt::format("reported a parse error for '{}', which is no rejected line",
                                 in.parse.front().text));
            }
            if (*first < in.bad_low || *first > in.bad_high) {
                fail(index, in,
                     fmt::format("its first parse report is for rejected line {} '{}'; the "
                                 "model allows {} to {}",
                                 *first, in.parse.front().text, in.bad_low, in.bad_high));
            }
            for (std::size_t j = 0; j < in.parse.size(); ++j) {
                const auto& got = in.parse[j];
                const std::size_t k = *first + j;
                if (k >= model_.bad().size() || model_.bad_line(k).text != got.text) {
                    fail(index, in,
                         fmt::format("parse report #{} is for '{}', expected '{}'", j, got.text,
                                     k < model_.bad().size() ? model_.bad_line(k).text
                                                             : std::string("(none)")));
                }
                const auto& want = model_.bad_line(k);
                if (got.line != want.line || got.offset != want.offset) {
                    fail(index, in,
                         fmt::format("parse report for '{}' says line {} at byte {}, the model "
                                     "line {} at byte {}",
                                     got.text, got.line, got.offset, want.line, want.offset));
                }
            }
        }
        // Other reports.
        if (!in.unexpected.empty()) {
            fail(index, in, fmt::format("unexpected error report: {}", in.unexpected.front()));
        }
        if (in.truncations.size() > in.truncations_expected.size()) {
            fail(index, in,
                 fmt::format("{} truncation reports for {} truncations: {}", in.truncations.size(),
                             in.truncations_expected.size(), in.truncations.back()));
        }
        for (std::size_t j = 0; j < in.truncations.size(); ++j) {
            if (in.truncations[j].offset != in.truncations_expected[j]) {
                fail(index, in,
                     fmt::format("truncation report #{} says offset {}, the file had {} bytes", j,
                                 in.truncations[j].offset, in.truncations_expected[j]));
            }
        }
        if (!in.checkpoint_may_be_gone && !in.gaps.empty()) {
            fail(index, in,
                 fmt::format("reported a gap where none is possible: {}", in.gaps.front()));
        }
        if (!in.checkpoint_may_be_gone && !in.resume_truncations.empty()) {
            fail(index, in,
                 fmt::format("reported a truncation on resume where none is possible: {}",
                             in.resume_truncations.front()));
        }
        if (!in.stopped_while_failing && in.undelivered > 0) {
            fail(index, in, "reported undelivered lines though it was stopped with a working sink");
        }
        if (in.crash_size > config_.max_batch_lines) {
            fail(index, in,
                 fmt::format("the crash interrupted a batch of {} lines, more than "
                             "max_batch_lines",
                             in.crash_size));
        }
        if (!stopped) {
            return;
        }
        if (in.truncations.size() != in.truncations_expected.size()) {
            fail(index, in,
                 fmt::format("{} truncation reports for {} truncations", in.truncations.size(),
                             in.truncations_expected.size()));
        }
        if (in.crashed || !in.final_stats) {
            return;  // what a dead tailer counted after its crash is not its record
        }
        const TailerStats& s = *in.final_stats;
        if (in.sink_errors != in.sink_throws || s.sink_errors != in.sink_throws) {
            fail(index, in,
                 fmt::format("the sink threw {} times; {} reports, stats say {}", in.sink_throws,
                             in.sink_errors, s.sink_errors));
        }
        if (s.records != in.lines.size() || s.parse_errors != in.parse.size()) {
            fail(index, in,
                 fmt::format("stats say {} records and {} parse errors; the sink got {}, the "
                             "handler {}",
                             s.records, s.parse_errors, in.lines.size(), in.parse.size()));
        }
        if (s.read_ahead_high_water > config_.read_ahead_bytes) {
            fail(index, in,
                 fmt::format("read-ahead high water {} exceeds read_ahead_bytes {}",
                             s.read_ahead_high_water, config_.read_ahead_bytes));
        }
    }

    const fs::path dir_;
    const fs::path path_;
    const fs::path checkpoint_;
    const Config config_;
    const TailOptions options_;
    const std::chrono::milliseconds deadline_;
    Model model_;
    Recorder recorder_;
    std::unique_ptr<Tailer> tailer_;  // after recorder_: destroyed (stopped) first
    std::uint64_t next_id_{1};
    unsigned rotated_{0};
    unsigned copied_{0};
};

/// Runs one sequence; the failure's description, or nothing when it passed.
inline std::optional<std::string> run_sequence(const fs::path& dir, const Config& config,
                                               const std::vector<Op>& ops,
                                               std::chrono::milliseconds deadline) {
    try {
        SequenceRun run(dir, config, deadline);
        run.run(ops);
        return std::nullopt;
    } catch (const Failure& failure) {
        return std::string(failure.what());
    } catch (const std::exception& e) {
        return fmt::format("exception: {}", e.what());
    }
}

// --- shrinking ------------------------------------------------------------------------------

struct Shrunk {
    std::vector<Op> ops;
    std::string failure;  ///< how the shrunk sequence failed
    unsigned runs{0};
};

/// Removes operations (halves, quarters, ... single ones) and simplifies the remaining ones
/// while the sequence still fails, within `budget` of wall time.
inline Shrunk shrink(const fs::path& dir, const Config& config, std::vector<Op> ops,
                     std::string failure, std::chrono::milliseconds deadline,
                     std::chrono::seconds budget) {
    Shrunk out{std::move(ops), std::move(failure), 0};
    const auto until = clock::now() + budget;
    auto fails = [&](const std::vector<Op>& candidate) {
        if (clock::now() > until) {
            return false;
        }
        ++out.runs;
        if (auto f = run_sequence(dir, config, candidate, deadline)) {
            out.failure = std::move(*f);
            return true;
        }
        return false;
    };
    for (std::size_t chunk = std::max<std::size_t>(out.ops.size() / 2, 1);; chunk /= 2) {
        for (std::size_t i = 0; i + chunk <= out.ops.size();) {
            std::vector<Op> candidate(out.ops.begin(), out.ops.begin() + static_cast<long>(i));
            candidate.insert(candidate.end(), out.ops.begin() + static_cast<long>(i + chunk),
                             out.ops.end());
            if (fails(candidate)) {
                out.ops = std::move(candidate);
            } else {
                i += chunk;
            }
        }
        if (chunk == 1) {
            break;
        }
    }
    // Then simpler operations: fewer lines, none rejected, one write, no filler.
    const std::array<void (*)(Op&), 4> simplifications{
        [](Op& op) { op.n = std::min(op.n, 2u); }, [](Op& op) { op.bad = 0; },
        [](Op& op) { op.writes = 1; }, [](Op& op) { op.pad = 0; }};
    for (std::size_t i = 0; i < out.ops.size(); ++i) {
        for (const auto simplify : simplifications) {
            auto candidate = out.ops;
            simplify(candidate[i]);
            if (candidate[i] != out.ops[i] && fails(candidate)) {
                out.ops = std::move(candidate);
            }
        }
    }
    return out;
}

// --- settings -------------------------------------------------------------------------------

/// What the environment asks for:
///   SNAPTAIL_MODEL_SEQUENCES  how many sequences (default 2000);
///                             0 runs until stopped (the soak)
///   SNAPTAIL_MODEL_FIRST_SEED the first seed (default 1), or "random" for one drawn from the
///                             clock (a soak then explores new seeds; the range is printed);
///                             seeds are consecutive
///   SNAPTAIL_MODEL_JOBS       sequences run at once, each with its own tailer and directory
///                             (default 4: a sequence mostly waits for the tailer and the disk)
///   SNAPTAIL_MODEL_SEED       run this one seed only
///   SNAPTAIL_MODEL_REPLAY     "SEED: OPS..." runs these operations with SEED's options
///   SNAPTAIL_MODEL_MAX_FAILURES  stop after this many failed sequences (default 3)
///   SNAPTAIL_MODEL_EXCLUDE    operation names never generated (comma-separated), to look
///                             past a known failure
struct Settings {
    std::uint64_t first_seed{1};
    std::uint64_t sequences{0};
    bool unbounded{false};
    unsigned jobs{4};
    std::size_t max_failures{3};
    std::optional<std::uint64_t> replay_seed;
    std::optional<std::vector<Op>> replay_ops;
    std::vector<OpKind> excluded;
    std::string excluded_text;
};

/// The sequences CI runs: every operation meets many states; with four at once about half a
/// minute in a Debug build, under a minute with ASan or TSan.
inline constexpr std::uint64_t default_sequences = 2000;

inline std::uint64_t parse_seed(std::string_view name, std::string_view text) {
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) {
        throw std::invalid_argument(
            fmt::format("{} must be an unsigned integer, not '{}'", name, text));
    }
    return value;
}

inline Settings settings_from_environment() {
    Settings s;
    s.sequences = default_sequences;
    if (const char* text = std::getenv("SNAPTAIL_MODEL_SEQUENCES")) {
        s.sequences = parse_seed("SNAPTAIL_MODEL_SEQUENCES", text);
        s.unbounded = s.sequences == 0;
    }
    if (const char* text = std::getenv("SNAPTAIL_MODEL_FIRST_SEED")) {
        if (std::string_view(text) == "random") {
            // Far above the CI range; a multiple of a million so that it is easy to read.
            const auto now = std::chrono::system_clock::now().time_since_epoch();
            s.first_seed = static_cast<std::uint64_t>(
                               std::chrono::duration_cast<std::chrono::seconds>(now).count()) *
                           1'000'000;
        } else {
            s.first_seed = parse_seed("SNAPTAIL_MODEL_FIRST_SEED", text);
        }
    }
    if (const char* text = std::getenv("SNAPTAIL_MODEL_JOBS")) {
        s.jobs = static_cast<unsigned>(
            std::clamp<std::uint64_t>(parse_seed("SNAPTAIL_MODEL_JOBS", text), 1, 64));
    }
    if (const char* text = std::getenv("SNAPTAIL_MODEL_MAX_FAILURES")) {
        s.max_failures = static_cast<std::size_t>(
            std::max<std::uint64_t>(parse_seed("SNAPTAIL_MODEL_MAX_FAILURES", text), 1));
    }
    if (const char* text = std::getenv("SNAPTAIL_MODEL_SEED")) {
        s.first_seed = parse_seed("SNAPTAIL_MODEL_SEED", text);
        s.sequences = 1;
        s.unbounded = false;
    }
    if (const char* text = std::getenv("SNAPTAIL_MODEL_REPLAY")) {
        const std::string_view replay(text);
        const auto colon = replay.find(':');
        if (colon == std::string_view::npos) {
            throw std::invalid_argument("SNAPTAIL_MODEL_REPLAY must be 'SEED: OPERATIONS...'");
        }
        s.replay_seed = parse_seed("SNAPTAIL_MODEL_REPLAY's seed", replay.substr(0, colon));
        s.replay_ops = parse_ops(replay.substr(colon + 1));
    }
    if (const char* text = std::getenv("SNAPTAIL_MODEL_EXCLUDE")) {
        s.excluded_text = text;
        std::string_view rest(text);
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            const auto name = rest.substr(0, comma);
            rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
            if (name.empty()) {
                continue;
            }
            const auto kind = kind_named(name);
            if (!kind) {
                throw std::invalid_argument(
                    fmt::format("SNAPTAIL_MODEL_EXCLUDE: unknown operation '{}'", name));
            }
            s.excluded.push_back(*kind);
        }
    }
    return s;
}

// --- running many -----------------------------------------------------------------------------

struct FailedSequence {
    std::uint64_t seed{0};
    std::vector<Op> ops;
    std::string failure;
};

struct Summary {
    std::uint64_t sequences{0};   ///< sequences run to their end
    std::uint64_t operations{0};  ///< in those sequences
    std::uint64_t last_seed{0};   ///< the highest seed started
    std::vector<FailedSequence> failed;
};

/// Runs the sequences of consecutive seeds that `settings` asks for on settings.jobs threads,
/// each with its own temporary directory, until they are done or settings.max_failures failed.
/// Calls `progress` on the calling thread once a minute meanwhile. Failures are sorted by seed.
inline Summary run_seeds(const Settings& settings, std::chrono::milliseconds deadline,
                         const std::function<void(const Summary&)>& progress) {
    std::mutex mutex;
    std::condition_variable finished;
    Summary summary;
    std::uint64_t next = 0;
    unsigned running = settings.jobs;
    bool stop = false;
    auto worker = [&] {
        try {
            TempDir dir;
            for (;;) {
                std::uint64_t seed = 0;
                {
                    std::lock_guard lock(mutex);
                    if (stop || (!settings.unbounded && next >= settings.sequences)) {
                        break;
                    }
                    seed = settings.first_seed + next++;
                    summary.last_seed = std::max(summary.last_seed, seed);
                }
                const Config config = config_for(seed);
                std::vector<Op> ops = generate(seed, config, settings.excluded);
                auto failure = run_sequence(dir.path(), config, ops, deadline);
                std::lock_guard lock(mutex);
                ++summary.sequences;
                summary.operations += ops.size();
                if (failure) {
                    summary.failed.push_back({seed, std::move(ops), std::move(*failure)});
                    stop = stop || summary.failed.size() >= settings.max_failures;
                }
            }
        } catch (const std::exception& e) {
            std::lock_guard lock(mutex);
            summary.failed.push_back({0, {}, fmt::format("the test itself failed: {}", e.what())});
            stop = true;
        }
        std::lock_guard lock(mutex);
        --running;
        finished.notify_all();
    };
    std::vector<std::jthread> threads;
    for (unsigned i = 0; i < settings.jobs; ++i) {
        threads.emplace_back(worker);
    }
    {
        std::unique_lock lock(mutex);
        while (!finished.wait_for(lock, std::chrono::minutes{1}, [&] { return running == 0; })) {
            if (progress) {
                const Summary copy = summary;
                lock.unlock();
                progress(copy);
                lock.lock();
            }
        }
    }
    threads.clear();  // joins
    std::sort(summary.failed.begin(), summary.failed.end(),
              [](const auto& a, const auto& b) { return a.seed < b.seed; });
    return summary;
}

}  // namespace snaptail::test::model
