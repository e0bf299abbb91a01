// A file that remembers a tailer's position across restarts and crashes.
#pragma once

#include <snaptail/checkpoint_state.hpp>
#include <snaptail/detail/unique_fd.hpp>
#include <snaptail/position.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

namespace snaptail {

/// A checkpoint that cannot be read or trusted, or cannot be written. The message names the
/// file and what is wrong.
class CheckpointError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// Stores one Position (format version 1), or a file set's CheckpointState (version 2), in a
/// small text file.
///
/// save() is atomic on every call (write a temporary file beside it, then rename it over the
/// old one), so a crash at any moment leaves a whole checkpoint, old or new. Durability against
/// power loss (fsync of the file before the rename and of the directory after it) costs a disk
/// flush, so it happens at most once per sync_interval, and on sync(). Not thread-safe: one
/// owner (the tailer's thread) saves.
class CheckpointStore {
  public:
    using clock = std::chrono::steady_clock;

    /// Does no I/O. The directory must exist by the first save().
    explicit CheckpointStore(std::filesystem::path file,
                             std::chrono::milliseconds sync_interval = std::chrono::seconds{1})
        : file_(std::move(file)),
          temporary_(file_.string() + ".tmp"),
          sync_interval_(sync_interval) {}

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

    /// Makes the last save() durable now (fsync of the file and its directory). Blocks on the
    /// disk. Throws CheckpointError when the flush fails.
    void sync() {
        if (!dirty_) {
            return;
        }
        detail::UniqueFd fd(::open(file_.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd || ::fsync(fd.get()) != 0) {
            fail(fmt::format("cannot flush: {}", std::generic_category().message(errno)));
        }
        sync_directory();
        last_sync_ = clock::now();
        dirty_ = false;
    }

    /// Largest file load() accepts.
    static constexpr std::size_t max_size = 64 * 1024;
    /// Largest file load_state() accepts (a file set of about 400,000 files).
    static constexpr std::size_t max_state_size = std::size_t{64} << 20;

  private:
    // The file's bytes, up to `limit`; nullopt when it does not exist.
    std::optional<std::string> read_text(std::size_t limit) const {
        const int fd = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
            if (errno == ENOENT) {
                return std::nullopt;
            }
            fail(fmt::format("cannot open: {}", std::generic_category().message(errno)));
        }
        detail::UniqueFd owned(fd);
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            fail("is not a regular file");
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

    // Writes `text` to a temporary file beside the checkpoint and renames it over it.
    void replace_with(const std::string& text) {
        const auto now = clock::now();
        const bool durable = !synced_once_ || now - last_sync_ >= sync_interval_;
        {
            detail::UniqueFd fd(::open(temporary_.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644));
            if (!fd) {
                fail(fmt::format("cannot create {}: {}", temporary_.string(),
                                 std::generic_category().message(errno)));
            }
            std::string_view rest = text;
            while (!rest.empty()) {
                const ssize_t n = ::write(fd.get(), rest.data(), rest.size());
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                if (n <= 0) {
                    const int err = n < 0 ? errno : EIO;
                    ::unlink(temporary_.c_str());
                    fail(fmt::format("cannot write {}: {}", temporary_.string(),
                                     std::generic_category().message(err)));
                }
                rest.remove_prefix(static_cast<std::size_t>(n));
            }
            if (durable && ::fsync(fd.get()) != 0) {
                const int err = errno;
                ::unlink(temporary_.c_str());
                fail(fmt::format("cannot flush {}: {}", temporary_.string(),
                                 std::generic_category().message(err)));
            }
        }
        if (::rename(temporary_.c_str(), file_.c_str()) != 0) {
            const int err = errno;
            ::unlink(temporary_.c_str());
            fail(fmt::format("cannot replace it: {}", std::generic_category().message(err)));
        }
        dirty_ = true;
        if (durable) {
            sync_directory();
            last_sync_ = now;
            synced_once_ = true;
            dirty_ = false;
        }
    }

    [[noreturn]] void fail(std::string_view what) const {
        throw CheckpointError(fmt::format("snaptail: checkpoint {}: {}", file_.string(), what));
    }

    void sync_directory() {
        const auto dir = file_.has_parent_path() ? file_.parent_path() : std::filesystem::path(".");
        detail::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!fd || ::fsync(fd.get()) != 0) {
            fail(fmt::format("cannot flush directory {}: {}", dir.string(),
                             std::generic_category().message(errno)));
        }
    }

    std::filesystem::path file_;
    std::filesystem::path temporary_;
    std::chrono::milliseconds sync_interval_;
    clock::time_point last_sync_{};
    bool synced_once_{false};
    bool dirty_{false};
};

}  // namespace snaptail
