// What the example programs share: their command lines, parsed with CLI11 (usage errors exit 2
// with the message and the help on stderr; -h/--help prints the help on stdout and exits 0),
// and writing all bytes to a descriptor.
#pragma once

#include <fmt/format.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace snaptail::examples {

/// The program's name and help text, set by parse_command_line (for usage_error after parsing).
struct Usage {
    std::string program;
    std::string text;
};
inline Usage usage;

/// Bad usage: "<program>: <message>", the help text, exit status 2.
[[noreturn]] inline void usage_error(std::string_view message) {
    fmt::print(stderr, "{}: {}\n{}", usage.program, message, usage.text);
    std::exit(2);
}

/// Help in the layout the examples always had: the usage line first, then the description,
/// then PATH and the options, each with its description.
class HelpFormatter : public CLI::Formatter {
  public:
    HelpFormatter() {
        label("Usage", "usage");
        label("OPTIONS", "options");
        label("REQUIRED", "(required)");
        label("Positionals", "arguments");
        column_width(28);
    }

    std::string make_help(const CLI::App* app, std::string name,
                          CLI::AppFormatMode mode) const override {
        if (mode == CLI::AppFormatMode::Sub) {
            return CLI::Formatter::make_help(app, std::move(name), mode);
        }
        std::string out = make_usage(app, std::move(name));
        out += make_description(app);
        out += make_positionals(app);
        out += make_groups(app, mode);
        if (!app->get_footer().empty()) {
            out += "\n" + make_footer(app);
        }
        return out;
    }
};

/// Gives `app` the examples' help layout and `-h, --help`. Call before adding options.
inline void set_style(CLI::App& app) {
    app.formatter(std::make_shared<HelpFormatter>());
    app.option_defaults()->group("options");
    app.set_help_flag("-h,--help", "this text")->group("options");
    // Options come before and after PATH alike, as the hand-written parsers allowed.
    app.positionals_at_end(false);
}

/// Parses argv into `app`'s options; on -h/--help prints the help on stdout and exits 0, on a
/// usage error prints the message and the help on stderr and exits 2.
inline void parse_command_line(CLI::App& app, int argc, char** argv) {
    usage = {app.get_name(), app.help()};
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        fmt::print("{}", usage.text);
        std::exit(0);
    } catch (const CLI::ParseError& e) {
        usage_error(e.what());
    }
}

namespace detail {

// CLI11 2.1 reads integers with strtoull(text, base 0): "-1" would wrap around, "010" would be
// octal. Options that take counts accept plain decimal digits only, read as such.
inline std::string check_decimal(std::string& text) {
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
        return fmt::format("needs a non-negative integer, got '{}'", text);
    }
    text = std::to_string(value);  // without leading zeros, so base 0 reads it as decimal
    return {};
}

}  // namespace detail

/// A validator for non-negative decimal integers (no sign, no hex or octal reading).
inline const CLI::Validator non_negative_integer(detail::check_decimal, "");

/// An option `name` taking a non-negative integer into `target`.
template <class Int>
CLI::Option* add_number(CLI::App& app, std::string name, Int& target, std::string description) {
    return app.add_option(std::move(name), target, std::move(description))
        ->transform(non_negative_integer)
        ->type_name("N");
}

/// An option `name` taking a non-negative number of milliseconds into `target`.
inline CLI::Option* add_milliseconds(CLI::App& app, std::string name,
                                     std::chrono::milliseconds& target, std::string description) {
    return app
        .add_option_function<unsigned>(
            std::move(name),
            [&target](const unsigned& ms) { target = std::chrono::milliseconds(ms); },
            std::move(description))
        ->transform(non_negative_integer)
        ->type_name("N");
}

/// An option `name` taking one of `choices`' names into `target`.
template <class T>
CLI::Option* add_choice(CLI::App& app, std::string name, T& target,
                        std::vector<std::pair<std::string, T>> choices, std::string description) {
    std::string names;
    for (std::size_t i = 0; i < choices.size(); ++i) {
        names += i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ";
        names += choices[i].first;
    }
    return app
        .add_option_function<std::string>(
            name,
            [&target, choices, names, name](const std::string& value) {
                for (const auto& [text, choice] : choices) {
                    if (text == value) {
                        target = choice;
                        return;
                    }
                }
                throw CLI::ValidationError(name, fmt::format("takes {}, not '{}'", names, value));
            },
            std::move(description))
        ->type_name("WORD");
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
