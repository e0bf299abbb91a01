// Follow newest: the files of a set one at a time, in order. The current file is finished once
// a newer one exists and it has been quiet at its end for rotate_wait; then the next in order.
#pragma once

#include <snaptail/detail/file_set_source.hpp>

#include <algorithm>
#include <array>
#include <optional>
#include <span>

namespace snaptail::detail {

class FollowNewest final : public FileSetSource {
  public:
    FollowNewest(const TailOptions& options, TailerStats& totals, Reporter& reporter,
                 PipelineControl& pipeline, Committer& committer, WindowPool& windows,
                 SetStart start)
        : FileSetSource(options, totals, reporter, pipeline, committer, windows, std::move(start)),
          reader_(options, options.files->root.string(), totals, reporter, windows) {}

    std::span<FileReader* const> turn() override {
        return current_ != nullptr ? std::span<FileReader* const>(readers_)
                                   : std::span<FileReader* const>();
    }

    void was_read(std::size_t, bool got, clock::time_point) override {
        if (got) {
            quiet_since_.reset();  // still being written: not finished yet
        }
    }

    // The current file has no more data: is there a reason to leave it?
    bool check(clock::time_point now) override {
        if (current_ == nullptr) {
            return false;
        }
        if (truncated()) {
            return true;
        }
        const Leave leave = reason_to_leave();
        if (leave == Leave::stay) {
            quiet_since_.reset();
            return false;
        }
        // Quiet means unmodified: a file written an hour ago (a backlog after downtime) is left
        // at once, one still being written is read until it has rested for rotate_wait.
        const auto since = quiet_start(reader_.file(), now);
        quiet_since_ = quiet_since_ ? std::min(*quiet_since_, since) : since;
        if (now - *quiet_since_ < options_.rotate_wait) {
            return false;
        }
        leave_current(leave == Leave::finish);
        return true;
    }

    std::optional<clock::time_point> deadline(clock::time_point now) const override {
        std::optional<clock::time_point> at = scan_deadline();
        if (quiet_since_) {
            at = std::min(*at, *quiet_since_ + options_.rotate_wait);
        }
        if (current_ == nullptr && next_pending() != nullptr) {
            at = std::min(*at, std::max(next_open_, now));
        }
        return at;
    }

    bool settled() const override {
        if (current_ == nullptr) {
            return next_pending() == nullptr;
        }
        return reader_.drained() && !quiet_since_ && reason_to_leave() == Leave::stay;
    }

    void finish() override {
        if (current_ != nullptr) {
            pipeline_.finish(reader_);
        }
    }

    void publish(TailerStats& stats) const override {
        publish_set(stats, current_ != nullptr ? 1 : 0);
        stats.offset = current_ != nullptr ? reader_.delivered_offset() : 0;
        stats.pending_bytes = reader_.pending_bytes();
        stats.lag = 0;
        if (current_ != nullptr) {
            stats.lag = reader_.lag().value_or(0);
        }
        for (const SetFile* file : catalog_.ordered()) {
            if (!file->done && file != current_ && file->seen) {
                stats.lag += file->size;  // still to read
            }
        }
    }

    void publish_files(std::vector<FileStats>& files) const override {
        files.clear();
        for (const SetFile* file : catalog_.ordered()) {
            files.push_back(file_stats(*file));
        }
    }

    const std::string* current_file() const override {
        return current_ != nullptr ? &reader_.path_text() : nullptr;
    }

  protected:
    void written(SetFile&) override {}  // the current file is read every turn anyway

    void changed(const CatalogChanges& changes, bool first) override {
        if (first) {
            apply_start();
        }
        for (const auto& file : changes.replaced) {
            if (!file->done) {
                lost(*file, "replaced by a new file on the same inode");
            }
        }
        for (SetFile* file : changes.vanished) {
            if (file != current_ && !file->done) {
                file->done = true;
                lost(*file, "deleted or renamed out of the set");
            }
        }
    }

