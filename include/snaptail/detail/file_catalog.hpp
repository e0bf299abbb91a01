// The files of a file set, known by identity: what each scan found, in which order they come,
// where each was left, and the checkpoint's view of them.
#pragma once

#include <snaptail/checkpoint_state.hpp>
#include <snaptail/detail/file_reader.hpp>
#include <snaptail/detail/file_set_pattern.hpp>
#include <snaptail/detail/file_set_scan.hpp>
#include <snaptail/detail/rotated_files.hpp>
#include <snaptail/tail_options.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace snaptail::detail {

/// One file of a set. Its position is where reading resumes when no reader holds it open.
struct SetFile {
    FileId id;
    std::string relative;         ///< The name it had when last seen, below the root.
    std::int64_t modified_ns{0};  ///< When first seen (FileOrder::modified).
    std::uint64_t size{0};        ///< As the last scan saw it.
    Position position;            ///< Delivered up to here (while no reader has it open).
    bool done{false};             ///< Follow newest: read to its end and left for a newer file.
    bool seen{false};             ///< Found by the last scan (false: gone, or not scanned yet).
    bool sized{false};            ///< Seen by a scan of this run: `size` is known.
    bool order_known{false};      ///< modified_ns is set (entries loaded from a checkpoint wait
                                  ///< for their first scan).
    std::int64_t gone_since{0};   ///< Wall-clock seconds when first found gone (0: present).
    bool start_at_end{false};     ///< Opened at its last line (StartAt::end at the first start).
    bool open{false};             ///< A reader has it open (its inode cannot be reused).

    // All files only.
    std::unique_ptr<FileReader> reader;  ///< Its reader, open or not.
    bool ready{false};       ///< Open, and may have more to read (written, or just opened).
    bool wants_open{false};  ///< Not open, and has (or may have) more to read.
    std::chrono::steady_clock::time_point active{};  ///< Last read that returned data.
    /// Since when it has been quiet at its end while outside the set (renamed away, deleted).
    std::optional<std::chrono::steady_clock::time_point> quiet_since;
};

/// What a merge changed.
struct CatalogChanges {
    std::vector<SetFile*> appeared;  ///< New identities, in order.
    std::vector<SetFile*> vanished;  ///< Present before, not found now (not yet known gone).
    /// Known files whose inode a new file now holds: gone, and already forgotten.
    std::vector<std::unique_ptr<SetFile>> replaced;
};

/// The known files of a set and their order. Not thread-safe: the tailer's thread.
class FileCatalog {
  public:
    FileCatalog(const TailOptions& options)
        : root_(options.files->root), pattern_(options.files->glob), set_(*options.files) {}

    const FileSetPattern& pattern() const noexcept { return pattern_; }
    const std::filesystem::path& root() const noexcept { return root_; }
    bool empty() const noexcept { return ordered_.empty(); }
    std::size_t size() const noexcept { return ordered_.size(); }

    /// Called before a file is forgotten (pruned, or its inode found reused), so that a
    /// follow policy can drop its pointers to it.
    void on_erase(std::function<void(SetFile&)> hook) { on_erase_ = std::move(hook); }

    /// root / relative: the name reports, stats and batches give. Allocates.
    std::string full_path(const SetFile& file) const { return (root_ / file.relative).string(); }

    /// The files in order (natural path order, or first-seen modification time).
    const std::vector<SetFile*>& ordered() const noexcept { return ordered_; }

    SetFile* find(FileId id) const {
        const auto it = by_id_.find(id);
        return it == by_id_.end() ? nullptr : it->second.get();
    }
    SetFile* find_relative(std::string_view relative) const {
        const auto it = by_name_.find(relative);
        return it == by_name_.end() ? nullptr : it->second;
    }

    /// Takes the entries of a version 2 checkpoint (positions, done flags); a scan then finds
    /// which of them are still there. Allocates.
    void load(const CheckpointState& state) {
        for (const auto& saved : state.files) {
            auto file = std::make_unique<SetFile>();
            file->id = saved.position.file;
            file->position = saved.position;
            file->done = saved.done;
            file->gone_since = saved.gone_since;
            name(*file, saved.path);
            insert(std::move(file));
        }
    }

