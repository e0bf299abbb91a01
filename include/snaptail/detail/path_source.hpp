// Following one path like `tail -F`: one reader, the file at the path; rotation, truncation,
// deletion, late creation; and the resume rules of a single position (checkpoint version 1).
#pragma once

#include <snaptail/detail/committer.hpp>
#include <snaptail/detail/file_reader.hpp>
#include <snaptail/detail/file_watcher.hpp>
#include <snaptail/detail/path_follower.hpp>
#include <snaptail/detail/pipeline_control.hpp>
#include <snaptail/detail/reporter.hpp>
#include <snaptail/detail/rotated_files.hpp>
#include <snaptail/detail/source.hpp>
#include <snaptail/tail_options.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <vector>

namespace snaptail::detail {

class PathSource final : public Source {
  public:
    PathSource(const TailOptions& options, TailerStats& totals, Reporter& reporter,
               PipelineControl& pipeline, Committer& committer, WindowPool& windows,
               std::optional<Position> resume)
        : options_(options),
          totals_(totals),
          reporter_(reporter),
          pipeline_(pipeline),
          committer_(committer),
          follower_(options.path, options.rotate_wait),
          reader_(options, options.path.string(), totals, reporter, windows),
          resume_(resume) {}

    void begin_run() override {
        watcher_.emplace(options_.path, options_.use_inotify);
        if (reader_.is_open()) {
            watcher_->watch_file(reader_.file().fd());
        }
        next_open_ = clock::now();
    }
    void end_run() noexcept override { watcher_.reset(); }

    bool refresh(clock::time_point now) override {
        if (reader_.is_open() || now < next_open_) {
            return false;
        }
        const bool opened = open_file(now);
        first_open_ = false;
        return opened;
    }

    std::span<FileReader* const> turn() override {
        return reader_.is_open() ? std::span<FileReader* const>(readers_)
                                 : std::span<FileReader* const>();
    }
    void was_read(std::size_t, bool, clock::time_point) override {}

    // The file has no more data: what does the path say now?
    bool check(clock::time_point now) override {
        if (!reader_.is_open()) {
            return false;
        }
        switch (follower_.check(reader_.file(), now)) {
            case PathChange::none:
                return false;
            case PathChange::truncated: {
                const std::uint64_t old_offset = reader_.file().offset();
                pipeline_.end_file(reader_);
                ++totals_.truncations;
                report(ErrorKind::truncated,
                       fmt::format("file shrank below the read offset {} (copy-and-truncate?); "
                                   "reading again from offset 0",
                                   old_offset),
                       old_offset, 0);
                reader_.restart_at_zero();
                committer_.commit(true);  // a crash from now on resumes at the new content
                return true;
            }
            case PathChange::retire:
                pipeline_.end_file(reader_);
                ++totals_.rotations;
                pipeline_.forget(reader_);
                reader_.close();
                follower_.closed();
                watcher_->unwatch_file();
                next_open_ = now;
                return true;
        }
        return false;
    }

    std::optional<clock::time_point> deadline(clock::time_point now) const override {
        std::optional<clock::time_point> at = follower_.retire_deadline();
        if (!reader_.is_open()) {
            const auto open_at = std::max(next_open_, now);
            at = at ? std::min(*at, open_at) : open_at;
        }
        return at;
    }

    bool settled() const override {
        return reader_.is_open() && reader_.drained() && !follower_.retire_deadline();
    }

    void wait(std::chrono::milliseconds timeout) override { watcher_->wait(timeout); }
    void wake() const noexcept override {
        if (watcher_) {
            watcher_->wake();
        }
    }

    void finish() override { pipeline_.finish(reader_); }

    std::optional<CheckpointState> checkpoint_state() const override {
        if (!reader_.is_open()) {
            return std::nullopt;
        }
        CheckpointState state;
        state.version = 1;
        state.path = options_.path.string();
        state.files.push_back(FileCheckpoint{reader_.delivered_position(), state.path, false, 0});
        return state;
    }

    void publish(TailerStats& stats) const override {
        stats.file_open = reader_.is_open();
        stats.waiting_for_path = !stats.file_open && path_missing_;
        stats.offset = reader_.delivered_offset();
        stats.pending_bytes = reader_.pending_bytes();
        stats.files = stats.file_open ? 1 : 0;
        if (stats.file_open) {
            if (const auto lag = reader_.lag()) {
                stats.lag = *lag;
            }
        }
    }

    const std::string* current_file() const override { return &reader_.path_text(); }

