// Replacing a file atomically in a directory others may write: a temporary file under a fresh,
// unpredictable name that is never a symlink or someone else's file, then rename(2).
#pragma once

#include <snaptail/detail/unique_fd.hpp>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace snaptail::detail {

/// A temporary file of ours, removed on destruction unless kept (after a rename).
class TemporaryFile {
  public:
    /// Creates "<prefix><16 random hex digits>" with O_CREAT | O_EXCL | O_NOFOLLOW and exactly
    /// `mode` (fchmod, whatever the umask): a name nobody could have placed a symlink or file
    /// at in advance, and one that is never followed if they did. Throws std::system_error
    /// ("cannot create <path>: ..."). Blocks on the file system.
    TemporaryFile(const std::string& prefix, unsigned mode) {
        for (int attempt = 0;; ++attempt) {
            path_ = prefix + random_hex();
            fd_ = UniqueFd(::open(path_.c_str(),
                                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
                                  static_cast<mode_t>(mode & 07777)));
            if (fd_) {
                break;
            }
            if (errno != EEXIST || attempt == 15) {
                throw std::system_error(errno, std::generic_category(),
                                        "cannot create " + path_.string());
            }
        }
        if (::fchmod(fd_.get(), static_cast<mode_t>(mode & 07777)) != 0) {
            fail("cannot set the mode of", errno);
        }
    }
    TemporaryFile(const TemporaryFile&) = delete;
    TemporaryFile& operator=(const TemporaryFile&) = delete;
    ~TemporaryFile() {
        if (!kept_) {
            ::unlink(path_.c_str());
        }
    }

    const std::filesystem::path& path() const noexcept { return path_; }

    /// Writes all of `text`, retrying short writes. Throws std::system_error.
    void write(std::string_view text) {
        while (!text.empty()) {
            const ssize_t n = ::write(fd_.get(), text.data(), text.size());
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                fail("cannot write", n < 0 ? errno : EIO);
            }
            text.remove_prefix(static_cast<std::size_t>(n));
        }
    }

    /// fsync(2). Throws std::system_error ("cannot flush (fsync) <path>: ...").
    void flush() {
        if (::fsync(fd_.get()) != 0) {
            fail("cannot flush (fsync)", errno);
        }
    }

    /// Closes it and renames it over `target` (a symlink there is replaced, not followed).
    /// Throws std::system_error; the temporary file is removed then.
    void replace(const std::filesystem::path& target) {
        if (::close(fd_.release()) != 0) {
            fail("cannot close", errno);
        }
        if (::rename(path_.c_str(), target.c_str()) != 0) {
            throw std::system_error(errno, std::generic_category(),
                                    "cannot rename " + path_.string() + " to " + target.string());
        }
        kept_ = true;
    }

  private:
    [[noreturn]] void fail(std::string_view what, int err) const {
        throw std::system_error(err, std::generic_category(),
                                fmt::format("{} {}", what, path_.string()));
    }

    // getrandom(2), or the clock and a counter should it fail: O_EXCL keeps us safe either
    // way; unpredictability keeps others from making every attempt collide.
    static std::string random_hex() {
        std::uint64_t value = 0;
        if (::getrandom(&value, sizeof value, GRND_NONBLOCK) !=
            static_cast<ssize_t>(sizeof value)) {
            static std::atomic<std::uint64_t> counter{0};
            value = static_cast<std::uint64_t>(
                        std::chrono::steady_clock::now().time_since_epoch().count()) ^
                    (static_cast<std::uint64_t>(::getpid()) << 32) ^ ++counter;
        }
        return fmt::format("{:016x}", value);
    }

    std::filesystem::path path_;
    UniqueFd fd_;
    bool kept_{false};
};

}  // namespace snaptail::detail
