// Sleeps until the followed file or its directory changes, a timeout passes, or wake() is called.
#pragma once

#include <snaptail/detail/unique_fd.hpp>

#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

namespace snaptail::detail {

/// inotify on the file's directory (creations, renames, deletions of that name) and on the open
/// file itself (writes, truncation, rename, deletion), plus an eventfd so that stop can interrupt
/// the sleep. Without inotify it only sleeps: the caller polls. wake() is thread-safe and
/// async-signal-safe; everything else belongs to the tailer's thread.
class FileWatcher {
  public:
    FileWatcher(const std::filesystem::path& path, bool use_inotify)
        : wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
          directory_(path.has_parent_path() ? path.parent_path() : std::filesystem::path(".")),
          name_(path.filename().string()) {
        if (use_inotify) {
            inotify_ = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
            watch_directory();
        }
    }

    /// True when changes wake the watcher; false means the caller must poll.
    bool active() const noexcept { return inotify_ && directory_wd_ >= 0; }

    /// Watches the inode behind `fd` (through /proc, so a rename between open and watch
    /// cannot make it watch another file). Replaces the previous file watch.
    void watch_file(int fd) {
        unwatch_file();
        if (!inotify_) {
            return;
        }
        const std::string proc = fmt::format("/proc/self/fd/{}", fd);
        file_wd_ = ::inotify_add_watch(inotify_.get(), proc.c_str(),
                                       IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF);
    }

    /// Stops watching the current file.
    void unwatch_file() noexcept {
        if (inotify_ && file_wd_ >= 0 && file_wd_ != directory_wd_) {
            ::inotify_rm_watch(inotify_.get(), file_wd_);
        }
        file_wd_ = -1;
    }

    /// Blocks until a relevant change, wake(), or `timeout`. Returns true when woken by a change
    /// or wake(), false on timeout. Never allocates.
    bool wait(std::chrono::milliseconds timeout) {
        if (inotify_ && directory_wd_ < 0) {
            watch_directory();  // the directory may have appeared since
        }
        std::array<pollfd, 2> fds{pollfd{wake_fd_.get(), POLLIN, 0},
                                  pollfd{inotify_ ? inotify_.get() : -1, POLLIN, 0}};
        const auto ms = timeout.count() < 0 ? 0 : timeout.count();
        const int timeout_ms = ms > 60'000 ? 60'000 : static_cast<int>(ms);
        const int ready = ::poll(fds.data(), fds.size(), timeout_ms);
        if (ready <= 0) {
            return false;
        }
        bool woken = false;
        if (fds[0].revents != 0) {
            std::uint64_t count = 0;
            while (::read(wake_fd_.get(), &count, sizeof count) > 0) {
            }
            woken = true;
        }
        if (fds[1].revents != 0) {
            woken = drain_events() || woken;
        }
        return woken;
    }

    /// Interrupts a wait() from any thread (or a signal handler). Never blocks.
    void wake() const noexcept {
        const std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_fd_.get(), &one, sizeof one);
    }

  private:
    void watch_directory() {
        directory_wd_ =
            ::inotify_add_watch(inotify_.get(), directory_.c_str(),
                                IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB |
                                    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
    }

    // Reads every queued event; true when one concerns the followed name or the open file.
    bool drain_events() {
        alignas(inotify_event) std::array<char, 8192> events{};
        bool relevant = false;
        for (;;) {
            const ssize_t n = ::read(inotify_.get(), events.data(), events.size());
            if (n <= 0) {
                return relevant;
            }
            for (ssize_t at = 0; at < n;) {
                inotify_event event{};
                std::memcpy(&event, events.data() + at, sizeof event);
                const char* name = events.data() + at + static_cast<ssize_t>(sizeof event);
                at += static_cast<ssize_t>(sizeof event + event.len);
                if (event.mask & IN_IGNORED) {
                    if (event.wd == directory_wd_) {
                        directory_wd_ = -1;  // directory gone: poll until it returns
                    }
                    relevant = true;
                    continue;
                }
                if (event.wd != directory_wd_ || event.len == 0 || name_ == name ||
                    (event.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) != 0) {
                    relevant = true;
                }
            }
        }
    }

    UniqueFd wake_fd_;
    UniqueFd inotify_;
    std::filesystem::path directory_;
    std::string name_;
    int directory_wd_{-1};
    int file_wd_{-1};
};

}  // namespace snaptail::detail
