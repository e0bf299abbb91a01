// Many files, one memory budget: read_ahead_bytes bounds the whole tailer. Readers borrow a
// window while they have lines in flight and give it back when they rest.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>

#include <random>
#include <thread>

using namespace snaptail;
using namespace snaptail::test;

using Tailer = BatchingTailer<RawLineParser>;

namespace {

constexpr std::size_t budget = 64 * 1024;
constexpr std::size_t max_line = 8 * 1024;

// A line of `length` bytes that names its file and number, padded with a letter.
std::string make_line(int file, int number, std::size_t length) {
    std::string line = "f" + std::to_string(file) + "-" + std::to_string(number) + ":";
    if (line.size() < length) {
        line.append(length - line.size(), static_cast<char>('a' + number % 26));
    }
    return line;
}

// What the policy makes of one line.
void expect(std::vector<std::string>& out, const std::string& line, LongLinePolicy policy) {
    if (line.size() <= max_line) {
        out.push_back(line);
        return;
    }
    switch (policy) {
        case LongLinePolicy::truncate:
            out.push_back(line.substr(0, max_line));
            return;
        case LongLinePolicy::skip:
            return;
        case LongLinePolicy::split:
            for (std::size_t at = 0; at < line.size(); at += max_line) {
                out.push_back(line.substr(at, max_line));
            }
            return;
    }
}

}  // namespace

TEST_CASE("100 files under a 64 KiB budget: every line, per file in order, as the policy says",
          "[budget][file_set][all_files]") {
    for (auto policy : {LongLinePolicy::truncate, LongLinePolicy::skip, LongLinePolicy::split}) {
        for (unsigned threads : {1u, 2u}) {
            DYNAMIC_SECTION("policy " << static_cast<int>(policy) << ", parse threads "
                                      << threads) {
                TempDir dir;
                std::mt19937 rng(threads * 10 + static_cast<unsigned>(policy));
                std::vector<std::vector<std::string>> expected(100);
                std::size_t long_lines = 0;
                for (int f = 0; f < 100; ++f) {
                    std::string content;
                    const int lines = 5 + static_cast<int>(rng() % 40);
                    for (int n = 1; n <= lines; ++n) {
                        // Mostly short lines, some up to the limit, a few over it.
                        const std::size_t length = n % 17 == 0  ? max_line + 1 + rng() % 20000
                                                   : n % 5 == 0 ? max_line - rng() % 16
                                                                : 1 + rng() % 300;
                        const std::string line = make_line(f, n, length);
                        content += line + "\n";
                        long_lines += line.size() > max_line ? 1 : 0;
                        expect(expected[static_cast<std::size_t>(f)], line, policy);
                    }
                    append(dir / ("f" + std::to_string(f) + ".log"), content);
                }
                auto options = quick_set_options(dir.path(), "*.log", FollowMode::all_files);
                options.read_ahead_bytes = budget;
                options.max_line_bytes = max_line;
                options.long_lines = policy;
                options.parse_threads = threads;
                options.max_batch_lines = 7;
                options.idle_exit = 200ms;
                Collector got;
                ErrorLog errors;
                Tailer tailer(options, RawLineParser{}, got.sink(), errors.handler());
                tailer.run(std::stop_token{});
                // Each line over the limit is reported with its file (split lines are not).
                CHECK(errors.of(ErrorKind::long_line).size() ==
                      (policy == LongLinePolicy::split ? 0 : long_lines));
                for (int f = 0; f < 100; ++f) {
                    INFO("file " << f);
                    CHECK(got.lines_of(dir / ("f" + std::to_string(f) + ".log")) ==
                          expected[static_cast<std::size_t>(f)]);
                }
                const auto stats = tailer.stats();
                CHECK(stats.budget_high_water <= budget);
                CHECK(stats.budget_high_water > 0);
                CHECK(stats.long_lines == long_lines);
            }
        }
    }
}

TEST_CASE("a file whose batches make the sink slow: the others still progress, no deadlock",
          "[budget][file_set][all_files]") {
    TempDir dir;
    std::string slow_content;
    for (int n = 1; n <= 400; ++n) {
        slow_content += make_line(0, n, 200) + "\n";
    }
    append(dir / "slow.log", slow_content);
    auto options = quick_set_options(dir.path(), "*.log", FollowMode::all_files);
    options.read_ahead_bytes = budget;
    options.max_line_bytes = max_line;
    options.max_batch_lines = 20;
    options.parse_threads = 2;
    Collector got;
    got.before_batch = [](Batch<std::string_view>& batch) {
        if (batch.path().ends_with("slow.log")) {
            std::this_thread::sleep_for(20ms);
        }
    };
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    // While the slow file's backlog is being delivered, other files are written and come out.
    std::size_t total = 400;
    for (int round = 1; round <= 5; ++round) {
        for (int f = 1; f <= 10; ++f) {
            append(dir / ("fast" + std::to_string(f) + ".log"), make_line(f, round, 50) + "\n");
            ++total;
        }
    }
    REQUIRE(got.wait_for_lines(total));
    tailer.stop();
    std::vector<std::string> slow_expected;
    for (int n = 1; n <= 400; ++n) {
        slow_expected.push_back(make_line(0, n, 200));
    }
    CHECK(got.lines_of(dir / "slow.log") == slow_expected);
    for (int f = 1; f <= 10; ++f) {
        std::vector<std::string> expected;
        for (int round = 1; round <= 5; ++round) {
            expected.push_back(make_line(f, round, 50));
        }
        CHECK(got.lines_of(dir / ("fast" + std::to_string(f) + ".log")) == expected);
    }
    // The fast files' lines did not wait for the end of the slow file's backlog.
    const auto lines = got.lines_with_paths();
    std::size_t last_fast = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (!lines[i].first.ends_with("slow.log")) {
            last_fast = i;
        }
    }
    CHECK(last_fast < lines.size() - 1);
    CHECK(tailer.stats().budget_high_water <= budget);
}

TEST_CASE("all files: the budget must hold two windows of a longest line", "[budget][options]") {
    TempDir dir;
    auto options = quick_set_options(dir.path(), "*.log", FollowMode::all_files);
    options.read_ahead_bytes = 64 * 1024;
    options.max_line_bytes = 40 * 1024;
    CHECK_THROWS_WITH(validate(options), has_substring("splits it into two windows"));
    options.files->mode = FollowMode::newest;
    CHECK_NOTHROW(validate(options));
}
