// Finding a file by identity among the names it may have been rotated to, and fingerprints.
#pragma once

#include <snaptail/detail/followed_file.hpp>
#include <snaptail/position.hpp>

#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <vector>

namespace snaptail::detail {

/// The fingerprint of the first min(size, max_fingerprint_bytes) bytes at `fd`, read with
/// pread (the read offset is untouched). Never allocates.
inline Fingerprint compute_fingerprint(int fd, std::uint64_t size) noexcept {
    std::array<char, max_fingerprint_bytes> head{};
    const std::size_t want = size < head.size() ? static_cast<std::size_t>(size) : head.size();
    std::size_t got = 0;
    while (got < want) {
        const ssize_t n = ::pread(fd, head.data() + got, want - got, static_cast<off_t>(got));
        if (n <= 0) {
            break;
        }
        got += static_cast<std::size_t>(n);
    }
    return Fingerprint{fingerprint_hash(std::string_view(head.data(), got)),
                       static_cast<std::uint32_t>(got)};
}

/// True when the file at `fd` is the one `saved` was taken in: same device and inode, and its
/// first fingerprint.bytes bytes hash the same (a reused inode holds other bytes). A position
/// whose fingerprint does not cover min(offset, max_fingerprint_bytes) bytes cannot vouch for
/// its file (it was taken as the file shrank) and is not trusted.
inline bool same_file(int fd, const Position& saved) noexcept {
    const std::uint64_t expected = std::min<std::uint64_t>(saved.offset, max_fingerprint_bytes);
    if (saved.fingerprint.bytes != expected) {
        return false;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || file_id(st) != saved.file ||
        static_cast<std::uint64_t>(st.st_size) < saved.fingerprint.bytes) {
        return false;
    }
    // No bytes fingerprinted (the position is at offset 0): identity alone decides.
    return saved.fingerprint.bytes == 0 ||
           compute_fingerprint(fd, saved.fingerprint.bytes) == saved.fingerprint;
}

/// "<path>.*" with glob metacharacters in the path escaped.
inline std::string default_rotated_glob(const std::string& path) {
    std::string pattern;
    for (char c : path) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') {
            pattern += '\\';
        }
        pattern += c;
    }
    return pattern + ".*";
}

/// The names matching a glob(7) pattern, sorted. Allocates.
inline std::vector<std::string> glob_names(const std::string& pattern) {
    glob_t found{};
    std::vector<std::string> names;
    if (::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &found) == 0) {
        for (std::size_t i = 0; i < found.gl_pathc; ++i) {
            names.emplace_back(found.gl_pathv[i]);
        }
    }
    ::globfree(&found);
    std::sort(names.begin(), names.end());
    return names;
}

/// A rotated file found by identity, open for reading.
struct RotatedFile {
    UniqueFd fd;
    FileId id;
    std::uint64_t size{0};
    std::string name;
    struct timespec modified {};
};

/// Looks for the file `saved` was taken in among the names matching `pattern`.
inline std::optional<RotatedFile> find_rotated(const std::string& pattern, const Position& saved) {
    for (const auto& name : glob_names(pattern)) {
        OpenOutcome outcome = open_regular_file(name);
        if (!outcome.fd || outcome.id != saved.file || !same_file(outcome.fd.get(), saved)) {
            continue;
        }
        struct stat st {};
        ::fstat(outcome.fd.get(), &st);
        return RotatedFile{std::move(outcome.fd), outcome.id, outcome.size, name, st.st_mtim};
    }
    return std::nullopt;
}

/// Rotated names modified after `after`, other than the files `skip` names: files rotated
/// after the checkpointed one, which a resume does not read.
inline std::vector<std::string> rotated_after(const std::string& pattern,
                                              const struct timespec& after,
                                              const std::vector<FileId>& skip) {
    std::vector<std::string> newer;
    for (const auto& name : glob_names(pattern)) {
        struct stat st {};
        if (::stat(name.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        if (std::find(skip.begin(), skip.end(), file_id(st)) != skip.end()) {
            continue;
        }
        const bool later = st.st_mtim.tv_sec > after.tv_sec || (st.st_mtim.tv_sec == after.tv_sec &&
                                                                st.st_mtim.tv_nsec > after.tv_nsec);
        if (later) {
            newer.push_back(name);
        }
    }
    return newer;
}

}  // namespace snaptail::detail
