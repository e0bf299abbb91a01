// What both ways of following a file set share: listing it (on inotify events, as a guard
// every scan_interval, or every poll_interval without inotify), the catalog of its files,
// opening a file where it was left, gaps, the checkpoint's view, and stats.
#pragma once

#include <snaptail/checkpoint_state.hpp>
#include <snaptail/detail/committer.hpp>
#include <snaptail/detail/file_catalog.hpp>
#include <snaptail/detail/file_reader.hpp>
#include <snaptail/detail/file_set_scan.hpp>
#include <snaptail/detail/pipeline_control.hpp>
#include <snaptail/detail/reporter.hpp>
#include <snaptail/detail/rotated_files.hpp>
#include <snaptail/detail/set_watcher.hpp>
#include <snaptail/detail/source.hpp>
#include <snaptail/tail_options.hpp>

#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace snaptail::detail {

/// Where a file set starts: a checkpoint's entries, or TailOptions::start at the first scan.
struct SetStart {
    std::optional<CheckpointState> saved;  ///< Version 2 entries (none: a first start).
    /// StartAt::position and TailOptions::resume_positions, or a version 1 checkpoint's.
    std::vector<Position> positions;

    /// The position given for `id`, if any.
    const Position* position_of(FileId id) const noexcept {
        for (const Position& p : positions) {
            if (p.file == id) {
                return &p;
            }
        }
        return nullptr;
    }
};

/// Not thread-safe (the tailer's thread), except wake().
class FileSetSource : public Source {
  public:
    FileSetSource(const TailOptions& options, TailerStats& totals, Reporter& reporter,
                  PipelineControl& pipeline, Committer& committer, WindowPool& windows,
                  SetStart start)
        : options_(options),
          set_(*options.files),
          totals_(totals),
          reporter_(reporter),
          pipeline_(pipeline),
          committer_(committer),
          windows_(windows),
          catalog_(options),
          start_(std::move(start)) {
        if (start_.saved) {
            catalog_.load(*start_.saved);
        }
        source_name_ = (set_.root / set_.glob).string();
    }

    void begin_run() override {
        watcher_.emplace(options_.use_inotify);
        next_scan_ = clock::now();
    }
    void end_run() noexcept override { watcher_.reset(); }

    bool refresh(clock::time_point now) override {
        if (now >= next_drain_) {
            watcher_->drain();
            next_drain_ = now + drain_period;
        }
        watcher_->take_written([this](std::string_view relative) {
            if (SetFile* file = catalog_.find_relative(relative)) {
                written(*file);
            }
        });
        if (watcher_->take_rescan()) {
            next_scan_ = now;
        }
        if (now >= next_scan_) {
            rescan(now);
        }
        return open_due(now);
    }

    void wait(std::chrono::milliseconds timeout) override { watcher_->wait(timeout); }
    void wake() const noexcept override {
        if (watcher_) {
            watcher_->wake();
        }
    }

    std::optional<CheckpointState> checkpoint_state() const override {
        if (!scanned_) {
            return std::nullopt;
        }
        return catalog_.state([this](const SetFile& file) { return position_of(file); });
    }

    /// The file set as reports name it ("root/glob").
    const std::string& name() const noexcept { return source_name_; }

  protected:
    using clock = Source::clock;

    /// A file of the set was written (an inotify event named it).
    virtual void written(SetFile& file) = 0;
    /// A scan changed the catalog; `first` for the first scan of this tailer's life.
    virtual void changed(const CatalogChanges& changes, bool first) = 0;
    /// Opens what is due; true when a file was opened.
    virtual bool open_due(clock::time_point now) = 0;
    /// Where `file` has been delivered up to.
    virtual Position position_of(const SetFile& file) const = 0;

    std::optional<clock::time_point> scan_deadline() const { return next_scan_; }
    void scan_soon(clock::time_point now) noexcept { next_scan_ = now; }

    // Opens `file` into `reader` where it was left (its position), or at its last line for
    // StartAt::end. False when it cannot be opened now (reported when it is not just gone, or
    // when the name holds another file now: a rescan then sorts it out).
    bool open_into(SetFile& file, FileReader& reader, clock::time_point now) {
        OpenOutcome out = open_regular_file(catalog_.full_path(file));
        if (!out.fd) {
            if (!out.missing) {
                ++totals_.io_errors;
                report(file, out.not_a_file ? ErrorKind::not_a_file : ErrorKind::io, out.error,
                       file.position.offset, file.position.line);
            }
            scan_soon(now);
            return false;
        }
        if (out.id != file.id) {
            scan_soon(now);  // renamed meanwhile, and another file took its name
            return false;
        }
        const Position& saved = file.position;
        std::uint64_t offset = 0;
        std::uint64_t lines = 0;
        if (saved.offset > 0 && out.size < saved.offset) {
            ++totals_.truncations;
            report(file, ErrorKind::truncated,
                   fmt::format("file is {} bytes, shorter than the offset {} reached: it was "
                               "truncated; reading from offset 0",
                               out.size, saved.offset),
                   saved.offset, saved.line);
        } else if (saved.offset > 0 && !same_file(out.fd.get(), saved)) {
            ++totals_.truncations;
            report(file, ErrorKind::truncated,
                   fmt::format("its first bytes are not those read up to offset {}: it was "
                               "rewritten; reading from offset 0",
                               saved.offset),
                   saved.offset, saved.line);
        } else {
            offset = saved.offset;
            lines = saved.line;
        }
        reader.rename(catalog_.full_path(file));
        reader.begin(FollowedFile(std::move(out.fd), out.id, offset), lines);
        if (std::exchange(file.start_at_end, false)) {
            reader.seek_to_last_line_start(out.size);
        }
        return true;
    }

