// Hands runtime faults to the user's error handler, which must not take the tailer down.
#pragma once

#include <snaptail/error.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace snaptail::detail {

/// Wraps the error handler: a handler that throws is ignored. Not thread-safe: called on the
/// tailer's thread.
class Reporter {
  public:
    explicit Reporter(ErrorHandler handler) : handler_(std::move(handler)) {}

    /// Reports a fault at `path` (byte `offset`, 1-based `line`; 0 when not applicable).
    void report(ErrorKind kind, std::string message, const std::string& path,
                std::uint64_t offset = 0, std::uint64_t line = 0) noexcept {
        try {
            handler_(Error{kind, std::move(message), path, offset, line});
        } catch (...) {
            // An error handler that throws must not take the tailer down with it.
        }
    }

  private:
    ErrorHandler handler_;
};

}  // namespace snaptail::detail
