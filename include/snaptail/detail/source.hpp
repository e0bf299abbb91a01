// The follow policy's side of the tailer's loop: which files exist, which readers to read in a
// turn, what a path change means, and what the checkpoint holds. One per kind of TailOptions
// source: a single path, or a file set (follow newest, or all files).
#pragma once

#include <snaptail/checkpoint_state.hpp>
#include <snaptail/detail/file_reader.hpp>
#include <snaptail/tailer_stats.hpp>

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace snaptail::detail {

/// Not thread-safe (the tailer's thread), except wake().
class Source {
  public:
    using clock = std::chrono::steady_clock;

    Source() = default;
    Source(const Source&) = delete;
    Source& operator=(const Source&) = delete;
    virtual ~Source() = default;

    /// A run starts (the watcher is created) or ends (it is closed).
    virtual void begin_run() = 0;
    virtual void end_run() noexcept = 0;

    /// Opens what is due and discovers files. Returns true when a file was opened (which counts
    /// as input for idle_exit).
    virtual bool refresh(clock::time_point now) = 0;
    /// The readers to read this turn, in order; each is read once per turn.
    virtual std::span<FileReader* const> turn() = 0;
    /// The reader at `index` of this turn was read: `got` says whether it returned anything.
    virtual void was_read(std::size_t index, bool got, clock::time_point now) = 0;
    /// A whole turn read nothing: looks at what the paths say now. True when something changed
    /// (a file retired or truncated, one appeared) and reading should go on at once.
    virtual bool check(clock::time_point now) = 0;
    /// The earliest moment the source needs the loop (a retire, a reopen, a scan), if any.
    virtual std::optional<clock::time_point> deadline(clock::time_point now) const = 0;
    /// Everything open is read and settled (no file retiring or waiting to be opened): with an
    /// idle pipeline, idle_exit may count.
    virtual bool settled() const = 0;
    /// Sleeps until a change, wake(), or the timeout.
    virtual void wait(std::chrono::milliseconds timeout) = 0;
    /// Interrupts wait() from any thread. Never blocks; async-signal-safe.
    virtual void wake() const noexcept = 0;
    /// At stop: what each reader framed (and what a pause left) goes out.
    virtual void finish() = 0;

    /// What the checkpoint holds now (nullopt: nothing yet, no file opened).
    virtual std::optional<CheckpointState> checkpoint_state() const = 0;
    /// Copies the file-related fields into `stats` (open, waiting, offset, lag, pending).
    virtual void publish(TailerStats& stats) const = 0;
    /// Per-file stats (one entry per known file).
    virtual void publish_files(std::vector<FileStats>& files) const = 0;
    /// The file being read, when there is one such file (nullptr: none, or many at once).
    virtual const std::string* current_file() const = 0;
};

}  // namespace snaptail::detail
