// parse_threads > 1: lines are parsed in slices on several threads; the sink still sees
// records in file order, and errors and filtered lines keep their exact line numbers.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>

#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace snaptail;
using namespace snaptail::test;

namespace {

struct Numbered {
    std::string_view text;
    int value;
};

// Parses "n=<int>"; lines with "#" are filtered, lines with "!" throw.
struct NumberParser {
    std::optional<Numbered> parse(std::string_view line) const {
        if (line.find('!') != std::string_view::npos) {
            throw std::runtime_error("bang");
        }
        if (line.find('#') != std::string_view::npos) {
            return std::nullopt;
        }
        return Numbered{line, std::stoi(std::string(line.substr(2)))};
    }
};

struct MoveOnlyParser {
    std::unique_ptr<int> state = std::make_unique<int>(0);
    std::string_view parse(std::string_view line) const { return line; }
};

}  // namespace

TEST_CASE("parallel parsing keeps file order, filtered lines and error line numbers",
          "[tailer][parallel]") {
    TempDir dir;
    const auto path = dir / "app.log";
    std::string content;
    std::vector<int> expected;
    std::vector<std::uint64_t> expected_error_lines;
    constexpr int total = 20'000;
    for (int i = 1; i <= total; ++i) {
        if (i % 97 == 0) {
            content += fmt::format("n={}!\n", i);
            expected_error_lines.push_back(static_cast<std::uint64_t>(i));
        } else if (i % 13 == 0) {
            content += fmt::format("n={}#\n", i);
        } else {
            content += fmt::format("n={}\n", i);
            expected.push_back(i);
        }
    }
    append(path, content);
    for (unsigned threads : {2u, 3u}) {
        DYNAMIC_SECTION("parse_threads=" << threads) {
            auto options = quick_options(path);
            options.parse_threads = threads;
            options.max_batch_lines = 700;
            options.idle_exit = 100ms;
            ErrorLog errors;
            std::vector<int> got;
            std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
            BatchingTailer<NumberParser> tailer(
                options, NumberParser{},
                [&](Batch<Numbered>& batch) {
                    for (const auto& record : batch.records()) {
                        got.push_back(record.value);
                        CHECK(record.text == fmt::format("n={}", record.value));
                    }
                    ranges.emplace_back(batch.first_line(), batch.last_line());
                },
                errors.handler());
            tailer.run(std::stop_token{});
            CHECK(got == expected);
            std::vector<std::uint64_t> error_lines;
            for (const auto& error : errors.of(ErrorKind::parse)) {
                error_lines.push_back(error.line);
                CHECK(error.message == "parser threw: bang");
            }
            CHECK(error_lines == expected_error_lines);
            // Each batch names the lines of its first and last record, in increasing order.
            for (std::size_t i = 0; i < ranges.size(); ++i) {
                CHECK(ranges[i].first <= ranges[i].second);
                if (i > 0) {
                    CHECK(ranges[i].first > ranges[i - 1].second);
                }
            }
            const auto stats = tailer.stats();
            CHECK(stats.records == expected.size());
            CHECK(stats.parse_errors == expected_error_lines.size());
            CHECK(stats.filtered == static_cast<std::uint64_t>(total) - expected.size() -
                                        expected_error_lines.size());
        }
    }
}

TEST_CASE("parallel parsing follows appends and delivers on stop", "[tailer][parallel]") {
    TempDir dir;
    const auto path = dir / "app.log";
    auto options = quick_options(path);
    options.parse_threads = 2;
    Collector got;
    BatchingTailer<RawLineParser> tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    for (int round = 0; round < 20; ++round) {
        append(path, text_of(numbered(fmt::format("r{}", round), 1, 50)));
    }
    REQUIRE(got.wait_for_lines(1000));
    tailer.stop();
    std::vector<std::string> expected;
    for (int round = 0; round < 20; ++round) {
        const auto part = numbered(fmt::format("r{}", round), 1, 50);
        expected.insert(expected.end(), part.begin(), part.end());
    }
    CHECK(got.lines() == expected);
}

