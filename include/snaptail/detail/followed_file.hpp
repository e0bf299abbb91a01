// How to read one file: an open descriptor, its identity, and positional reads.
#pragma once

#include <snaptail/detail/unique_fd.hpp>
#include <snaptail/position.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>

namespace snaptail::detail {

inline FileId file_id(const struct stat& st) noexcept {
    return FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

inline std::string errno_text(int err) {
    return std::generic_category().message(err);
}

/// The outcome of opening a path: a file, or why not (missing is not an error: it is waited for).
struct OpenOutcome {
    UniqueFd fd;
    FileId id;
    std::uint64_t size{0};
    bool missing{false};
    bool not_a_file{false};
    std::string error;  ///< Empty on success and when missing.
};

/// What kind of file `mode` is, for messages ("a FIFO", "a directory", ...).
inline const char* file_kind(mode_t mode) noexcept {
    if (S_ISDIR(mode)) {
        return "a directory";
    }
    if (S_ISFIFO(mode)) {
        return "a FIFO";
    }
    if (S_ISSOCK(mode)) {
        return "a socket";
    }
    if (S_ISCHR(mode)) {
        return "a character device";
    }
    if (S_ISBLK(mode)) {
        return "a block device";
    }
    return "not a regular file";
}

/// Opens `path` for reading if it is a regular file (following symlinks). Anything else is
/// refused before it is opened, so that a path made to point at a device or a FIFO never
/// opens it (opening some devices has effects); the file opened is checked to be the one that
/// was looked at. Never blocks on a FIFO.
inline OpenOutcome open_regular_file(const std::filesystem::path& path) {
    OpenOutcome out;
    auto refuse = [&out](const struct stat& st) {
        out.not_a_file = true;
        out.error = S_ISDIR(st.st_mode)
                        ? "is a directory, not a file"
                        : fmt::format("is {}, not a regular file", file_kind(st.st_mode));
    };
    struct stat before {};
    if (::stat(path.c_str(), &before) != 0) {
        const int err = errno;
        out.missing = err == ENOENT || err == ENOTDIR;
        if (err == ELOOP) {
            out.error = "cannot open: a symbolic link loop (too many levels of symbolic links)";
        } else if (!out.missing) {
            out.error = "cannot stat: " + errno_text(err);
        }
        return out;
    }
    if (!S_ISREG(before.st_mode)) {
        refuse(before);
        return out;
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        const int err = errno;
        out.missing = err == ENOENT || err == ENOTDIR;
        if (!out.missing) {
            out.error = "cannot open: " + errno_text(err);
        }
        return out;
    }
    UniqueFd owned(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        out.error = "cannot stat: " + errno_text(errno);
        return out;
    }
    if (!S_ISREG(st.st_mode)) {
        refuse(st);  // swapped between the look and the open
        return out;
    }
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    out.fd = std::move(owned);
    out.id = file_id(st);
    out.size = static_cast<std::uint64_t>(st.st_size);
    return out;
}

/// One open file being read from `offset()` on. Move-only; not thread-safe.
class FollowedFile {
  public:
    FollowedFile() = default;
    FollowedFile(UniqueFd fd, FileId id, std::uint64_t offset) noexcept
        : fd_(std::move(fd)), id_(id), offset_(offset) {}

    bool is_open() const noexcept { return static_cast<bool>(fd_); }
    int fd() const noexcept { return fd_.get(); }
    FileId id() const noexcept { return id_; }
    /// Offset of the next byte to read.
    std::uint64_t offset() const noexcept { return offset_; }
    void seek(std::uint64_t offset) noexcept { offset_ = offset; }

    /// Reads up to `size` bytes at offset() into `dst`; returns bytes read (0 at end of file) or
    /// -1 with errno set. Blocks only on the disk.
    long read(char* dst, std::size_t size) noexcept {
        for (;;) {
            const ssize_t n = ::pread(fd_.get(), dst, size, static_cast<off_t>(offset_));
            if (n >= 0) {
                offset_ += static_cast<std::uint64_t>(n);
                return static_cast<long>(n);
            }
            if (errno != EINTR) {
                return -1;
            }
        }
    }

    /// Current size of the open file, or -1 with errno set.
    long long size() const noexcept {
        struct stat st {};
        if (::fstat(fd_.get(), &st) != 0) {
            return -1;
        }
        return static_cast<long long>(st.st_size);
    }

    /// How long ago the file was last modified (its mtime against the system clock), or
    /// nullopt when it cannot be had. Never allocates.
    std::optional<std::chrono::nanoseconds> unmodified_for() const noexcept {
        struct stat st {};
        if (::fstat(fd_.get(), &st) != 0) {
            return std::nullopt;
        }
        const auto modified =
            std::chrono::seconds{st.st_mtim.tv_sec} + std::chrono::nanoseconds{st.st_mtim.tv_nsec};
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        return now > modified ? std::chrono::duration_cast<std::chrono::nanoseconds>(now - modified)
                              : std::chrono::nanoseconds{0};
    }

    void close() noexcept {
        fd_.reset();
        id_ = {};
        offset_ = 0;
    }

  private:
    UniqueFd fd_;
    FileId id_;
    std::uint64_t offset_{0};
};

}  // namespace snaptail::detail
