// Where a tailer is in a file: which file (by identity, not name) and how far.
#pragma once

#include <fmt/format.h>

#include <compare>
#include <cstdint>

namespace snaptail {

/// A file's identity on this machine: the device and inode it lives on.
/// Names change under rotation; identity does not.
struct FileId {
    std::uint64_t device{0};
    std::uint64_t inode{0};

    friend constexpr auto operator<=>(const FileId&, const FileId&) = default;
};

/// A point in a followed file: the byte offset just past the last consumed line,
/// and how many lines lie before it (so the next line is number `line + 1`).
struct Position {
    FileId file;
    std::uint64_t offset{0};
    std::uint64_t line{0};

    friend constexpr auto operator<=>(const Position&, const Position&) = default;
};

}  // namespace snaptail

template <>
struct fmt::formatter<snaptail::FileId> : fmt::formatter<std::string_view> {
    template <class Context>
    auto format(const snaptail::FileId& id, Context& ctx) const {
        return fmt::format_to(ctx.out(), "{}:{}", id.device, id.inode);
    }
};

template <>
struct fmt::formatter<snaptail::Position> : fmt::formatter<std::string_view> {
    template <class Context>
    auto format(const snaptail::Position& p, Context& ctx) const {
        return fmt::format_to(ctx.out(), "{}@{} (line {})", p.file, p.offset, p.line);
    }
};
