// Which file to read next: the `tail -F` policy for one path (rotation, truncation, deletion,
// late creation). Reading a file and cutting batches live elsewhere.
#pragma once

#include <snaptail/detail/followed_file.hpp>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

namespace snaptail::detail {

/// What the path says about the open file, checked whenever the file has no more data.
enum class PathChange {
    none,       ///< Still the file at the path, not shorter than the offset: wait for growth.
    truncated,  ///< Same file, now shorter than the offset (copy-and-truncate): restart at 0.
    retire,     ///< The path names another file or nothing, and rotate_wait has passed: finish
                ///< this file and open the path again.
};

/// Follows one path across rotations: says when the file being read is no longer the one at
/// the path. Not thread-safe: owned by the tailer's thread.
class PathFollower {
  public:
    using clock = std::chrono::steady_clock;

    PathFollower(std::filesystem::path path, std::chrono::milliseconds rotate_wait)
        : path_(std::move(path)), rotate_wait_(rotate_wait) {}

    const std::filesystem::path& path() const noexcept { return path_; }

    /// Opens the file at the path, positioned at `offset` (clamped to its size). The outcome says
    /// why not when it fails; a missing path is not an error.
    OpenOutcome open(FollowedFile& file, std::uint64_t offset = 0) {
        OpenOutcome out = open_regular_file(path_);
        if (out.fd) {
            const FileId id = out.id;
            file = FollowedFile(std::move(out.fd), id, offset < out.size ? offset : out.size);
            retiring_since_.reset();
        }
        return out;
    }

    /// `file` is being read under another name (a rotated file found on resume); it is retired
    /// like a rotated file once the path is seen to name another file.
    void adopted() noexcept { retiring_since_.reset(); }

    /// Compares the path with `file`; call when the file has no more data to read.
    PathChange check(const FollowedFile& file, clock::time_point now) {
        struct stat st {};
        const bool names_file = ::stat(path_.c_str(), &st) == 0;
        if (names_file && file_id(st) == file.id()) {
            retiring_since_.reset();  // a rename back, or a false alarm
            if (static_cast<std::uint64_t>(st.st_size) < file.offset()) {
                return PathChange::truncated;
            }
            return PathChange::none;
        }
        if (!retiring_since_) {
            retiring_since_ = now;
        }
        return now - *retiring_since_ >= rotate_wait_ ? PathChange::retire : PathChange::none;
    }

    /// When the open file, no longer at the path, will be retired (nullopt when it is at the path).
    std::optional<clock::time_point> retire_deadline() const {
        if (!retiring_since_) {
            return std::nullopt;
        }
        return *retiring_since_ + rotate_wait_;
    }

    /// The file was closed; the next open() takes whatever the path names then.
    void closed() noexcept { retiring_since_.reset(); }

  private:
    std::filesystem::path path_;
    std::chrono::milliseconds rotate_wait_;
    std::optional<clock::time_point> retiring_since_;
};

}  // namespace snaptail::detail
