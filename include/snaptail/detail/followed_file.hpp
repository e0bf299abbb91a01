// How to read one file: an open descriptor, its identity, and positional reads.
#pragma once

#include <snaptail/detail/unique_fd.hpp>
#include <snaptail/position.hpp>

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

/// Opens `path` for reading without blocking on FIFOs, and checks that it is a regular file.
inline OpenOutcome open_regular_file(const std::filesystem::path& path) {
    OpenOutcome out;
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
        out.not_a_file = true;
        out.error = S_ISDIR(st.st_mode) ? "is a directory, not a file" : "is not a regular file";
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