    // Since when `file` has been left alone, on the steady clock: its last modification, or
    // `now` when its time cannot be had.
    static clock::time_point quiet_start(const FollowedFile& file, clock::time_point now) {
        const auto idle = file.unmodified_for();
        return idle ? now - std::chrono::duration_cast<clock::duration>(*idle) : now;
    }

    // `file` went before it was read to its end: the rest is lost, and said so. A file gone
    // while the tailer was down may have been read to its end or not: that is said too.
    void lost(SetFile& file, std::string_view why) {
        if (file.sized && file.position.offset >= file.size) {
            return;  // read to its end: nothing lost
        }
        ++totals_.files_lost;
        if (file.sized) {
            report(file, ErrorKind::gap,
                   fmt::format("{} before it was read to its end: read up to offset {} of {} "
                               "bytes; the rest is lost",
                               why, file.position.offset, file.size),
                   file.position.offset, file.position.line);
        } else {
            report(file, ErrorKind::gap,
                   fmt::format("{} while the tailer was down: read up to offset {}; lines "
                               "written to it after that, if any, are lost",
                               why, file.position.offset),
                   file.position.offset, file.position.line);
        }
    }

    // Marks `file` read without reading it (it lies before where reading starts): its position
    // is its end, fingerprinted so that a restart knows it again.
    void skip(SetFile& file) const {
        file.done = true;
        file.position = Position{file.id, {}, file.size, 0};
        if (OpenOutcome out = open_regular_file(catalog_.full_path(file));
            out.fd && out.id == file.id) {
            file.position.offset = out.size;
            file.position.fingerprint = compute_fingerprint(out.fd.get(), out.size);
        } else {
            file.position.offset = 0;
        }
    }

    void report(const SetFile& file, ErrorKind kind, std::string message, std::uint64_t offset,
                std::uint64_t line) {
        reporter_.report(kind, std::move(message), catalog_.full_path(file), offset, line);
    }

    // Counts of the set for stats().
    void publish_set(TailerStats& stats, std::uint64_t open_files) const {
        stats.files = open_files;
        stats.file_open = open_files != 0;
        stats.waiting_for_path = !stats.file_open && catalog_.empty();
    }

    FileStats file_stats(const SetFile& file) const {
        const Position position = position_of(file);
        const FileReader* reader = reader_of(file);
        std::uint64_t size = file.size;
        if (reader != nullptr) {
            const long long now = reader->file().size();
            size = now < 0 ? size : static_cast<std::uint64_t>(now);
        }
        return FileStats{reader != nullptr ? reader->path_text() : catalog_.full_path(file),
                         file.id,
                         reader != nullptr,
                         file.done,
                         position.offset,
                         position.line,
                         size,
                         reader != nullptr ? reader->pending_bytes() : 0};
    }
    /// The open reader of `file`, if any.
    virtual const FileReader* reader_of(const SetFile& file) const = 0;

    const TailOptions& options_;
    const FileSet& set_;
    TailerStats& totals_;
    Reporter& reporter_;
    PipelineControl& pipeline_;
    Committer& committer_;
    WindowPool& windows_;
    FileCatalog catalog_;
    SetStart start_;

  private:
    // Reading a busy file, the loop does not wait; the events that name other files' writes
    // are read at least this often meanwhile.
    static constexpr std::chrono::milliseconds drain_period{10};

    void rescan(clock::time_point now) {
        ScanResult scan = scan_file_set(set_.root, catalog_.pattern());
        watcher_->watch(set_.root, scan.directories, catalog_.pattern().depth());
        if (options_.use_inotify && !watcher_->active() && !scan.root_missing &&
            !watcher_->failure().empty() && !watch_failure_reported_) {
            watch_failure_reported_ = true;
            reporter_.report(ErrorKind::io,
                             fmt::format("{}; following the set by polling every {} ms instead",
                                         watcher_->failure(), options_.poll_interval.count()),
                             source_name_);
        }
        for (const auto& name : scan.not_files) {
            if (reported_not_files_.insert(name).second) {
                reporter_.report(ErrorKind::not_a_file,
                                 "matches the file set's pattern but is not a regular file: not "
                                 "followed",
                                 (set_.root / name).string());
            }
        }
        for (const auto& error : scan.errors) {
            ++totals_.io_errors;
            reporter_.report(ErrorKind::io, error, source_name_);
        }
        const auto wall = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
        const CatalogChanges changes = catalog_.merge(scan, wall);
        totals_.files_found += changes.appeared.size();
        changed(changes, !std::exchange(scanned_, true));
        catalog_.prune(wall);
        next_scan_ = now + (watcher_->active() ? set_.scan_interval : options_.poll_interval);
    }

    std::string source_name_;
    std::optional<SetWatcher> watcher_;
    clock::time_point next_scan_{};
    clock::time_point next_drain_{};
    bool scanned_{false};
    bool watch_failure_reported_{false};
    std::set<std::string> reported_not_files_;
};

}  // namespace snaptail::detail