    bool open_due(clock::time_point now) override {
        if (current_ != nullptr || now < next_open_) {
            return false;
        }
        SetFile* next = next_pending();
        if (next == nullptr) {
            return false;
        }
        if (!open_into(*next, reader_, now)) {
            next_open_ = now + options_.poll_interval;
            return false;
        }
        current_ = next;
        current_->open = true;
        quiet_since_.reset();
        // Where this file starts being read is a position too: a crash before its first batch
        // resumes here.
        committer_.commit(true);
        return true;
    }

    Position position_of(const SetFile& file) const override {
        return &file == current_ ? reader_.delivered_position() : file.position;
    }
    const FileReader* reader_of(const SetFile& file) const override {
        return &file == current_ ? &reader_ : nullptr;
    }

  private:
    enum class Leave { stay, finish, suspend };

    // A newer file exists, or the current one left the set: finish it. Only an older file that
    // appeared late is waiting: leave the current one unfinished, read the older one, and come
    // back (its position is kept).
    Leave reason_to_leave() const {
        if (!current_->seen) {
            return Leave::finish;
        }
        bool older = false;
        bool after = false;
        for (const SetFile* file : catalog_.ordered()) {
            if (file == current_) {
                after = true;
            } else if (file->seen && !file->done) {
                if (after) {
                    return Leave::finish;
                }
                older = true;
            }
        }
        return older ? Leave::suspend : Leave::stay;
    }

    SetFile* next_pending() const {
        for (SetFile* file : catalog_.ordered()) {
            if (!file->done && file->seen) {
                return file;
            }
        }
        return nullptr;
    }

    bool truncated() {
        const long long size = reader_.file().size();
        if (size < 0 || static_cast<std::uint64_t>(size) >= reader_.file().offset()) {
            return false;
        }
        const std::uint64_t old_offset = reader_.file().offset();
        pipeline_.end_file(reader_);
        ++totals_.truncations;
        report(*current_, ErrorKind::truncated,
               fmt::format("file shrank below the read offset {} (copy-and-truncate?); reading "
                           "again from offset 0",
                           old_offset),
               old_offset, 0);
        reader_.restart_at_zero();
        committer_.commit(true);
        return true;
    }

    // Finishing: its incomplete last line is a line after all, and the file is done.
    // Suspending: only complete lines go out; it is read again from its position later.
    void leave_current(bool finish) {
        if (finish) {
            pipeline_.end_file(reader_);
            ++totals_.files_done;
            ++totals_.rotations;
        }
        pipeline_.forget(reader_);
        current_->position = reader_.delivered_position();
        current_->done = finish;
        current_->open = false;
        reader_.close();
        current_ = nullptr;
        quiet_since_.reset();
        next_open_ = {};
        committer_.commit(true);
    }

    // The first scan of a tailer without a version 2 checkpoint: StartAt (and positions
    // stored elsewhere) say where to begin.
    void apply_start() {
        if (start_.saved) {
            return;
        }
        const auto& files = catalog_.ordered();
        if (!start_.positions.empty()) {
            const auto last = std::find_if(files.rbegin(), files.rend(), [&](const SetFile* file) {
                return start_.position_of(file->id) != nullptr;
            });
            if (last == files.rend()) {
                reporter_.report(ErrorKind::gap,
                                 fmt::format("none of the {} start positions names a file in the "
                                             "set (the last: {}); reading every file from its "
                                             "first byte",
                                             start_.positions.size(), start_.positions.back()),
                                 name(), start_.positions.back().offset,
                                 start_.positions.back().line);
                return;
            }
            const auto end = last.base();  // one past the last file with a position
            for (auto it = files.begin(); it != end; ++it) {
                if (const Position* saved = start_.position_of((*it)->id)) {
                    (*it)->position = *saved;
                } else {
                    skip(**it);
                }
            }
            return;
        }
        if (options_.start == StartAt::end && !files.empty()) {
            std::for_each(files.begin(), files.end() - 1, [this](SetFile* file) { skip(*file); });
            files.back()->start_at_end = true;
        }
    }

    FileReader reader_;
    std::array<FileReader*, 1> readers_{&reader_};
    SetFile* current_{nullptr};
    std::optional<clock::time_point> quiet_since_;
    clock::time_point next_open_{};
};

}  // namespace snaptail::detail
