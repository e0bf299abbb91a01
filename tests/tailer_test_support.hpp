// Shared helpers for the tailer tests: temporary directories, file writers, and sinks that
// record what was delivered so that tests can wait on conditions instead of sleeping.
#pragma once

#include <snaptail/batching_tailer.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace snaptail::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

/// Generous: conditions are normally met in milliseconds; a loaded CI machine gets slack.
inline constexpr auto deadline = 30s;

/// A fresh directory, removed with everything in it on destruction.
class TempDir {
  public:
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "snaptail-test.XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = pattern;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
    const fs::path& path() const { return path_; }
    fs::path operator/(std::string_view name) const { return path_ / name; }

  private:
    fs::path path_;
};

/// Appends bytes with one write(2) per call, as a logging process would.
inline void append(const fs::path& path, std::string_view bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        throw std::runtime_error("cannot open " + path.string());
    }
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n <= 0) {
            ::close(fd);
            throw std::runtime_error("cannot write " + path.string());
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    ::close(fd);
}

/// "prefix-<n>" for n in [first, last].
inline std::vector<std::string> numbered(std::string_view prefix, int first, int last) {
    std::vector<std::string> lines;
    for (int i = first; i <= last; ++i) {
        lines.push_back(std::string(prefix) + "-" + std::to_string(i));
    }
    return lines;
}

/// The lines joined with '\n' after each.
inline std::string text_of(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& line : lines) {
        out += line;
        out += '\n';
    }
    return out;
}

template <class... Ts>
std::vector<std::string> concat(const Ts&... parts) {
    std::vector<std::string> all;
    (all.insert(all.end(), parts.begin(), parts.end()), ...);
    return all;
}

/// What a batch looked like when it was delivered.
struct BatchInfo {
    std::size_t size;
    std::uint64_t first_line;
    std::uint64_t last_line;
    Position end;
    std::string path;
};

/// A sink that copies every delivered line and wakes waiters.
class Collector {
  public:
    /// The sink to pass to a BatchingTailer<RawLineParser>.
    std::function<void(Batch<std::string_view>&)> sink() {
        return [this](Batch<std::string_view>& batch) {
            if (before_batch) {
                before_batch(batch);
            }
            std::lock_guard lock(mutex_);
            for (std::string_view line : batch.records()) {
                lines_.emplace_back(line);
                paths_.emplace_back(batch.path());
            }
            batches_.push_back({batch.size(), batch.first_line(), batch.last_line(),
                                batch.end_position(), std::string(batch.path())});
            changed_.notify_all();
        };
    }

    /// Waits until at least `count` lines arrived (false on deadline).
    bool wait_for_lines(std::size_t count) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, deadline, [&] { return lines_.size() >= count; });
    }

    std::vector<std::string> lines() const {
        std::lock_guard lock(mutex_);
        return lines_;
    }
    std::vector<BatchInfo> batches() const {
        std::lock_guard lock(mutex_);
        return batches_;
    }
    /// The lines that came from `path` (Batch::path()), in the order delivered.
    std::vector<std::string> lines_of(const fs::path& path) const {
        std::lock_guard lock(mutex_);
        std::vector<std::string> out;
        for (std::size_t i = 0; i < lines_.size(); ++i) {
            if (paths_[i] == path.string()) {
                out.push_back(lines_[i]);
            }
        }
        return out;
    }
    /// Each delivered line with the path of its batch, in the order delivered.
    std::vector<std::pair<std::string, std::string>> lines_with_paths() const {
        std::lock_guard lock(mutex_);
        std::vector<std::pair<std::string, std::string>> out;
        for (std::size_t i = 0; i < lines_.size(); ++i) {
            out.emplace_back(paths_[i], lines_[i]);
        }
        return out;
    }

    /// Runs on the tailer's thread before a batch is recorded; may throw or sleep.
    std::function<void(Batch<std::string_view>&)> before_batch;

  private:
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::string> lines_;
    std::vector<std::string> paths_;  // the batch path of each line
    std::vector<BatchInfo> batches_;
};

/// An error handler that records every error.
class ErrorLog {
  public:
    ErrorHandler handler() {
        return [this](const Error& error) {
            std::lock_guard lock(mutex_);
            errors_.push_back(error);
            changed_.notify_all();
        };
    }
    bool wait_for(ErrorKind kind, std::size_t count = 1) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, deadline, [&] { return count_locked(kind) >= count; });
    }
    std::vector<Error> of(ErrorKind kind) const {
        std::lock_guard lock(mutex_);
        std::vector<Error> out;
        for (const auto& e : errors_) {
            if (e.kind == kind) {
                out.push_back(e);
            }
        }
        return out;
    }
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return errors_.size();
    }

  private:
    std::size_t count_locked(ErrorKind kind) const {
        std::size_t n = 0;
        for (const auto& e : errors_) {
            n += e.kind == kind ? 1 : 0;
        }
        return n;
    }
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<Error> errors_;
};

/// Reads the last byte of the padding the tailer promises after every line, as simdjson may:
/// ThreadSanitizer then sees a read that writes into the padding of a line being parsed.
inline void touch_padding(std::string_view line) {
    const volatile char* last = line.data() + line.size() + line_padding - 1;
    static_cast<void>(*last);
}

/// Options for a file set `glob` under `root` that react quickly in tests.
inline TailOptions quick_set_options(const fs::path& root, std::string glob,
                                     FollowMode mode = FollowMode::newest) {
    TailOptions options;
    options.files = FileSet{};
    options.files->root = root;
    options.files->glob = std::move(glob);
    options.files->mode = mode;
    options.linger = 1ms;
    options.poll_interval = 20ms;
    options.rotate_wait = 50ms;
    options.sink_retry_initial = 1ms;
    options.sink_retry_max = 20ms;
    return options;
}

/// Options that react quickly in tests; timing only affects latency, never correctness.
inline TailOptions quick_options(const fs::path& path) {
    TailOptions options;
    options.path = path;
    options.linger = 1ms;
    options.poll_interval = 20ms;
    options.rotate_wait = 50ms;
    options.sink_retry_initial = 1ms;
    options.sink_retry_max = 20ms;
    return options;
}

/// Polls `condition` until it holds or the deadline passes; for state without a notifier.
inline bool eventually(const std::function<bool()>& condition) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > until) {
            return false;
        }
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

}  // namespace snaptail::test
