// All files: every file of a set is followed at once. Each turn reads every file that may have
// more (one read each, so that a busy file cannot starve the others); at most max_open_files
// are open, the least recently active idle ones are closed and reopened by identity.
#pragma once

#include <snaptail/detail/file_set_source.hpp>

#include <algorithm>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace snaptail::detail {

class FollowAll final : public FileSetSource {
  public:
    FollowAll(const TailOptions& options, TailerStats& totals, Reporter& reporter,
              PipelineControl& pipeline, Committer& committer, WindowPool& windows, SetStart start)
        : FileSetSource(options, totals, reporter, pipeline, committer, windows, std::move(start)) {
        catalog_.on_erase([this](SetFile& file) {
            for (auto* list : {&ready_, &to_open_, &idle_, &leaving_}) {
                std::erase(*list, &file);
            }
        });
    }

    std::span<FileReader* const> turn() override {
        turn_.clear();
        turn_files_.clear();
        std::erase_if(ready_, [](const SetFile* file) { return !file->ready; });
        for (SetFile* file : ready_) {
            turn_.push_back(file->reader.get());
            turn_files_.push_back(file);
        }
        return turn_;
    }

    void was_read(std::size_t index, bool got, clock::time_point now) override {
        SetFile& file = *turn_files_[index];
        if (got) {
            file.active = now;
            file.quiet_since.reset();
            return;
        }
        if (file.reader->waiting_for_window()) {
            return;  // not read: every window was lent; it stays ready for the next turn
        }
        file.ready = false;  // at its end until written again
        idle_.push_back(&file);
    }

    // Files that read nothing in the last turn: truncated? left the set and quiet long enough?
    bool check(clock::time_point now) override {
        bool changed = false;
        for (SetFile* file : std::exchange(idle_, {})) {
            if (file->reader && file->reader->is_open() && check_one(*file, now)) {
                changed = true;
            }
        }
        for (SetFile* file : leaving_) {
            if (file->reader && file->reader->is_open() && check_one(*file, now)) {
                changed = true;
            }
        }
        std::erase_if(leaving_, [](const SetFile* file) {
            return !file->reader || !file->reader->is_open() || !file->quiet_since;
        });
        return changed;
    }

    std::optional<clock::time_point> deadline(clock::time_point) const override {
        std::optional<clock::time_point> at = scan_deadline();
        for (const SetFile* file : leaving_) {
            if (file->quiet_since) {
                at = std::min(*at, *file->quiet_since + options_.rotate_wait);
            }
        }
        if (!to_open_.empty() && open_ < set_.max_open_files) {
            at = std::min(*at, clock::time_point{});
        }
        return at;
    }

    bool settled() const override {
        if (!leaving_.empty() ||
            std::any_of(ready_.begin(), ready_.end(), [](const SetFile* f) { return f->ready; })) {
            return false;
        }
        return std::all_of(
            catalog_.ordered().begin(), catalog_.ordered().end(), [](const SetFile* file) {
                return !file->wants_open &&
                       (!file->reader || !file->reader->is_open() || file->reader->drained());
            });
    }

    void finish() override {
        for (SetFile* file : catalog_.ordered()) {
            if (file->reader && file->reader->is_open()) {
                pipeline_.finish(*file->reader);
            }
        }
    }

    // Totals of lag and pending bytes are those of the last publish_files (at a wait): summing
    // them after every batch would stat every open file each time.
    void publish(TailerStats& stats) const override {
        publish_set(stats, open_);
        stats.offset = 0;
        stats.pending_bytes = pending_;
        stats.lag = lag_;
    }

    void publish_files(std::vector<FileStats>& files) const override {
        files.clear();
        pending_ = 0;
        lag_ = 0;
        for (const SetFile* file : catalog_.ordered()) {
            files.push_back(file_stats(*file));
            pending_ += files.back().pending_bytes;
            lag_ += files.back().size > files.back().offset
                        ? files.back().size - files.back().offset
                        : 0;
        }
    }

    const std::string* current_file() const override { return nullptr; }

  protected:
    void written(SetFile& file) override {
        if (!file.reader) {
            return;
        }
        if (file.reader->is_open()) {
            make_ready(file);
        } else if (!file.wants_open) {
            file.wants_open = true;
            to_open_.push_back(&file);
        }
    }

