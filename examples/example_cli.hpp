// What the example programs share: usage errors, number arguments, PATH, writing all bytes.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace snaptail::examples {

/// The program's name and usage text, set once at the start of main.
struct Usage {
    std::string_view program;
    std::string_view text;
};
inline Usage usage;

/// Bad usage: the message, the usage text, exit status 2.
[[noreturn]] inline void usage_error(std::string_view message) {
    fmt::print(stderr, "{}: {}\n{}", usage.program, message, usage.text);
    std::exit(2);
}

/// The value after option argv[i], advancing i past it; a usage error when there is none.
inline std::string_view option_value(int& i, int argc, char** argv) {
    if (i + 1 >= argc) {
        usage_error(fmt::format("{} needs a value", argv[i]));
    }
    return argv[++i];
}

/// An argument that is no known option: an unknown option is a usage error, anything else is
/// the one PATH (a second PATH is a usage error too).
inline void take_path(std::string_view arg, std::optional<std::string>& path) {
    if (arg.starts_with("-") && arg != "-") {
        usage_error(fmt::format("unknown option '{}'", arg));
    }
    if (path) {
        usage_error(fmt::format("one PATH only, got '{}' and '{}'", *path, arg));
    }
    path = std::string(arg);
}

/// -h, --help: the usage text on stdout, exit status 0.
[[noreturn]] inline void print_help() {
    fmt::print("{}", usage.text);
    std::exit(0);
}

/// `text` as a non-negative integer for `flag`, or a usage error.
template <class Int>
Int parse_number(std::string_view flag, std::string_view text) {
    Int value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) {
        usage_error(fmt::format("{} needs a non-negative integer, got '{}'", flag, text));
    }
    return value;
}

/// Writes all of `data` to `fd`, retrying short writes; throws std::system_error on failure.
inline void write_all(int fd, std::string_view data, const char* what) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(errno, std::generic_category(), what);
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace snaptail::examples
