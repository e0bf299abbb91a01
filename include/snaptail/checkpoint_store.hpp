// A file that remembers a tailer's position across restarts and crashes.
#pragma once

#include <snaptail/checkpoint_state.hpp>
#include <snaptail/detail/atomic_file.hpp>
#include <snaptail/detail/unique_fd.hpp>
#include <snaptail/position.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace snaptail {

/// A checkpoint that cannot be read or trusted, or cannot be written. The message names the
/// file and what is wrong.
class CheckpointError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// How a CheckpointStore treats what others may have placed beside it.
struct CheckpointAccess {
    /// Permission bits of the checkpoint files it writes (set with fchmod, whatever the umask).
    unsigned mode{0600};
    /// Read a checkpoint that is a symbolic link, or owned by a user other than the effective
    /// one. Refused by default: whoever can place such a file could make the tailer resume
    /// where they like, or read a file of theirs as a checkpoint.
    bool trust_any_owner{false};
};

/// Stores one Position (format version 1), or a file set's CheckpointState (version 2), in a
/// small text file.
///
/// save() is atomic on every call (write a temporary file beside it, then rename it over the
/// old one), so a crash at any moment leaves a whole checkpoint, old or new. The temporary file
/// gets a new unpredictable name each time and is created with O_EXCL | O_NOFOLLOW, so a
/// symlink or file someone else put in the directory is never followed or reused, and
/// rename(2) replaces a link at the checkpoint's own name rather than following it.
/// Durability against power loss (fsync of the file before the rename and of the directory
/// after it) costs a disk flush, so it happens at most once per sync_interval, and on sync().
/// After a failed fsync nothing written before is assumed durable: the next save or sync
/// writes the whole checkpoint again and flushes it. Not thread-safe: one owner (the tailer's
/// thread) saves.
class CheckpointStore {
  public:
    using clock = std::chrono::steady_clock;

    /// Does no I/O. The directory must exist by the first save().
    explicit CheckpointStore(std::filesystem::path file,
                             std::chrono::milliseconds sync_interval = std::chrono::seconds{1},
                             CheckpointAccess access = {})
        : file_(std::move(file)), sync_interval_(sync_interval), access_(access) {}

    /// The checkpoint file.
    const std::filesystem::path& path() const noexcept { return file_; }

    /// Reads and validates a version 1 checkpoint. nullopt when the file does not exist; throws
    /// CheckpointError when it cannot be read or is not a whole, valid checkpoint. The path
    /// it was saved for is stored in `saved_for` when given. Blocks on the disk; allocates.
    std::optional<Position> load(std::string* saved_for = nullptr) const {
        auto text = read_text(max_size);
        if (!text) {
            return std::nullopt;
        }
        ParsedPosition parsed = parse_position(*text);
        if (!parsed.position) {
            fail(parsed.error);
        }
        if (saved_for != nullptr) {
            *saved_for = std::move(parsed.path);
        }
        return parsed.position;
    }

    /// Reads and validates a checkpoint of either version (see parse_checkpoint). nullopt when
    /// the file does not exist; throws CheckpointError as load() does. Blocks on the disk;
    /// allocates.
    std::optional<CheckpointState> load_state() const {
        auto text = read_text(max_state_size);
        if (!text) {
            return std::nullopt;
        }
        ParsedCheckpoint parsed = parse_checkpoint(*text);
        if (!parsed.state) {
            fail(parsed.error);
        }
        return std::move(parsed.state);
    }

    /// Replaces the checkpoint atomically with `position` (saved for `path`), in format version
    /// 1. Throws CheckpointError naming the failure (a full disk, permissions); the old
    /// checkpoint is then intact. Blocks on the disk; flushes it at most once per
    /// sync_interval. Allocates.
    void save(const Position& position, std::string_view path = {}) {
        replace_with(to_text(position, path));
    }

    /// Replaces the checkpoint atomically with `state` (version 1 or 2, as state.version
    /// says), as save() does.
    void save(const CheckpointState& state) { replace_with(to_text(state)); }

    /// Makes the last save() durable now: the checkpoint is written again to a new file and
    /// flushed with it and its directory, rather than flushing the file already renamed (whose
    /// earlier write-back error a new descriptor might not see). Blocks on the disk. Throws
    /// CheckpointError when the flush fails.
    void sync() {
        if (!dirty_) {
            return;
        }
        replace_with(std::string(last_text_), true);
    }

    /// Largest file load() accepts.
    static constexpr std::size_t max_size = 64 * 1024;
    /// Largest file load_state() accepts (a file set of about 400,000 files).
    static constexpr std::size_t max_state_size = std::size_t{64} << 20;

