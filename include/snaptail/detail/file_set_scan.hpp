// Listing a file set: the directories along its pattern, and the regular files that match it.
#pragma once

#include <snaptail/detail/file_set_pattern.hpp>
#include <snaptail/detail/followed_file.hpp>
#include <snaptail/detail/unique_fd.hpp>

#include <fmt/format.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace snaptail::detail {

/// A regular file that matches the pattern, as the scan saw it.
struct FoundFile {
    std::string relative;  ///< Path below the root.
    FileId id;
    std::uint64_t size{0};
    std::int64_t modified_ns{0};  ///< Modification time, nanoseconds since the epoch.
};

/// A directory along the pattern: its entries are matched against the pattern's part `level`.
struct FoundDirectory {
    std::string relative;  ///< "" for the root.
    std::size_t level{0};
};

/// What one scan found. Allocates.
struct ScanResult {
    std::vector<FoundFile> files;
    std::vector<FoundDirectory> directories;
    /// Names that match the whole pattern but are not regular files (directories, FIFOs,
    /// sockets, devices, dangling symlinks): not followed.
    std::vector<std::string> not_files;
    /// Directories along the pattern that exist but could not be listed, with the reason.
    std::vector<std::string> errors;
    bool root_missing{false};
};

/// Walks `root` along `pattern`, following symlinks (a set may hold "current"-style links).
/// Blocks on the disk; allocates. Depth is bounded by the pattern, so a symlink loop cannot
/// make it recurse without end.
inline ScanResult scan_file_set(const std::filesystem::path& root, const FileSetPattern& pattern) {
    ScanResult result;
    struct stat st {};
    if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        result.root_missing = true;
        return result;
    }
    struct Dir {
        std::string relative;
        std::size_t level;
    };
    std::vector<Dir> pending{{std::string{}, 0}};
    auto join = [](const std::string& dir, std::string_view name) {
        std::string out = dir;
        if (!out.empty()) {
            out += '/';
        }
        out += name;
        return out;
    };
    auto consider = [&](const std::string& relative, std::size_t level) {
        const std::filesystem::path full = root / relative;
        struct stat entry {};
        const bool last = level + 1 == pattern.depth();
        if (::stat(full.c_str(), &entry) != 0) {
            if (last && errno != ENOENT) {
                result.not_files.push_back(relative);
            } else if (last && ::lstat(full.c_str(), &entry) == 0) {
                result.not_files.push_back(relative);  // a dangling symlink
            }
            return;
        }
        if (!last) {
            if (S_ISDIR(entry.st_mode)) {
                pending.push_back({relative, level + 1});
            }
            return;
        }
        if (!S_ISREG(entry.st_mode)) {
            result.not_files.push_back(relative);
            return;
        }
        result.files.push_back(
            FoundFile{relative, file_id(entry), static_cast<std::uint64_t>(entry.st_size),
                      static_cast<std::int64_t>(entry.st_mtim.tv_sec) * 1'000'000'000 +
                          entry.st_mtim.tv_nsec});
    };
    while (!pending.empty()) {
        Dir dir = std::move(pending.back());
        pending.pop_back();
        result.directories.push_back({dir.relative, dir.level});
        if (const std::string literal = pattern.literal(dir.level); !literal.empty()) {
            consider(join(dir.relative, literal), dir.level);
            continue;
        }
        const std::filesystem::path full = root / dir.relative;
        std::unique_ptr<DIR, int (*)(DIR*)> listing(::opendir(full.c_str()), &::closedir);
        if (!listing) {
            result.errors.push_back(
                fmt::format("{}: cannot list: {}", full.string(), errno_text(errno)));
            continue;
        }
        while (const dirent* entry = ::readdir(listing.get())) {
            if (pattern.matches(dir.level, entry->d_name)) {
                consider(join(dir.relative, entry->d_name), dir.level);
            }
        }
    }
    return result;
}

}  // namespace snaptail::detail
