// Sleeps until something changes in the directories of a file set, a timeout passes, or
// wake() is called; says which files were written and whether the set must be listed again.
#pragma once

#include <snaptail/detail/file_set_scan.hpp>
#include <snaptail/detail/unique_fd.hpp>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace snaptail::detail {

/// inotify on every directory along a file set's pattern: creations, renames and deletions ask
/// for a new listing; writes name the file written (a directory watch reports its files'
/// writes, so no watch per file is needed, whatever the number of files). An eventfd lets
/// stop interrupt the sleep. Without inotify, or past the kernel's watch limit, the caller
/// polls. wake() is thread-safe and async-signal-safe; the rest belongs to the tailer's thread.
class SetWatcher {
  public:
    /// Creates the inotify instance (unless `use_inotify` is false). Never throws for a
    /// missing inotify: failure() then says why and the caller polls.
    explicit SetWatcher(bool use_inotify) : wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
        if (use_inotify) {
            inotify_ = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
            if (!inotify_) {
                failure_ = fmt::format("inotify_init1: {}", errno_text(errno));
            }
        }
    }

    /// True while every directory along the pattern is watched: changes wake the watcher.
    bool active() const noexcept { return inotify_ && complete_; }
    /// Why the watcher is not active (empty when it is, or when inotify was not asked for).
    const std::string& failure() const noexcept { return failure_; }

    /// Watches exactly `directories` below `root` (adding new ones, dropping those gone).
    /// Allocates.
    void watch(const std::filesystem::path& root, const std::vector<FoundDirectory>& directories,
               std::size_t depth) {
        if (!inotify_) {
            return;
        }
        complete_ = !directories.empty();
        std::unordered_map<int, Directory> next;
        for (const auto& dir : directories) {
            const std::filesystem::path full = root / dir.relative;
            const int wd = ::inotify_add_watch(inotify_.get(), full.c_str(), mask);
            if (wd < 0) {
                complete_ = false;
                failure_ =
                    fmt::format("inotify_add_watch {}: {}", full.string(), errno_text(errno));
                continue;
            }
            next[wd] = Directory{dir.relative, dir.level + 1 == depth};
        }
        for (const auto& [wd, dir] : directories_) {
            if (!next.contains(wd)) {
                ::inotify_rm_watch(inotify_.get(), wd);
            }
        }
        directories_ = std::move(next);
        if (complete_) {
            failure_.clear();
        }
    }

    /// Blocks until a change, wake(), or `timeout`, then reads what is queued. Returns true when
    /// woken by a change or wake(). Allocates only to record written files.
    bool wait(std::chrono::milliseconds timeout) {
        std::array<pollfd, 2> fds{pollfd{wake_fd_.get(), POLLIN, 0},
                                  pollfd{inotify_ ? inotify_.get() : -1, POLLIN, 0}};
        const auto ms = std::clamp<std::int64_t>(timeout.count(), 0, 60'000);
        if (::poll(fds.data(), fds.size(), static_cast<int>(ms)) <= 0) {
            return false;
        }
        bool woken = false;
        if (fds[0].revents != 0) {
            std::uint64_t count = 0;
            while (::read(wake_fd_.get(), &count, sizeof count) > 0) {
            }
            woken = true;
        }
        return drain() || woken;
    }

    /// Reads the events already queued without blocking (one syscall when there are none), so
    /// that a busy file being read does not hide other files' writes. True when there were any.
    bool drain() {
        if (!inotify_) {
            return false;
        }
        alignas(inotify_event) std::array<char, 16384> events{};
        bool any = false;
        for (;;) {
            const ssize_t n = ::read(inotify_.get(), events.data(), events.size());
            if (n <= 0) {
                return any;
            }
            any = true;
            for (ssize_t at = 0; at < n;) {
                inotify_event event{};
                std::memcpy(&event, events.data() + at, sizeof event);
                const char* name = events.data() + at + static_cast<ssize_t>(sizeof event);
                at += static_cast<ssize_t>(sizeof event + event.len);
                on_event(event, event.len != 0 ? name : "");
            }
        }
    }

    /// Interrupts a wait() from any thread (or a signal handler). Never blocks.
    void wake() const noexcept {
        const std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_fd_.get(), &one, sizeof one);
    }

    /// Whether the set must be listed again (a name appeared, moved or went; events were
    /// lost); clears the flag.
    bool take_rescan() noexcept { return std::exchange(rescan_, false); }
    /// Calls fn(std::string_view relative_path) for each file written since the last call
    /// (a file may come more than once), then forgets them. The names live in one recycled
    /// buffer: no allocation per write in steady state.
    template <class Fn>
    void take_written(Fn&& fn) {
        for (std::string_view rest = written_; !rest.empty();) {
            const auto end = rest.find('\0');
            fn(rest.substr(0, end));
            rest.remove_prefix(end + 1);
        }
        written_.clear();
    }

  private:
    static constexpr std::uint32_t mask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                          IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF |
                                          IN_ONLYDIR;

    struct Directory {
        std::string relative;
        bool holds_files{false};  // the last level: its entries are the set's files
    };

    void on_event(const inotify_event& event, const char* name) {
        if ((event.mask & IN_Q_OVERFLOW) != 0) {
            rescan_ = true;  // events were lost: only a listing can tell what happened
            return;
        }
        const auto dir = directories_.find(event.wd);
        if (dir == directories_.end()) {
            return;
        }
        if ((event.mask & IN_IGNORED) != 0) {
            directories_.erase(dir);  // the directory is gone: the next listing says more
            complete_ = false;
            rescan_ = true;
            return;
        }
        if ((event.mask & IN_MODIFY) != 0 && name[0] != '\0') {
            if (dir->second.holds_files) {
                if (!dir->second.relative.empty()) {
                    written_ += dir->second.relative;
                    written_ += '/';
                }
                written_ += name;
                written_ += '\0';
            }
            return;
        }
        if ((event.mask & (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF |
                           IN_MOVE_SELF | IN_ATTRIB)) != 0) {
            rescan_ = true;
        }
    }

    UniqueFd wake_fd_;
    UniqueFd inotify_;
    std::unordered_map<int, Directory> directories_;
    std::string written_;  // relative paths, each ended by '\0'; capacity kept
    std::string failure_;
    bool complete_{false};
    bool rescan_{false};
};

}  // namespace snaptail::detail
