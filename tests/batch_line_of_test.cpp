// Batch::line_of maps every record back to its line number and file offset, also when lines
// were filtered, threw, or were split, and whichever thread parsed them.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batch.hpp>
#include <snaptail/batching_tailer.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace snaptail;
using namespace snaptail::test;

namespace {

// "n=<int>": the record is the int; lines with '#' are filtered, lines with '!' throw.
struct NumberParser {
    std::optional<int> parse(std::string_view line) const {
        if (line.find('!') != std::string_view::npos) {
            throw std::runtime_error("bang");
        }
        if (line.find('#') != std::string_view::npos) {
            return std::nullopt;
        }
        return std::stoi(std::string(line.substr(2)));
    }
};

}  // namespace

TEST_CASE("Batch::line_of skips the dropped lines before a record", "[batch]") {
    const std::vector<detail::LineRef> lines{{"a", 1, 0}, {"b", 2, 2}, {"c", 3, 4},
                                             {"d", 4, 6}, {"e", 5, 8}, {"f", 6, 10}};
    std::vector<int> records{1, 4, 6};                  // lines 1, 4 and 6 gave records
    const std::vector<std::uint32_t> dropped{1, 2, 4};  // lines 2, 3 and 5 did not
    Batch<int> batch(std::span<int>(records), 1, 6, Position{}, 6,
                     detail::BatchLines{lines, dropped});
    CHECK(batch.line_of(0).line == 1);
    CHECK(batch.line_of(1).line == 4);
    CHECK(batch.line_of(1).offset == 6);
    CHECK(batch.line_of(2).line == 6);
    CHECK(batch.line_of(2).offset == 10);

    const std::vector<std::uint32_t> leading{0, 1};  // the first two dropped
    std::vector<int> rest{3, 4, 5, 6};
    Batch<int> later(std::span<int>(rest), 3, 6, Position{}, 6, detail::BatchLines{lines, leading});
    for (std::size_t i = 0; i < rest.size(); ++i) {
        CHECK(later.line_of(i).line == static_cast<std::uint64_t>(rest[i]));
    }
}

TEST_CASE("every record's line_of names its own line and offset, on one or more threads",
          "[batch][tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    std::string content;
    std::map<int, std::uint64_t> offset_of;  // line number -> offset of its first byte
    constexpr int total = 80'000;            // over 512 KiB: catch-up may read ranges
    for (int i = 1; i <= total; ++i) {
        offset_of[i] = content.size();
        // Runs of dropped lines of several lengths, so that batches start and end with them.
        const bool dropped_run = (i / 7) % 11 == 3;
        if (dropped_run || i % 97 == 0) {
            content += fmt::format("n={}{}\n", i, i % 2 == 0 ? '!' : '#');
        } else {
            content += fmt::format("n={}\n", i);
        }
    }
    append(path, content);
    for (unsigned threads : {1u, 2u, 3u}) {
        DYNAMIC_SECTION("parse_threads=" << threads) {
            auto options = quick_options(path);
            options.parse_threads = threads;
            options.max_batch_lines = 500;
            options.idle_exit = 100ms;
            std::vector<int> got;
            std::size_t mismatches = 0;
            BatchingTailer<NumberParser> tailer(
                options, NumberParser{},
                [&](Batch<int>& batch) {
                    for (std::size_t i = 0; i < batch.size(); ++i) {
                        const int value = batch.records()[i];
                        const LineInfo where = batch.line_of(i);
                        got.push_back(value);
                        if (where.line != static_cast<std::uint64_t>(value) ||
                            where.offset != offset_of[value]) {
                            ++mismatches;
                        }
                    }
                },
                [](const Error&) {});
            tailer.run(std::stop_token{});
            CHECK(mismatches == 0);
            std::vector<int> expected;
            for (int i = 1; i <= total; ++i) {
                if ((i / 7) % 11 != 3 && i % 97 != 0) {
                    expected.push_back(i);
                }
            }
            CHECK(got == expected);
        }
    }
}

TEST_CASE("the pieces of a split line share its number and each has its own offset",
          "[batch][tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const std::string long_line(25, 'x');
    append(path, "short\n" + long_line + "\nend\n");
    auto options = quick_options(path);
    options.max_line_bytes = 10;
    options.read_ahead_bytes = 64;
    options.long_lines = LongLinePolicy::split;
    options.idle_exit = 100ms;
    std::vector<std::pair<std::string, LineInfo>> got;
    BatchingTailer<RawLineParser> tailer(
        options, RawLineParser{},
        [&](Batch<std::string_view>& batch) {
            for (std::size_t i = 0; i < batch.size(); ++i) {
                got.emplace_back(std::string(batch.records()[i]), batch.line_of(i));
            }
        },
        [](const Error&) {});
    tailer.run(std::stop_token{});
    REQUIRE(got.size() == 5);
    const std::vector<std::string> texts{"short", long_line.substr(0, 10), long_line.substr(10, 10),
                                         long_line.substr(20), "end"};
    const std::vector<std::uint64_t> lines{1, 2, 2, 2, 3};
    const std::vector<std::uint64_t> offsets{0, 6, 16, 26, 32};
    for (std::size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].first == texts[i]);
        CHECK(got[i].second.line == lines[i]);
        CHECK(got[i].second.offset == offsets[i]);
    }
}
