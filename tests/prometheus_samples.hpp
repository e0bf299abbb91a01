// Reading back what write_prometheus wrote, and checking it with Prometheus's own parser.
#pragma once

#include "snaptail_skip.hpp"

#include <fmt/format.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>

namespace snaptail::test {

/// The samples of an exposition as "name{labels}" -> value text.
inline std::map<std::string, std::string> prometheus_samples(std::string_view text) {
    std::map<std::string, std::string> out;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        const std::string_view line = text.substr(0, nl);
        text = nl == text.npos ? std::string_view{} : text.substr(nl + 1);
        if (line.empty() || line.front() == '#') {
            continue;
        }
        const auto space = line.rfind(' ');
        out[std::string(line.substr(0, space))] = std::string(line.substr(space + 1));
    }
    return out;
}

/// What `promtool check metrics` says about `text`: its exit status and output.
struct PromtoolVerdict {
    int status;
    std::string output;
};

inline PromtoolVerdict promtool_check(const std::filesystem::path& promtool,
                                      const std::filesystem::path& file) {
    const std::string command =
        fmt::format("'{}' check metrics < '{}' 2>&1", promtool.string(), file.string());
    PromtoolVerdict verdict{-1, {}};
    std::FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) {
        return verdict;
    }
    char buffer[4096];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) {
        verdict.output.append(buffer, n);
    }
    const int status = ::pclose(pipe);
    verdict.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return verdict;
}

}  // namespace snaptail::test