    /// Brings the catalog up to date with a scan: new identities appear (in order), known ones
    /// are renamed and resized, those not found vanish. A known identity found under another
    /// name whose first bytes differ from what was read is a new file on a reused inode. When a
    /// directory could not be listed, nothing is taken as gone. Allocates.
    CatalogChanges merge(const ScanResult& scan, std::int64_t wall_seconds) {
        CatalogChanges changes;
        for (auto& [id, file] : by_id_) {
            file->seen = false;
        }
        for (const FoundFile& found : scan.files) {
            SetFile* file = find(found.id);
            if (file != nullptr && file->relative != found.relative && reused(*file, found)) {
                changes.replaced.push_back(erase(file));
                file = nullptr;
            }
            if (file == nullptr) {
                auto fresh = std::make_unique<SetFile>();
                fresh->id = found.id;
                fresh->position.file = found.id;
                file = fresh.get();
                name(*file, found.relative);
                file->modified_ns = found.modified_ns;
                file->order_known = true;
                insert(std::move(fresh));
                changes.appeared.push_back(file);
            } else if (file->relative != found.relative) {
                unname(*file);
                name(*file, found.relative);
            }
            if (!file->order_known) {
                file->modified_ns = found.modified_ns;
                file->order_known = true;
                reorder_ = true;
            }
            file->seen = true;
            file->sized = true;
            file->size = found.size;
            file->gone_since = 0;
        }
        if (reorder_) {
            sort();
        }
        std::sort(changes.appeared.begin(), changes.appeared.end(),
                  [this](const SetFile* a, const SetFile* b) { return before(*a, *b); });
        if (!scan.errors.empty()) {
            for (auto& [id, file] : by_id_) {
                file->seen = true;  // unknown: keep everything as it was
            }
            return changes;
        }
        for (SetFile* file : ordered_) {
            if (!file->seen && file->gone_since == 0) {
                file->gone_since = wall_seconds;
                changes.vanished.push_back(file);
            }
        }
        return changes;
    }

    /// Forgets files gone for longer than forget_after that no reader holds. Returns how many.
    std::size_t prune(std::int64_t wall_seconds) {
        std::vector<SetFile*> old;
        for (SetFile* file : ordered_) {
            if (file->gone_since != 0 && !file->open &&
                wall_seconds - file->gone_since >= set_.forget_after.count()) {
                old.push_back(file);
            }
        }
        for (SetFile* file : old) {
            erase(file);
        }
        return old.size();
    }

    /// The checkpoint's view: one entry per known file, with the position `position_of` gives.
    template <class PositionOf>
    CheckpointState state(PositionOf&& position_of) const {
        CheckpointState state;
        state.version = 2;
        state.root = root_.string();
        state.glob = set_.glob;
        state.files.reserve(ordered_.size());
        for (const SetFile* file : ordered_) {
            state.files.push_back(
                FileCheckpoint{position_of(*file), file->relative, file->done, file->gone_since});
        }
        return state;
    }

    /// Whether `a` comes before `b` in the set's order.
    bool before(const SetFile& a, const SetFile& b) const noexcept {
        if (set_.order == FileOrder::modified && a.modified_ns != b.modified_ns) {
            return a.modified_ns < b.modified_ns;
        }
        return natural_path_compare(a.relative, b.relative) < 0;
    }

  private:
    // Whether a known identity found under a new name holds other bytes than those read
    // from it: then the inode was reused by a new file. A file open for reading keeps its
    // inode, so only closed files can be reused.
    bool reused(const SetFile& file, const FoundFile& found) const {
        if (file.open) {
            return false;
        }
        const std::uint64_t expected =
            std::min<std::uint64_t>(file.position.offset, max_fingerprint_bytes);
        if (expected == 0) {
            return false;
        }
        OpenOutcome opened = open_regular_file(root_ / found.relative);
        return !opened.fd || opened.id != file.id || !same_file(opened.fd.get(), file.position);
    }

    void name(SetFile& file, std::string_view relative) {
        file.relative = std::string(relative);
        // A fresh key: the key of an entry another file held views that file's name.
        by_name_.erase(file.relative);
        by_name_.emplace(file.relative, &file);
        if (file.reader) {
            file.reader->rename(full_path(file));
        }
        reorder_ = true;
    }

    void insert(std::unique_ptr<SetFile> file) {
        ordered_.push_back(file.get());
        by_id_[file->id] = std::move(file);
        reorder_ = true;
    }

    void unname(const SetFile& file) {
        if (const auto it = by_name_.find(file.relative);
            it != by_name_.end() && it->second == &file) {
            by_name_.erase(it);
        }
    }

    std::unique_ptr<SetFile> erase(SetFile* file) {
        if (on_erase_) {
            on_erase_(*file);
        }
        unname(*file);
        std::erase(ordered_, file);
        const auto it = by_id_.find(file->id);
        auto owned = std::move(it->second);
        by_id_.erase(it);
        return owned;
    }

    void sort() {
        std::stable_sort(ordered_.begin(), ordered_.end(),
                         [this](const SetFile* a, const SetFile* b) { return before(*a, *b); });
        reorder_ = false;
    }

    std::filesystem::path root_;
    FileSetPattern pattern_;
    const FileSet& set_;
    std::map<FileId, std::unique_ptr<SetFile>> by_id_;
    std::map<std::string_view, SetFile*, std::less<>> by_name_;  // views of SetFile::relative
    std::vector<SetFile*> ordered_;
    std::function<void(SetFile&)> on_erase_;
    bool reorder_{false};
};

}  // namespace snaptail::detail