    void changed(const CatalogChanges& changes, bool first) override {
        const bool fresh_start = first && !start_.saved;
        for (SetFile* file : changes.appeared) {
            file->reader = std::make_unique<FileReader>(options_, catalog_.full_path(*file),
                                                        totals_, reporter_, windows_);
            if (!fresh_start) {
                continue;  // appeared later: read from its first byte
            }
            if (const Position* saved = start_.position_of(file->id)) {
                file->position = *saved;
            } else if (options_.start == StartAt::end) {
                file->start_at_end = file->size > 0;
            }
        }
        // Loaded from a checkpoint and found again: give them readers too.
        for (SetFile* file : catalog_.ordered()) {
            if (!file->reader && file->seen) {
                file->reader = std::make_unique<FileReader>(options_, catalog_.full_path(*file),
                                                            totals_, reporter_, windows_);
            }
            if (file->reader && !file->reader->is_open() && file->seen && !file->wants_open &&
                file->size != file->position.offset) {
                file->wants_open = true;  // new, grown, or shrunk while closed
                to_open_.push_back(file);
            } else if (file->open && file->seen && file->size != file->reader->file().offset()) {
                make_ready(*file);  // grown or shrunk: without inotify, this is the poll
            }
        }
        for (const auto& file : changes.replaced) {
            lost(*file, "replaced by a new file on the same inode");
        }
        for (SetFile* file : changes.vanished) {
            if (file->reader && file->reader->is_open()) {
                leaving_.push_back(file);  // read what is left through the descriptor
                file->quiet_since.reset();
                make_ready(*file);
            } else {
                lost(*file, "deleted or renamed out of the set");
            }
        }
        std::erase_if(to_open_, [](SetFile* file) {
            const bool keep = file->seen && file->wants_open;
            file->wants_open = keep;
            return !keep;
        });
    }

    bool open_due(clock::time_point now) override {
        bool opened = false;
        std::size_t done = 0;
        for (; done < to_open_.size(); ++done) {
            SetFile& file = *to_open_[done];
            if (open_ >= set_.max_open_files && !close_idle()) {
                break;
            }
            file.wants_open = false;
            if (!open_into(file, *file.reader, now)) {
                continue;
            }
            file.open = true;
            ++open_;
            file.active = now;
            make_ready(file);
            opened = true;
        }
        to_open_.erase(to_open_.begin(), to_open_.begin() + static_cast<std::ptrdiff_t>(done));
        if (opened) {
            committer_.commit(true);
        }
        return opened;
    }

    Position position_of(const SetFile& file) const override {
        return file.reader && file.reader->is_open() ? file.reader->delivered_position()
                                                     : file.position;
    }
    const FileReader* reader_of(const SetFile& file) const override {
        return file.reader && file.reader->is_open() ? file.reader.get() : nullptr;
    }

  private:
    void make_ready(SetFile& file) {
        if (!file.ready) {
            file.ready = true;
            ready_.push_back(&file);
        }
    }

    // At its end and nothing new: truncated, or out of the set for rotate_wait.
    bool check_one(SetFile& file, clock::time_point now) {
        FileReader& reader = *file.reader;
        const long long size = reader.file().size();
        if (size >= 0 && static_cast<std::uint64_t>(size) < reader.file().offset()) {
            const std::uint64_t old_offset = reader.file().offset();
            pipeline_.end_file(reader);
            ++totals_.truncations;
            report(file, ErrorKind::truncated,
                   fmt::format("file shrank below the read offset {} (copy-and-truncate?); "
                               "reading again from offset 0",
                               old_offset),
                   old_offset, 0);
            reader.restart_at_zero();
            make_ready(file);
            committer_.commit(true);
            return true;
        }
        if (file.seen) {
            return false;
        }
        const auto since = quiet_start(reader.file(), now);
        file.quiet_since = file.quiet_since ? std::min(*file.quiet_since, since) : since;
        if (now - *file.quiet_since < options_.rotate_wait) {
            return false;
        }
        // Gone from the set and quiet: its incomplete last line is a line after all.
        pipeline_.end_file(reader);
        ++totals_.rotations;
        close(file);
        file.quiet_since.reset();
        committer_.commit(true);
        return true;
    }

    // Closes the least recently active idle file to make room for another. False when every
    // open file is busy (then the others wait their turn).
    bool close_idle() {
        SetFile* oldest = nullptr;
        for (SetFile* file : catalog_.ordered()) {
            const FileReader* reader = file->reader.get();
            if (reader == nullptr || !reader->is_open() || file->ready || !file->seen ||
                !reader->drained() || reader->framer().in_long_line() || reader->framing_paused()) {
                continue;
            }
            if (oldest == nullptr || file->active < oldest->active) {
                oldest = file;
            }
        }
        if (oldest == nullptr) {
            return false;
        }
        close(*oldest);
        ++totals_.files_closed_idle;
        return true;
    }

    // Its complete lines go out; it is reopened at its position (the file is the buffer: an
    // incomplete last line is read again then).
    void close(SetFile& file) {
        pipeline_.forget(*file.reader);
        file.position = file.reader->delivered_position();
        file.reader->close();
        file.reader->release_window();
        file.open = false;
        file.ready = false;
        --open_;
    }

    std::vector<SetFile*> ready_;    // open files that may have more to read
    std::vector<SetFile*> to_open_;  // closed files that have (or may have) more to read
    std::vector<SetFile*> idle_;     // read nothing in the last turn
    std::vector<SetFile*> leaving_;  // open, but gone from the set: finished once quiet
    std::vector<FileReader*> turn_;
    std::vector<SetFile*> turn_files_;
    std::size_t open_{0};
    mutable std::size_t pending_{0};
    mutable std::uint64_t lag_{0};
};

}  // namespace snaptail::detail