TEST_CASE("parse_threads > 1 with a parser that cannot be copied is rejected",
          "[tailer][parallel]") {
    TailOptions options;
    options.path = "/tmp/never-opened.log";
    options.parse_threads = 2;
    CHECK_THROWS_WITH((BatchingTailer<MoveOnlyParser>(options, MoveOnlyParser{},
                                                      [](Batch<std::string_view>&) {})),
                      has_substring("parse_threads = 2") && has_substring("copyable Parser"));
    options.parse_threads = 1;
    CHECK_NOTHROW(
        BatchingTailer<MoveOnlyParser>(options, MoveOnlyParser{}, [](Batch<std::string_view>&) {}));
}

namespace {

// Reads the last byte of the padding the tailer promises after every line: ThreadSanitizer
// then sees a read that writes into the padding of a line being parsed.
struct PaddingToucher {
    std::string_view parse(std::string_view line) const {
        touch_padding(line);
        return line;
    }
};

}  // namespace

// With parse threads, reading goes on below the batch in flight once the buffer wraps. A small
// buffer and batches of very different sizes make it wrap again and again, and make the next
// batch sometimes outgrow the room below (the batch above is then delivered first): every line
// must still arrive intact, in order, and the buffer must never hold more than read_ahead_bytes.
TEST_CASE("parallel parsing through a small wrapping buffer keeps every line intact",
          "[tailer][parallel]") {
    TempDir dir;
    const auto path = dir / "app.log";
    // Runs of 40 short lines and runs of 40 long lines (6-8 KiB) in a pseudo-random order: with
    // 40-line batches, a batch of ~280 KiB often follows one of ~2 KiB.
    std::vector<std::string> expected;
    std::uint32_t state = 12345;
    for (unsigned i = 1; i <= 4'000; ++i) {
        state = state * 1664525u + 1013904223u;
        const bool long_run = (((i - 1) / 40) * 2654435761u >> 9) % 2 == 0;
        const std::size_t length = long_run ? 6000 + (state >> 8) % 2000 : (state >> 8) % 120;
        expected.push_back(
            fmt::format("{:05} {}", i, std::string(length, static_cast<char>('a' + i % 26))));
    }
    const auto half = static_cast<std::ptrdiff_t>(expected.size() / 2);
    append(path, text_of(std::vector(expected.begin(), expected.begin() + half)));
    for (const auto& [threads, linger] :
         {std::pair{2u, 200ms}, std::pair{3u, 200ms}, std::pair{2u, 0ms}, std::pair{3u, 0ms}}) {
        DYNAMIC_SECTION("parse_threads=" << threads << " linger=" << linger.count() << "ms") {
            auto options = quick_options(path);
            options.parse_threads = threads;
            options.read_ahead_bytes = 512 << 10;
            options.max_line_bytes = 8 << 10;
            options.max_batch_lines = 40;
            // 200 ms: batches cut by count, also under the slow sanitizers; 0: cut by count or
            // after a read, whichever comes first (both kinds of cut make reading wrap).
            options.linger = linger;
            std::vector<std::string> got;
            std::mutex got_mutex;
            BatchingTailer<PaddingToucher> tailer(options, PaddingToucher{},
                                                  [&](Batch<std::string_view>& batch) {
                                                      std::lock_guard lock(got_mutex);
                                                      for (auto line : batch.records()) {
                                                          got.emplace_back(line);
                                                      }
                                                  });
            const auto rest = text_of(std::vector(expected.begin() + half, expected.end()));
            if (threads == 3) {  // this one finds the whole file at once
                append(path, rest);
            }
            tailer.start();
            if (threads == 2) {  // this one follows the second half as it is appended
                append(path, rest);
            }
            REQUIRE(eventually([&] {
                std::lock_guard lock(got_mutex);
                return got.size() >= expected.size();
            }));
            tailer.stop();
            // Lines this long are compared here rather than printed whole by Catch on failure.
            CHECK(got.size() == expected.size());
            const auto [differs, _] =
                std::mismatch(got.begin(), got.end(), expected.begin(), expected.end());
            const auto at = static_cast<std::size_t>(differs - got.begin());
            INFO("first difference: line "
                 << at + 1 << ": got '" << got[std::min(at, got.size() - 1)].substr(0, 80)
                 << "', expected '" << expected[std::min(at, expected.size() - 1)].substr(0, 80)
                 << "'");
            CHECK(differs == got.end());
            CHECK(tailer.stats().read_ahead_high_water <= options.read_ahead_bytes);
        }
    }
}

