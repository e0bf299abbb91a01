// A file set's pattern, split into one glob(7) part per directory level, and the natural order
// of the paths it matches.
#pragma once

#include <fnmatch.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace snaptail::detail {

/// Compares two names in natural order: runs of ASCII digits compare as numbers (`9` < `10`,
/// `007` == `7` by value, then the shorter run first), everything else byte by byte. A total
/// order: names that differ never compare equal. Never allocates.
inline int natural_compare(std::string_view a, std::string_view b) noexcept {
    auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
    int tie = 0;  // the first difference that value alone does not decide (leading zeros)
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < a.size() && j < b.size()) {
        if (is_digit(a[i]) && is_digit(b[j])) {
            std::size_t ai = i;
            std::size_t bj = j;
            while (ai < a.size() && a[ai] == '0') {
                ++ai;
            }
            while (bj < b.size() && b[bj] == '0') {
                ++bj;
            }
            std::size_t ae = ai;
            std::size_t be = bj;
            while (ae < a.size() && is_digit(a[ae])) {
                ++ae;
            }
            while (be < b.size() && is_digit(b[be])) {
                ++be;
            }
            // Without leading zeros, a longer run is a larger number; equal lengths compare
            // digit by digit.
            if (ae - ai != be - bj) {
                return ae - ai < be - bj ? -1 : 1;
            }
            const int digits = a.substr(ai, ae - ai).compare(b.substr(bj, be - bj));
            if (digits != 0) {
                return digits < 0 ? -1 : 1;
            }
            if (tie == 0 && ae - i != be - j) {
                tie = ae - i < be - j ? -1 : 1;  // same value: fewer leading zeros first
            }
            i = ae;
            j = be;
            continue;
        }
        if (a[i] != b[j]) {
            return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]) ? -1 : 1;
        }
        ++i;
        ++j;
    }
    if (i < a.size() || j < b.size()) {
        return i < a.size() ? 1 : -1;  // a prefix comes first
    }
    return tie;
}

/// Natural order of relative paths, directory by directory: `20261204/23` < `20261205/0` and
/// `a/x` < `a.b/x`. Never allocates.
inline int natural_path_compare(std::string_view a, std::string_view b) noexcept {
    for (;;) {
        const auto sa = a.find('/');
        const auto sb = b.find('/');
        const int c = natural_compare(a.substr(0, sa), b.substr(0, sb));
        if (c != 0) {
            return c;
        }
        if (sa == std::string_view::npos || sb == std::string_view::npos) {
            if (sa == sb) {
                return 0;
            }
            return sa == std::string_view::npos ? -1 : 1;  // a file before a deeper path
        }
        a.remove_prefix(sa + 1);
        b.remove_prefix(sb + 1);
    }
}

/// A file set's glob split at '/': one part per directory level below the root. Parts without
/// metacharacters are looked up by name rather than listed. Not thread-safe to mutate;
/// const use is.
class FileSetPattern {
  public:
    /// `glob` as validate() accepts it (relative, no empty parts). Allocates.
    explicit FileSetPattern(std::string_view glob) {
        while (!glob.empty()) {
            const auto slash = glob.find('/');
            parts_.emplace_back(glob.substr(0, slash));
            glob = slash == std::string_view::npos ? std::string_view{} : glob.substr(slash + 1);
        }
    }

    std::size_t depth() const noexcept { return parts_.size(); }
    const std::string& part(std::size_t level) const noexcept { return parts_[level]; }

    /// Whether `name` (one directory entry) matches the part of `level`. "." and ".." never
    /// match; a leading '.' only matches a '.' in the pattern, as in glob(7). Never allocates.
    bool matches(std::size_t level, const char* name) const noexcept {
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) {
            return false;
        }
        return ::fnmatch(parts_[level].c_str(), name, FNM_PERIOD) == 0;
    }

    /// Whether a relative path matches the whole pattern (one part per level). Allocates.
    bool matches_path(std::string_view relative) const {
        std::size_t level = 0;
        while (level < parts_.size()) {
            const auto slash = relative.find('/');
            const std::string name(relative.substr(0, slash));
            if (name.empty() || !matches(level, name.c_str())) {
                return false;
            }
            ++level;
            if (slash == std::string_view::npos) {
                return level == parts_.size();
            }
            relative.remove_prefix(slash + 1);
        }
        return false;
    }

    /// The literal name a part stands for when it has no metacharacters (the unescaped text),
    /// or an empty string when it must be matched against a listing. Allocates.
    std::string literal(std::size_t level) const {
        const std::string& part = parts_[level];
        std::string name;
        for (std::size_t i = 0; i < part.size(); ++i) {
            const char c = part[i];
            if (c == '*' || c == '?' || c == '[') {
                return {};
            }
            if (c == '\\' && i + 1 < part.size()) {
                name += part[++i];
                continue;
            }
            name += c;
        }
        return name;
    }

  private:
    std::vector<std::string> parts_;
};

}  // namespace snaptail::detail
