// Runtime faults reported to the tailer's error handler.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

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
};

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
    }
    return "unknown";
}

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

/// The default handler: one line on stderr. Thread-safe (one fmt::print per error).
inline void print_error(const Error& error) {
    if (error.line != 0) {
        fmt::print(stderr, "snaptail: {}: {}: line {} at byte {}: {}\n", to_string(error.kind),
                   error.path, error.line, error.offset, error.message);
    } else {
        fmt::print(stderr, "snaptail: {}: {}: {}\n", to_string(error.kind), error.path,
                   error.message);
    }
}

}  // namespace snaptail

template <>
struct fmt::formatter<snaptail::Error> : fmt::formatter<std::string_view> {
    template <class Context>
    auto format(const snaptail::Error& e, Context& ctx) const {
        return fmt::format_to(ctx.out(), "{}: {}: line {} at byte {}: {}",
                              snaptail::to_string(e.kind), e.path, e.line, e.offset, e.message);
    }
};