  private:
    // The file's bytes, up to `limit`; nullopt when it does not exist.
    std::optional<std::string> read_text(std::size_t limit) const {
        const int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
                          (access_.trust_any_owner ? 0 : O_NOFOLLOW);
        const int fd = ::open(file_.c_str(), flags);
        if (fd < 0) {
            if (errno == ENOENT) {
                return std::nullopt;
            }
            if (errno == ELOOP) {
                fail(
                    "is a symbolic link: refused (a checkpoint must be a regular file of the "
                    "running user; CheckpointAccess::trust_any_owner allows it)");
            }
            fail(fmt::format("cannot open: {}", std::generic_category().message(errno)));
        }
        detail::UniqueFd owned(fd);
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            fail("is not a regular file");
        }
        if (!access_.trust_any_owner && st.st_uid != ::geteuid()) {
            fail(
                fmt::format("is owned by uid {}, not by the running user (uid {}): refused "
                            "(CheckpointAccess::trust_any_owner allows it)",
                            st.st_uid, ::geteuid()));
        }
        // Sized for the file as it is now; it may grow while it is read, up to the limit.
        const auto size = static_cast<std::size_t>(st.st_size);
        std::string text(std::min(limit, std::max<std::size_t>(size, 4096)) + 1, '\0');
        std::size_t used = 0;
        for (;;) {
            if (used == text.size()) {
                text.resize(std::min(limit + 1, text.size() * 2));
            }
            const ssize_t n = ::read(fd, text.data() + used, text.size() - used);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                fail(fmt::format("cannot read: {}", std::generic_category().message(errno)));
            }
            if (n == 0) {
                break;
            }
            used += static_cast<std::size_t>(n);
            if (used > limit) {
                fail(fmt::format("larger than {} bytes: not a checkpoint", limit));
            }
        }
        text.resize(used);
        return text;
    }

    // Writes `text` to a new temporary file beside the checkpoint and renames it over it;
    // flushes when `force` or when durability is due.
    void replace_with(std::string text, bool force = false) {
        const auto now = clock::now();
        const bool durable =
            force || must_flush_ || !synced_once_ || now - last_sync_ >= sync_interval_;
        if (!cleaned_) {
            remove_stale_temporaries();
            cleaned_ = true;
        }
        try {
            detail::TemporaryFile temporary(file_.string() + ".tmp.", access_.mode);
            temporary.write(text);
            if (durable) {
                try {
                    temporary.flush();
                } catch (...) {
                    must_flush_ = true;  // nothing written so far can be trusted to be on disk
                    throw;
                }
            }
            temporary.replace(file_);
        } catch (const std::system_error& e) {
            fail(e.what());
        }
        last_text_ = std::move(text);
        dirty_ = true;
        if (durable) {
            sync_directory();
            last_sync_ = now;
            synced_once_ = true;
            must_flush_ = false;
            dirty_ = false;
        }
    }

    // Temporary files a crash left behind: regular files of ours named "<checkpoint>.tmp.*".
    // Never follows a link: unlink removes the name only.
    void remove_stale_temporaries() noexcept {
        const auto dir = file_.has_parent_path() ? file_.parent_path() : std::filesystem::path(".");
        const std::string prefix = file_.filename().string() + ".tmp.";
        std::unique_ptr<DIR, int (*)(DIR*)> listing(::opendir(dir.c_str()), &::closedir);
        if (!listing) {
            return;
        }
        while (const dirent* entry = ::readdir(listing.get())) {
            const std::string_view name = entry->d_name;
            if (!name.starts_with(prefix)) {
                continue;
            }
            const auto path = dir / name;
            struct stat st {};
            if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
                st.st_uid == ::geteuid()) {
                ::unlink(path.c_str());
            }
        }
    }

    [[noreturn]] void fail(std::string_view what) const {
        throw CheckpointError(fmt::format("snaptail: checkpoint {}: {}", file_.string(), what));
    }

    void sync_directory() {
        const auto dir = file_.has_parent_path() ? file_.parent_path() : std::filesystem::path(".");
        detail::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!fd || ::fsync(fd.get()) != 0) {
            must_flush_ = true;  // the rename may not be on disk: write it all again next time
            fail(fmt::format("cannot flush directory {} (fsync): {}", dir.string(),
                             std::generic_category().message(errno)));
        }
    }

    std::filesystem::path file_;
    std::chrono::milliseconds sync_interval_;
    CheckpointAccess access_;
    std::string last_text_;  // what the last save wrote, for sync()
    clock::time_point last_sync_{};
    bool synced_once_{false};
    bool dirty_{false};
    bool must_flush_{false};  // a flush failed: nothing is known to be durable
    bool cleaned_{false};
};

}  // namespace snaptail
