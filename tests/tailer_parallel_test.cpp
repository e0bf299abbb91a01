// parse_threads > 1: lines are parsed in slices on several threads; the sink still sees
// records in file order, and errors and filtered lines keep their exact line numbers.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>

#include <memory>
#include <optional>
#include <stdexcept>

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
