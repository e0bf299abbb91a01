// Finding an outside program (a server, promtool) the tests and benchmarks run.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

namespace snaptail::test {

/// An executable called `name`: in `dirs` first, then on PATH.
inline std::optional<std::filesystem::path> find_program(
    std::string_view name, const std::vector<std::filesystem::path>& dirs = {}) {
    std::vector<std::filesystem::path> all = dirs;
    if (const char* path = std::getenv("PATH")) {
        std::string_view rest = path;
        while (!rest.empty()) {
            const auto colon = rest.find(':');
            all.emplace_back(rest.substr(0, colon));
            rest = colon == rest.npos ? std::string_view{} : rest.substr(colon + 1);
        }
    }
    for (const auto& dir : all) {
        const std::filesystem::path candidate = dir / name;
        if (::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
    }
    return std::nullopt;
}

}  // namespace snaptail::test
