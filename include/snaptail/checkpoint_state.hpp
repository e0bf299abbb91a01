// What a checkpoint holds for a file set: one position per file identity (format version 2),
// and the text form it is stored in. Version 1 (one position, position.hpp) still loads.
#pragma once

#include <snaptail/position.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace snaptail {

/// Where a tailer is in one file of a file set.
struct FileCheckpoint {
    Position position;  ///< Just past the last delivered line (identity and fingerprint too).
    std::string path;   ///< The name the file had when last seen.
    bool done{false};   ///< Follow newest: read to its end and left for a newer file.
    /// When the file was first found gone (seconds since the epoch; 0 while it is there):
    /// its entry is pruned once FileSet::forget_after has passed since.
    std::int64_t gone_since{0};

    friend bool operator==(const FileCheckpoint&, const FileCheckpoint&) = default;
};

/// The whole of a checkpoint: version 1 holds one position of a single path, version 2 one
/// position per file of a file set.
struct CheckpointState {
    unsigned version{2};
    std::string path;  ///< Version 1: the followed path.
    std::string root;  ///< Version 2: the file set's root directory...
    std::string glob;  ///< ...and pattern.
    std::vector<FileCheckpoint> files;

    friend bool operator==(const CheckpointState&, const CheckpointState&) = default;
};

/// The outcome of parse_checkpoint: a state, or what is wrong with the text.
struct ParsedCheckpoint {
    std::optional<CheckpointState> state;
    std::string error;  ///< Empty on success.
};

namespace detail {

inline constexpr std::string_view checkpoint_magic_v2 = "snaptail-checkpoint 2";

// One file's line: "file=<device> <inode> <hash>/<bytes> <offset> <line> <done|-> <gone> <path>".
inline bool parse_file_line(std::string_view value, FileCheckpoint& out, std::string& error) {
    std::string_view fields[7];
    for (auto& field : fields) {
        const auto space = value.find(' ');
        if (space == std::string_view::npos) {
            error = "expected 8 space-separated fields";
            return false;
        }
        field = value.substr(0, space);
        value.remove_prefix(space + 1);
    }
    Position& p = out.position;
    const auto& fingerprint = fields[2];
    if (!parse_int(fields[0], p.file.device) || !parse_int(fields[1], p.file.inode)) {
        error = "device and inode must be numbers";
        return false;
    }
    if (fingerprint.size() < 18 || fingerprint[16] != '/' ||
        !parse_int(fingerprint.substr(0, 16), p.fingerprint.hash, 16) ||
        !parse_int(fingerprint.substr(17), p.fingerprint.bytes)) {
        error = "fingerprint is not <16 hex digits>/<bytes>";
        return false;
    }
    if (!parse_int(fields[3], p.offset) || !parse_int(fields[4], p.line)) {
        error = "offset and line must be numbers";
        return false;
    }
    if (fields[5] != "done" && fields[5] != "-") {
        error = fmt::format("state '{}' is neither 'done' nor '-'", fields[5].substr(0, 20));
        return false;
    }
    out.done = fields[5] == "done";
    if (!parse_int(fields[6], out.gone_since) || out.gone_since < 0) {
        error = "gone-since must be a number of seconds";
        return false;
    }
    auto path = decode_path(value);
    if (!path) {
        error = "malformed path encoding";
        return false;
    }
    out.path = std::move(*path);
    if (p.fingerprint.bytes > max_fingerprint_bytes || p.fingerprint.bytes > p.offset) {
        error = fmt::format("fingerprint covers {} bytes, more than the offset {} or {}",
                            p.fingerprint.bytes, p.offset, max_fingerprint_bytes);
        return false;
    }
    if (p.line > p.offset) {
        error = fmt::format("{} lines cannot end before byte {}", p.line, p.offset);
        return false;
    }
    return true;
}

inline ParsedCheckpoint parse_checkpoint_v2(std::string_view text) {
    ParsedCheckpoint out;
    auto fail = [&out](std::string message) {
        out.error = std::move(message);
        out.state.reset();
        return out;
    };
    CheckpointState state;
    std::size_t line_number = 1;  // the magic line was line 1
    auto next = [&](std::string_view& line) {
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
    for (auto [key, target] :
         {std::pair<std::string_view, std::string*>{"root", &state.root}, {"glob", &state.glob}}) {
        if (!next(line)) {
            return fail(fmt::format("truncated: '{}' is missing", key));
        }
        if (!line.starts_with(key) || line.size() < key.size() + 1 || line[key.size()] != '=') {
            return fail(fmt::format("line {}: expected '{}=', found '{}'", line_number, key,
                                    line.substr(0, 40)));
        }
        auto decoded = decode_path(line.substr(key.size() + 1));
        if (!decoded) {
            return fail(fmt::format("line {}: malformed path encoding", line_number));
        }
        *target = std::move(*decoded);
    }
    for (;;) {
        if (!next(line)) {
            return fail("truncated: the closing 'end' line is missing");
        }
        if (line == "end") {
            break;
        }
        if (!line.starts_with("file=")) {
            return fail(fmt::format("line {}: expected 'file=' or 'end', found '{}'", line_number,
                                    line.substr(0, 40)));
        }
        FileCheckpoint file;
        std::string error;
        if (!parse_file_line(line.substr(5), file, error)) {
            return fail(fmt::format("line {}: {}", line_number, error));
        }
        state.files.push_back(std::move(file));
    }
    if (!text.empty()) {
        return fail("unexpected text after the closing 'end' line");
    }
    auto ids = std::vector<FileId>();
    ids.reserve(state.files.size());
    for (const auto& file : state.files) {
        ids.push_back(file.position.file);
    }
    std::sort(ids.begin(), ids.end());
    if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
        return fail("two entries name the same file (device and inode)");
    }
    out.state = std::move(state);
    return out;
}

}  // namespace detail

/// The checkpoint text of `state`: version 1 for a single path's one position, version 2
/// otherwise. Allocates.
inline std::string to_text(const CheckpointState& state) {
    if (state.version == 1) {
        return to_text(state.files.empty() ? Position{} : state.files.front().position, state.path);
    }
    std::string text =
        fmt::format("{}\nroot={}\nglob={}\n", detail::checkpoint_magic_v2,
                    detail::encode_path(state.root), detail::encode_path(state.glob));
    for (const auto& file : state.files) {
        const Position& p = file.position;
        fmt::format_to(std::back_inserter(text), "file={} {} {:016x}/{} {} {} {} {} {}\n",
                       p.file.device, p.file.inode, p.fingerprint.hash, p.fingerprint.bytes,
                       p.offset, p.line, file.done ? "done" : "-", file.gone_since,
                       detail::encode_path(file.path));
    }
    text += "end\n";
    return text;
}

/// Parses and validates checkpoint text of version 1 or 2: every field present, in order,
/// well-formed and consistent, no identity twice, and nothing else. Never throws except
/// std::bad_alloc.
inline ParsedCheckpoint parse_checkpoint(std::string_view text) {
    const auto nl = text.find('\n');
    if (nl != std::string_view::npos && text.substr(0, nl) == detail::checkpoint_magic_v2) {
        return detail::parse_checkpoint_v2(text.substr(nl + 1));
    }
    ParsedPosition v1 = parse_position(text);
    ParsedCheckpoint out;
    if (!v1.position) {
        out.error = std::move(v1.error);
        return out;
    }
    CheckpointState state;
    state.version = 1;
    state.path = v1.path;
    state.files.push_back(FileCheckpoint{*v1.position, std::move(v1.path), false, 0});
    out.state = std::move(state);
    return out;
}

}  // namespace snaptail
