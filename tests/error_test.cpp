// The default error handler prints a few errors of each kind per window and counts the rest.
#include "snaptail_catch.hpp"

#include <snaptail/error.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <regex>
#include <string>
#include <thread>

using namespace snaptail;
using namespace std::chrono_literals;

namespace {

// A temporary FILE* whose contents can be read back.
class CapturedFile {
  public:
    CapturedFile() : file_(std::tmpfile(), &std::fclose) { REQUIRE(file_ != nullptr); }
    std::FILE* get() const { return file_.get(); }
    std::string text() const {
        std::fflush(file_.get());
        std::rewind(file_.get());
        std::string out;
        char chunk[4096];
        std::size_t n = 0;
        while ((n = std::fread(chunk, 1, sizeof chunk, file_.get())) > 0) {
            out.append(chunk, n);
        }
        return out;
    }

  private:
    std::unique_ptr<std::FILE, decltype(&std::fclose)> file_;
};

// The notice's "in the next N ms" depends on how long the calls took: N becomes "N" here, and
// each N must lie in (0, window].
std::string without_times(const std::string& text, long long window_ms) {
    static const std::regex next_ms("next ([0-9]+) ms");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), next_ms);
         it != std::sregex_iterator(); ++it) {
        const long long n = std::stoll((*it)[1].str());
        CHECK(n > 0);
        CHECK(n <= window_ms);
    }
    return std::regex_replace(text, next_ms, "next N ms");
}

Error parse_error(std::uint64_t line) {
    return Error{ErrorKind::parse, "bad json", "/var/log/app.log", line * 100, line};
}

}  // namespace

TEST_CASE("print_error_to names the kind, path, line, byte and message", "[error]") {
    CapturedFile out;
    print_error_to(out.get(), parse_error(7));
    print_error_to(out.get(), Error{ErrorKind::io, "open failed: No such file or directory",
                                    "/var/log/app.log", 0, 0});
    CHECK(out.text() ==
          "snaptail: parse: /var/log/app.log: line 7 at byte 700: bad json\n"
          "snaptail: io: /var/log/app.log: open failed: No such file or directory\n");
}

TEST_CASE("the rate-limited printer prints a burst per kind, then counts", "[error]") {
    CapturedFile out;
    {
        RateLimitedPrinter printer(3, 1h, out.get());
        for (std::uint64_t line = 1; line <= 10; ++line) {
            printer(parse_error(line));
        }
        // Another kind has its own allowance.
        printer(Error{ErrorKind::long_line, "line longer than max_line_bytes (16) was truncated",
                      "/var/log/app.log", 5000, 50});
    }  // destroyed: the count of what was not printed
    CHECK(without_times(out.text(), 3'600'000) ==
          "snaptail: parse: /var/log/app.log: line 1 at byte 100: bad json\n"
          "snaptail: parse: /var/log/app.log: line 2 at byte 200: bad json\n"
          "snaptail: parse: /var/log/app.log: line 3 at byte 300: bad json\n"
          "snaptail: parse: /var/log/app.log: more errors of this kind in the next N ms are "
          "counted, not printed\n"
          "snaptail: long_line: /var/log/app.log: line 50 at byte 5000: line longer than "
          "max_line_bytes (16) was truncated\n"
          "snaptail: parse: /var/log/app.log: 7 more errors of this kind not printed\n");
}

TEST_CASE("the rate-limited printer reports the count when the next window opens", "[error]") {
    CapturedFile out;
    RateLimitedPrinter printer(1, 500ms, out.get());
    printer(parse_error(1));
    printer(parse_error(2));
    printer(parse_error(3));
    std::this_thread::sleep_for(600ms);  // past the window
    printer(parse_error(4));
    CHECK(without_times(out.text(), 500) ==
          "snaptail: parse: /var/log/app.log: line 1 at byte 100: bad json\n"
          "snaptail: parse: /var/log/app.log: more errors of this kind in the next N ms are "
          "counted, not printed\n"
          "snaptail: parse: /var/log/app.log: 2 more errors of this kind not printed\n"
          "snaptail: parse: /var/log/app.log: line 4 at byte 400: bad json\n"
          "snaptail: parse: /var/log/app.log: more errors of this kind in the next N ms are "
          "counted, not printed\n");
}

TEST_CASE("a copy of the rate-limited printer starts with nothing counted", "[error]") {
    CapturedFile out;
    {
        RateLimitedPrinter printer(1, 1h, out.get());
        printer(parse_error(1));
        printer(parse_error(2));
        const ErrorHandler handler = printer;  // copies: as a tailer's handler would
        handler(parse_error(3));
        handler(parse_error(4));
    }
    // Each counted one error beyond its burst of one; the copy printed its own first error.
    CHECK(without_times(out.text(), 3'600'000) ==
          "snaptail: parse: /var/log/app.log: line 1 at byte 100: bad json\n"
          "snaptail: parse: /var/log/app.log: more errors of this kind in the next N ms are "
          "counted, not printed\n"
          "snaptail: parse: /var/log/app.log: line 3 at byte 300: bad json\n"
          "snaptail: parse: /var/log/app.log: more errors of this kind in the next N ms are "
          "counted, not printed\n"
          "snaptail: parse: /var/log/app.log: 1 more error of this kind not printed\n"
          "snaptail: parse: /var/log/app.log: 1 more error of this kind not printed\n");
}

TEST_CASE("the rate-limited printer always prints data loss and the end of a run", "[error]") {
    CapturedFile out;
    {
        RateLimitedPrinter printer(1, 1h, out.get());
        for (std::uint64_t line = 1; line <= 3; ++line) {
            printer(Error{ErrorKind::sink_gave_up, fmt::format("batch of line {} skipped", line),
                          "/var/log/app.log", line * 100, line});
        }
        printer(Error{ErrorKind::undelivered, "lines 4 to 9 not delivered", "/var/log/app.log", 400,
                      4});
        printer(Error{ErrorKind::gap, "a.log.1 was not found", "/var/log/app.log", 0, 0});
        printer(Error{ErrorKind::truncated, "file shrank", "/var/log/app.log", 0, 0});
        printer(Error{ErrorKind::stopped, "tailer stopped: boom", "/var/log/app.log", 0, 0});
    }
    CHECK(out.text() ==
          "snaptail: sink_gave_up: /var/log/app.log: line 1 at byte 100: batch of line 1 skipped\n"
          "snaptail: sink_gave_up: /var/log/app.log: line 2 at byte 200: batch of line 2 skipped\n"
          "snaptail: sink_gave_up: /var/log/app.log: line 3 at byte 300: batch of line 3 skipped\n"
          "snaptail: undelivered: /var/log/app.log: line 4 at byte 400: lines 4 to 9 not "
          "delivered\n"
          "snaptail: gap: /var/log/app.log: a.log.1 was not found\n"
          "snaptail: truncated: /var/log/app.log: file shrank\n"
          "snaptail: stopped: /var/log/app.log: tailer stopped: boom\n");
}

TEST_CASE("the rate-limited printer with a zero window prints every error", "[error]") {
    CapturedFile out;
    {
        RateLimitedPrinter printer(1, std::chrono::seconds(0), out.get());
        for (std::uint64_t line = 1; line <= 3; ++line) {
            printer(parse_error(line));
        }
    }
    CHECK(out.text() ==
          "snaptail: parse: /var/log/app.log: line 1 at byte 100: bad json\n"
          "snaptail: parse: /var/log/app.log: line 2 at byte 200: bad json\n"
          "snaptail: parse: /var/log/app.log: line 3 at byte 300: bad json\n");
}
