// Runtime faults reported to the tailer's error handler.
#pragma once

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace snaptail {

/// What went wrong. Faults are reported and survived; none stops the tailer.
enum class ErrorKind {
    io,          ///< A system call on the path failed (missing directory, permissions, read error).
    not_a_file,  ///< The path names something that is not a regular file (a directory, a FIFO).
    truncated,   ///< The file shrank below the read offset (copy-and-truncate); reading restarts at
                 ///< 0.
    parse,       ///< The parser threw for a line; the line is skipped and counted.
    long_line,   ///< A line exceeded max_line_bytes and was truncated, skipped or split.
    sink,        ///< The sink threw; the batch is retried.
    sink_gave_up,  ///< The sink failed sink_max_attempts times; the batch was skipped.
    undelivered,   ///< Lines were read but could not be delivered before stop.
    checkpoint,    ///< A checkpoint could not be read (with a fallback) or written.
    gap,           ///< On resume, data may be missing: the saved file was not found whole.
    stopped,       ///< A run started with start() ended on an unexpected exception; nothing more is
                   ///< read (run() throws it to its caller instead).
};

/// How many kinds there are (ErrorKind's values are 0 to error_kind_count - 1).
inline constexpr std::size_t error_kind_count = static_cast<std::size_t>(ErrorKind::stopped) + 1;

/// The kind's name, as used in messages ("io", "parse", ...). Never allocates.
constexpr std::string_view to_string(ErrorKind kind) noexcept {
    switch (kind) {
        case ErrorKind::io:
            return "io";
        case ErrorKind::not_a_file:
            return "not_a_file";
        case ErrorKind::truncated:
            return "truncated";
        case ErrorKind::parse:
            return "parse";
        case ErrorKind::long_line:
            return "long_line";
        case ErrorKind::sink:
            return "sink";
        case ErrorKind::sink_gave_up:
            return "sink_gave_up";
        case ErrorKind::undelivered:
            return "undelivered";
        case ErrorKind::checkpoint:
            return "checkpoint";
        case ErrorKind::gap:
            return "gap";
        case ErrorKind::stopped:
            return "stopped";
    }
    return "unknown";
}

static_assert(to_string(static_cast<ErrorKind>(error_kind_count - 1)) == "stopped" &&
                  to_string(static_cast<ErrorKind>(error_kind_count)) == "unknown",
              "error_kind_count must follow the last ErrorKind");

/// One reported fault: what, where (path, byte offset, 1-based line; 0 when not applicable).
struct Error {
    ErrorKind kind{ErrorKind::io};
    std::string message;
    std::string path;
    std::uint64_t offset{0};
    std::uint64_t line{0};
};

/// Receives every runtime fault; called on the tailer's thread, so it must not block for long.
using ErrorHandler = std::function<void(const Error&)>;

/// Prints `error` as one line on `out`. Thread-safe (one fmt::print per error).
inline void print_error_to(std::FILE* out, const Error& error) {
    if (error.line != 0) {
        fmt::print(out, "snaptail: {}: {}: line {} at byte {}: {}\n", to_string(error.kind),
                   error.path, error.line, error.offset, error.message);
    } else {
        fmt::print(out, "snaptail: {}: {}: {}\n", to_string(error.kind), error.path, error.message);
    }
}

/// Prints `error` as one line on stderr: every error, however many. Thread-safe.
inline void print_error(const Error& error) {
    print_error_to(stderr, error);
}

/// The tailer's default handler. The kinds that can come once per line or per retry (io,
/// not_a_file, parse, long_line, sink, checkpoint) are rate-limited: the first `burst` of each kind
/// in a `window` are printed and the rest of that window's are counted, not printed (a file of bad
/// lines would otherwise flood stderr); the count is printed with the next error of that kind
/// that is printed, or when the printer is destroyed (so not at all if the process ends
/// without destroying the tailer). The other kinds report data skipped or possibly missing,
/// with the lines concerned, or the end of a run, and are always printed. The tailer's stats()
/// count the rate-limited kinds' errors whatever is printed (io and not_a_file in io_errors,
/// checkpoint in checkpoint_errors, except a corrupt checkpoint found at construction). A zero
/// window prints every error. Not thread-safe: a tailer calls its handler from its own thread
/// only. Allocates only in fmt's formatting and to remember the path of the errors it counts.
class RateLimitedPrinter {
  public:
    using clock = std::chrono::steady_clock;

    /// Up to `burst` lines per kind per `window`, on `out` (which must outlive the printer).
    explicit RateLimitedPrinter(unsigned burst = 10,
                                clock::duration window = std::chrono::seconds(10),
                                std::FILE* out = stderr) noexcept
        : burst_(burst), window_(window), out_(out) {}

    // Copies start afresh: an ErrorHandler copies its target when it is made, before any error.
    RateLimitedPrinter(const RateLimitedPrinter& other) noexcept
        : RateLimitedPrinter(other.burst_, other.window_, other.out_) {}
    RateLimitedPrinter& operator=(const RateLimitedPrinter&) = delete;

    /// Prints the counts of errors not printed yet. Never throws.
    ~RateLimitedPrinter() {
        for (std::size_t i = 0; i < error_kind_count; ++i) {
            if (kinds_[i].suppressed != 0) {
                try {
                    print_suppressed(static_cast<ErrorKind>(i), kinds_[i].suppressed, last_path_);
                } catch (...) {  // nothing left to report a failing stderr to
                }
            }
        }
    }

    /// Prints or counts `error`. Blocks only on the output; throws only what printing throws.
    void operator()(const Error& error) {
        const auto index = static_cast<std::size_t>(error.kind);
        if (index >= error_kind_count || !rate_limited(error.kind) ||
            window_ <= clock::duration::zero()) {
            print_error_to(out_, error);
            return;
        }
        auto& kind = kinds_[index];
        const auto now = clock::now();
        if (kind.window_start == clock::time_point{} || now - kind.window_start >= window_) {
            // Reset before printing: a failing output must not stall the window.
            const std::uint64_t suppressed = std::exchange(kind.suppressed, 0);
            kind.window_start = now;
            kind.printed = 0;
            if (suppressed != 0) {
                print_suppressed(error.kind, suppressed, error.path);
            }
        }
        if (kind.printed >= burst_) {
            ++kind.suppressed;
            if (last_path_ != error.path) {
                last_path_ = error.path;
            }
            return;
        }
        ++kind.printed;
        print_error_to(out_, error);
        if (kind.printed == burst_) {
            const auto left =
                std::chrono::ceil<std::chrono::milliseconds>(kind.window_start + window_ - now);
            fmt::print(out_,
                       "snaptail: {}: {}: more errors of this kind in the next {} ms are counted, "
                       "not printed\n",
                       to_string(error.kind), error.path, left.count());
        }
    }

  private:
    static constexpr bool rate_limited(ErrorKind kind) noexcept {
        switch (kind) {
            case ErrorKind::io:
            case ErrorKind::not_a_file:
            case ErrorKind::parse:
            case ErrorKind::long_line:
            case ErrorKind::sink:
            case ErrorKind::checkpoint:
                return true;
            default:
                return false;
        }
    }

    struct PerKind {
        clock::time_point window_start{};
        unsigned printed{0};
        std::uint64_t suppressed{0};
    };

    void print_suppressed(ErrorKind kind, std::uint64_t n, const std::string& path) const {
        fmt::print(out_, "snaptail: {}: {}: {} more error{} of this kind not printed\n",
                   to_string(kind), path, n, n == 1 ? "" : "s");
    }

    unsigned burst_;
    clock::duration window_;
    std::FILE* out_;
    std::array<PerKind, error_kind_count> kinds_{};
    std::string last_path_;  // of the errors counted, for the count printed at destruction
};

}  // namespace snaptail

template <>
struct fmt::formatter<snaptail::Error> : fmt::formatter<std::string_view> {
    template <class Context>
    auto format(const snaptail::Error& e, Context& ctx) const {
        return fmt::format_to(ctx.out(), "{}: {}: line {} at byte {}: {}",
                              snaptail::to_string(e.kind), e.path, e.line, e.offset, e.message);
    }
};