    void publish_files(std::vector<FileStats>& files) const override {
        files.clear();
        if (!reader_.is_open()) {
            return;
        }
        const auto position = reader_.delivered_position();
        const long long size = reader_.file().size();
        files.push_back(FileStats{reader_.path_text(), position.file, true, false, position.offset,
                                  position.line, size < 0 ? 0 : static_cast<std::uint64_t>(size),
                                  reader_.pending_bytes()});
    }

  private:
    static constexpr std::chrono::milliseconds max_backoff{5000};

    // Opens the file at the path (or, on resume, the saved file where it is now). True when a
    // file was opened.
    bool open_file(clock::time_point now) {
        FollowedFile file;
        OpenOutcome outcome = follower_.open(file, 0);
        path_missing_ = outcome.missing;
        std::uint64_t lines = 0;
        bool seek_end = false;
        if (resume_ && (outcome.missing || file.is_open())) {
            const Position saved = *resume_;
            resume_.reset();
            lines = resume_from(saved, outcome.size, file);
        } else if (outcome.missing) {
            open_backoff_ = {};
            return false;  // not there yet: its creation wakes us (or the next poll finds it)
        } else if (file.is_open() && first_open_ && options_.start == StartAt::end) {
            seek_end = true;
        }
        if (!file.is_open() && !outcome.missing) {
            ++totals_.io_errors;
            report(outcome.not_a_file ? ErrorKind::not_a_file : ErrorKind::io, outcome.error, 0, 0);
            open_backoff_ = open_backoff_ == std::chrono::milliseconds{0}
                                ? options_.poll_interval
                                : std::min(open_backoff_ * 2, max_backoff);
            next_open_ = now + open_backoff_;
            return false;
        }
        if (!file.is_open()) {
            return false;
        }
        open_backoff_ = {};
        reader_.begin(std::move(file), lines);
        if (seek_end) {
            reader_.seek_to_last_line_start(outcome.size);
        }
        watcher_->watch_file(reader_.file().fd());
        // Where this file starts being read is a position too: a crash before its first batch
        // must resume here, not in the file before it or at an offset that no longer applies.
        committer_.commit(true);
        return true;
    }

    // The resume rules: the same file at the path continues from the saved offset (or from 0 if
    // it shrank); otherwise the saved file is looked for among rotated_glob and read to its end
    // first; if it is nowhere, the possible gap is reported and the path is read from byte 0.
    // Returns the lines before the offset `file` is left at.
    std::uint64_t resume_from(const Position& saved, std::uint64_t size_at_path,
                              FollowedFile& file) {
        if (file.is_open() && file.id() == saved.file && size_at_path < saved.offset) {
            // Shorter than the offset: truncated (or a new file on a reused inode; the
            // fingerprint cannot tell them apart, and either way it is read from its start).
            ++totals_.truncations;
            report(ErrorKind::truncated,
                   fmt::format("file is {} bytes, shorter than the saved offset {}: it was "
                               "truncated; reading from offset 0",
                               size_at_path, saved.offset),
                   saved.offset, saved.line);
            return 0;
        }
        if (file.is_open() && same_file(file.fd(), saved)) {
            file.seek(saved.offset);
            return saved.line;
        }
        const std::string pattern = options_.rotated_glob.empty()
                                        ? default_rotated_glob(options_.path.string())
                                        : options_.rotated_glob;
        if (auto rotated = find_rotated(pattern, saved)) {
            std::vector<FileId> skip{rotated->id};
            if (file.is_open()) {
                skip.push_back(file.id());
            }
            const auto skipped = rotated_after(pattern, rotated->modified, skip);
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
            file = FollowedFile(std::move(rotated->fd), rotated->id, offset);
            follower_.adopted();
            return offset == saved.offset ? saved.line : 0;
        }
        report(ErrorKind::gap,
               fmt::format("the saved file {} is neither at the path nor among '{}'; reading the "
                           "path from its first byte: lines written to the saved file after "
                           "offset {} may be lost",
                           saved.file, pattern, saved.offset),
               saved.offset, saved.line);
        return 0;
    }

    void report(ErrorKind kind, std::string message, std::uint64_t offset, std::uint64_t line) {
        reporter_.report(kind, std::move(message), reader_.path_text(), offset, line);
    }

    const TailOptions& options_;
    TailerStats& totals_;
    Reporter& reporter_;
    PipelineControl& pipeline_;
    Committer& committer_;
    PathFollower follower_;
    FileReader reader_;
    std::array<FileReader*, 1> readers_{&reader_};
    std::optional<Position> resume_;  // where the first open resumes (checkpoint or StartAt)
    std::optional<FileWatcher> watcher_;
    bool first_open_{true};
    bool path_missing_{false};
    clock::time_point next_open_{};
    std::chrono::milliseconds open_backoff_{0};
};

}  // namespace snaptail::detail
