// Where a tailer is in a file: which file (by identity, not name) and how far; and the small
// versioned text form in which checkpoints store it.
#pragma once

#include <fmt/format.h>

#include <charconv>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace snaptail {

/// A file's identity on this machine: the device and inode it lives on.
/// Names change under rotation; identity does not.
struct FileId {
    std::uint64_t device{0};
    std::uint64_t inode{0};

    friend constexpr auto operator<=>(const FileId&, const FileId&) = default;
};

/// A hash of a file's first `bytes` bytes, so that a new file that reuses a deleted file's
/// inode is not mistaken for it.
struct Fingerprint {
    std::uint64_t hash{0};
    std::uint32_t bytes{0};

    friend constexpr auto operator<=>(const Fingerprint&, const Fingerprint&) = default;
};

/// How many leading bytes a fingerprint covers at most.
inline constexpr std::uint32_t max_fingerprint_bytes = 1024;

/// FNV-1a, 64 bits: stable across platforms and releases, as a stored checkpoint needs.
constexpr std::uint64_t fingerprint_hash(std::string_view bytes) noexcept {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (char c : bytes) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

/// A point in a followed file: the byte offset just past the last consumed line, and how many
/// lines lie before it (the next line is number `line + 1`).
struct Position {
    FileId file;
    Fingerprint fingerprint;
    std::uint64_t offset{0};
    std::uint64_t line{0};

    friend constexpr auto operator<=>(const Position&, const Position&) = default;
};

/// The outcome of parse_position: a position, or what is wrong with the text.
struct ParsedPosition {
    std::optional<Position> position;
    std::string path;   ///< The followed path the position was saved for.
    std::string error;  ///< Empty on success.
};

namespace detail {

inline constexpr std::string_view checkpoint_magic = "snaptail-checkpoint 1";

// Paths may hold any byte but NUL; the text form is line-based, so control bytes and '%'
// are percent-encoded.
inline std::string encode_path(std::string_view path) {
    std::string out;
    for (char c : path) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || c == '%') {
            out += fmt::format("%{:02X}", u);
        } else {
            out += c;
        }
    }
    return out;
}

inline std::optional<std::string> decode_path(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        unsigned value = 0;
        if (i + 2 >= text.size()) {
            return std::nullopt;  // '%' needs two hex digits after it
        }
        const auto [end, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
        if (ec != std::errc{} || end != text.data() + i + 3) {
            return std::nullopt;
        }
        out += static_cast<char>(value);
        i += 2;
    }
    return out;
}

template <class Int>
bool parse_int(std::string_view text, Int& value, int base = 10) {
    if (text.empty() || text.size() > 20) {
        return false;
    }
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    return ec == std::errc{} && end == text.data() + text.size();
}

}  // namespace detail

/// The checkpoint text of `position` for `path`. Allocates.
inline std::string to_text(const Position& position, std::string_view path = {}) {
    return fmt::format(
        "{}\npath={}\ndevice={}\ninode={}\nfingerprint={:016x}/{}\noffset={}\nline={}\nend\n",
        detail::checkpoint_magic, detail::encode_path(path), position.file.device,
        position.file.inode, position.fingerprint.hash, position.fingerprint.bytes, position.offset,
        position.line);
}

/// Parses and validates checkpoint text: every field present, in order, well-formed and
/// consistent, and nothing else. Never throws except std::bad_alloc.
inline ParsedPosition parse_position(std::string_view text) {
    ParsedPosition out;
    auto fail = [&out](std::string message) {
        out.error = std::move(message);
        out.position.reset();
        return out;
    };
    std::size_t line_number = 0;
    auto next_line = [&](std::string_view& line) {
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) {
            return false;
        }
        line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        ++line_number;
        return true;
    };
    std::string_view line;
    if (!next_line(line)) {
        return fail(text.empty() ? "empty" : "truncated: no complete first line");
    }
    if (line != detail::checkpoint_magic) {
        if (line.starts_with("snaptail-checkpoint ")) {
            return fail(fmt::format("unsupported version '{}' (this build reads version 1)",
                                    line.substr(20)));
        }
        return fail("not a snaptail checkpoint (first line is not 'snaptail-checkpoint 1')");
    }
    Position p;
    auto field = [&](std::string_view key, std::string_view& value) -> bool {
        if (!next_line(line)) {
            out.error = fmt::format("truncated: '{}' is missing", key);
            return false;
        }
        if (!line.starts_with(key) || line.size() <= key.size() || line[key.size()] != '=') {
            out.error = fmt::format("line {}: expected '{}=', found '{}'", line_number, key,
                                    line.substr(0, 40));
            return false;
        }
        value = line.substr(key.size() + 1);
        return true;
    };
    auto number = [&](std::string_view key, auto& target) -> bool {
        std::string_view value;
        if (!field(key, value)) {
            return false;
        }
        if (!detail::parse_int(value, target)) {
            out.error = fmt::format("line {}: '{}' is not a valid {}", line_number,
                                    value.substr(0, 40), key);
            return false;
        }
        return true;
    };
    std::string_view path;
    if (!field("path", path)) {
        return fail(out.error);
    }
    auto decoded = detail::decode_path(path);
    if (!decoded) {
        return fail(fmt::format("line {}: malformed path encoding", line_number));
    }
    out.path = std::move(*decoded);
    if (!number("device", p.file.device) || !number("inode", p.file.inode)) {
        return fail(out.error);
    }
    std::string_view fingerprint;
    if (!field("fingerprint", fingerprint)) {
        return fail(out.error);
    }
    const auto slash = fingerprint.find('/');
    if (slash != 16 || !detail::parse_int(fingerprint.substr(0, 16), p.fingerprint.hash, 16) ||
        !detail::parse_int(fingerprint.substr(17), p.fingerprint.bytes)) {
        return fail(fmt::format("line {}: fingerprint '{}' is not <16 hex digits>/<bytes>",
                                line_number, fingerprint.substr(0, 40)));
    }
    if (!number("offset", p.offset) || !number("line", p.line)) {
        return fail(out.error);
    }
    if (!next_line(line) || line != "end") {
        return fail("truncated: the closing 'end' line is missing");
    }
    if (!text.empty()) {
        return fail("unexpected text after the closing 'end' line");
    }
    if (p.fingerprint.bytes > max_fingerprint_bytes || p.fingerprint.bytes > p.offset) {
        return fail(fmt::format("fingerprint covers {} bytes, more than the offset {} or {}",
                                p.fingerprint.bytes, p.offset, max_fingerprint_bytes));
    }
    if (p.line > p.offset) {
        return fail(fmt::format("{} lines cannot end before byte {}", p.line, p.offset));
    }
    out.position = p;
    return out;
}

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