// A batch cut just before the end of what was read has its last line's padding in the bytes the
// next read writes. With parse threads that batch may still be parsed then, and the parser may
// read its padding: the read must wait for it. ThreadSanitizer sees pread() write the buffer
// and PaddingToucher read the padding, and reports the race if they are not ordered.
TEST_CASE("a read never lands in the padding of a line still being parsed", "[tailer][parallel]") {
    TempDir dir;
    const auto path = dir / "app.log";
    // One batch per line; the last complete line of the first 256 KiB read ends 10 bytes
    // before the read's end.
    std::vector<std::string> expected;
    std::size_t bytes = 0;
    for (int i = 0; i < 2594; ++i) {
        expected.push_back(fmt::format("{:05} {}", i, std::string(94, 'p')));
        bytes += expected.back().size() + 1;
    }
    expected.push_back(std::string(262'134 - bytes - 1, 'q'));
    for (int i = 0; i < 400; ++i) {
        expected.push_back(fmt::format("{:05} {}", i, std::string(94, 'r')));
    }
    append(path, text_of(expected));
    auto options = quick_options(path);
    options.parse_threads = 2;
    options.max_batch_lines = 1;
    options.idle_exit = 100ms;
    std::vector<std::string> got;
    BatchingTailer<PaddingToucher> tailer(options, PaddingToucher{},
                                          [&](Batch<std::string_view>& batch) {
                                              for (auto line : batch.records()) {
                                                  got.emplace_back(line);
                                              }
                                          });
    tailer.run(std::stop_token{});
    CHECK(got == expected);
}

namespace {

// Takes ~50 us per line, so that parsing a batch of one read's lines takes far longer than
// reading the next one, even under a sanitizer.
struct SlowParser {
    std::string_view parse(std::string_view line) const {
        const auto until = std::chrono::steady_clock::now() + 50us;
        while (std::chrono::steady_clock::now() < until) {
        }
        return line;
    }
};

}  // namespace

TEST_CASE("with parse threads a zero linger does not cut batches while one is being parsed",
          "[tailer][parallel]") {
    // Catching up with linger 0 used to cut a batch after every read (256 KiB), however busy
    // the parsing threads were; a batch framed while the one before it is still being parsed
    // cannot reach the sink any sooner, so it now grows up to the batch limits instead.
    TempDir dir;
    const auto path = dir / "app.log";
    const auto lines = numbered(std::string(200, 'x'), 1, 6'000);  // ~1.2 MiB
    append(path, text_of(lines));
    auto options = quick_options(path);
    options.linger = 0ms;
    options.parse_threads = 2;
    options.idle_exit = 100ms;
    std::vector<std::string> got;
    std::vector<std::size_t> batch_bytes;
    BatchingTailer<SlowParser> tailer(options, SlowParser{}, [&](Batch<std::string_view>& batch) {
        for (const auto line : batch.records()) {
            got.emplace_back(line);
        }
        batch_bytes.push_back(batch.bytes());
    });
    tailer.run(std::stop_token{});
    CHECK(got == lines);
    INFO("batch bytes: " << fmt::format("{}", fmt::join(batch_bytes, " ")));
    CHECK(std::ranges::max(batch_bytes) > detail::read_chunk_bytes);
    CHECK(std::ranges::max(batch_bytes) <= options.max_batch_bytes);
}
