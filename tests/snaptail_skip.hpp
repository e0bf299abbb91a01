// Skipping a test whose outside program (a server, promtool) is missing, so that ctest reports it
// as skipped rather than passed; and finding such programs.
#pragma once

#include "snaptail_catch.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

/// Skips the current test case: says why on stderr, then, under ctest (which sets
/// SNAPTAIL_SKIP_RETURN_CODE and marks that exit status as skipped), exits with that status;
/// run by hand, it warns and returns from the test case.
#define SNAPTAIL_SKIP(reason)                                                \
    do {                                                                     \
        const std::string snaptail_skip_reason = (reason);                   \
        std::fprintf(stderr, "SKIPPED: %s\n", snaptail_skip_reason.c_str()); \
        if (const char* code = std::getenv("SNAPTAIL_SKIP_RETURN_CODE")) {   \
            std::fflush(nullptr);                                            \
            std::_Exit(std::atoi(code));                                     \
        }                                                                    \
        WARN("SKIPPED: " << snaptail_skip_reason);                           \
        return;                                                              \
    } while (false)

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
