// Catching up with parse threads and a parser that keeps up, all threads read the backlog, each a
// piece, and find the line ends of their piece; the tailer's thread strings the lines together.
// Lines across pieces and ranges, "\r\n" split between two pieces, long lines and parse failures
// must come out exactly as ordinary framing makes them. The file is laid out against
// detail::read_chunk_bytes (the piece size), so the same tests put their lines on piece
// boundaries in this binary and in the one built with tiny reads (SNAPTAIL_TEST_READ_CHUNK_BYTES).
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>

#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace snaptail;
using namespace snaptail::test;

namespace {

constexpr std::size_t chunk = detail::read_chunk_bytes;

// Lines with '#' are filtered, lines with '!' throw; every parse reads the line's last padding
// byte, as simdjson may, so that ThreadSanitizer sees a read that writes into it.
struct CheckedParser {
    std::optional<std::string_view> parse(std::string_view line) const {
        touch_padding(line);
        if (line.find('!') != std::string_view::npos) {
            throw std::runtime_error("bang");
        }
        if (line.find('#') != std::string_view::npos) {
            return std::nullopt;
        }
        return line;
    }
};

struct Failure {
    std::uint64_t line;
    std::uint64_t offset;
    auto operator<=>(const Failure&) const = default;
};

// What ordinary framing and CheckedParser make of `content` (every line ends with '\n').
struct Expected {
    std::vector<std::string> records;
    std::vector<Failure> parse_failures;
    std::vector<Failure> long_line_reports;  // truncate and skip report each long line
    std::uint64_t lines{0};
    std::uint64_t long_lines{0};
    std::uint64_t filtered{0};
};

Expected expect(const std::string& content, std::size_t max, LongLinePolicy policy) {
    Expected out;
    std::size_t start = 0;
    while (start < content.size()) {
        const std::size_t newline = content.find('\n', start);
        REQUIRE(newline != std::string::npos);
        const std::uint64_t number = ++out.lines;
        std::string_view text(content.data() + start, newline - start);
        if (!text.empty() && text.back() == '\r') {
            text.remove_suffix(1);
        }
        std::vector<std::string_view> delivered;
        if (text.size() <= max) {
            delivered.push_back(text);
        } else {
            ++out.long_lines;
            if (policy != LongLinePolicy::split) {
                out.long_line_reports.push_back({number, start});
            }
            if (policy == LongLinePolicy::truncate) {
                delivered.push_back(text.substr(0, max));
            } else if (policy == LongLinePolicy::split) {
                for (; text.size() > max; text.remove_prefix(max)) {
                    delivered.push_back(text.substr(0, max));
                }
                delivered.push_back(text);
            }
        }
        for (std::string_view piece : delivered) {
            if (piece.find('!') != std::string_view::npos) {
                out.parse_failures.push_back({number, start});
            } else if (piece.find('#') != std::string_view::npos) {
                ++out.filtered;
            } else {
                out.records.emplace_back(piece);
            }
        }
        start = newline + 1;
    }
    return out;
}

// About `pieces` pieces of a file: lines of random length (some empty, some over `max`, some
// with '#', '!' or a '\r' inside), and at every piece boundary k * chunk either a "\r\n" split
// across it ('\r' the last byte of piece k - 1, '\n' the first of piece k; odd k) or a "\r\n"
// that ends piece k - 1 (even k).
std::string make_content(std::size_t pieces, std::size_t max, std::uint32_t seed) {
    std::string content;
    std::uint32_t state = seed;
    auto next = [&state](std::uint32_t bound) {
        state = state * 1664525u + 1013904223u;
        return (state >> 8) % bound;
    };
    const std::size_t short_max = std::max<std::size_t>(chunk / 16, 8);
    std::uint64_t number = 0;
    for (std::size_t k = 1; k <= pieces; ++k) {
        const std::size_t boundary = k * chunk;
        const std::size_t newline_at = k % 2 == 1 ? boundary : boundary - 1;
        while (content.size() < newline_at) {
            const std::size_t gap = newline_at - content.size();  // bytes before that '\n'
            std::size_t length = next(10) == 0 ? 0 : next(static_cast<std::uint32_t>(short_max));
            if (next(40) == 0) {
                length = max + 1 + next(static_cast<std::uint32_t>(2 * max));  // long
            }
            std::string line = fmt::format("{}:", ++number);
            const char fill = static_cast<char>('a' + number % 26);
            line.append(length, fill);
            if (const auto mark = next(30); mark == 0) {
                line += '#';
            } else if (mark == 1) {
                line += '!';
            } else if (mark == 2) {
                line.insert(line.size() / 2, "\r");
            }
            if (line.size() + 2 + short_max >= gap) {
                // The last line before the boundary: ends with "\r\n" exactly there.
                line = fmt::format("{}:", number);
                line.resize(gap - 1, fill);
                content += line;
                content += "\r\n";
                break;
            }
            content += line;
            content += next(3) == 0 ? "\r\n" : "\n";
        }
    }
    return content;
}

struct Outcome {
    std::vector<std::string> records;
    std::vector<Failure> parse_failures;
    std::vector<Failure> long_line_reports;
    TailerStats stats;
};

// Options for catching up on `path` to its end: "\r\n" stripped, a 16-piece buffer.
TailOptions catch_up_options(const fs::path& path, unsigned threads, std::size_t max,
                             LongLinePolicy policy, std::size_t batch_lines) {
    auto options = quick_options(path);
    options.parse_threads = threads;
    options.strip_cr = true;
    options.max_line_bytes = max;
    options.long_lines = policy;
    options.read_ahead_bytes = 16 * chunk;
    options.max_batch_lines = batch_lines;
    options.idle_exit = 100ms;
    return options;
}

Outcome catch_up(const TailOptions& options) {
    Outcome out;
    ErrorLog errors;
    std::mutex mutex;
    BatchingTailer<CheckedParser> tailer(
        options, CheckedParser{},
        [&](Batch<std::string_view>& batch) {
            std::lock_guard lock(mutex);
            for (std::string_view record : batch.records()) {
                out.records.emplace_back(record);
            }
        },
        errors.handler());
    tailer.run(std::stop_token{});
    for (const auto& error : errors.of(ErrorKind::parse)) {
        out.parse_failures.push_back({error.line, error.offset});
    }
    for (const auto& error : errors.of(ErrorKind::long_line)) {
        out.long_line_reports.push_back({error.line, error.offset});
    }
    out.stats = tailer.stats();
    return out;
}

// Long records are compared here rather than printed whole by Catch on a failure.
void check_same(const std::vector<std::string>& got, const std::vector<std::string>& expected) {
    CHECK(got.size() == expected.size());
    const auto [differs, _] =
        std::mismatch(got.begin(), got.end(), expected.begin(), expected.end());
    if (differs != got.end() && !got.empty() && !expected.empty()) {
        const auto at = static_cast<std::size_t>(differs - got.begin());
        FAIL_CHECK("first difference: record "
                   << at + 1 << ": got '" << got[std::min(at, got.size() - 1)].substr(0, 60)
                   << "', expected '" << expected[std::min(at, expected.size() - 1)].substr(0, 60)
                   << "'");
    }
}

}  // namespace

TEST_CASE("catching up, all parse threads read the backlog and every line arrives as framed",
          "[tailer][parallel][range]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const std::size_t max = chunk / 2;
    const std::string content = make_content(40, max, 7);
    append(path, content);
    for (const auto& [threads, policy] :
         {std::tuple{2u, LongLinePolicy::truncate}, std::tuple{3u, LongLinePolicy::truncate},
          std::tuple{2u, LongLinePolicy::skip}, std::tuple{3u, LongLinePolicy::split}}) {
        DYNAMIC_SECTION("parse_threads=" << threads << " policy=" << static_cast<int>(policy)) {
            const auto options = catch_up_options(path, threads, max, policy, 50);
            const Expected expected = expect(content, max, policy);
            REQUIRE(expected.long_lines > 0);
            REQUIRE(!expected.parse_failures.empty());
            const Outcome got = catch_up(options);
            check_same(got.records, expected.records);
            CHECK(got.parse_failures == expected.parse_failures);
            CHECK(got.long_line_reports == expected.long_line_reports);
            CHECK(got.stats.lines == expected.lines);
            CHECK(got.stats.long_lines == expected.long_lines);
            CHECK(got.stats.filtered == expected.filtered);
            CHECK(got.stats.bytes == content.size());
            CHECK(got.stats.offset == content.size());
            CHECK(got.stats.read_ahead_high_water <= options.read_ahead_bytes);
            CHECK(got.stats.parallel_reads > 0);
        }
    }
}

// A line longer than a range (and one longer than the whole buffer) goes through the ranges
// unended: the policy applies when its end is found, or, for the one that cannot fit, when the
// buffer is full, as in ordinary framing.
TEST_CASE("catching up, lines longer than a range or than the buffer follow the long-line policy",
          "[tailer][parallel][range]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const std::size_t max = 2 * chunk;
    std::string content;
    for (int i = 1; i <= 30; ++i) {
        std::size_t length = 100 + static_cast<std::size_t>(i) * chunk / 7;
        if (i % 5 == 0) {
            length = 5 * chunk + static_cast<std::size_t>(i);  // longer than a range's piece run
        }
        if (i == 12) {
            length = 20 * chunk + 3;  // longer than read_ahead_bytes
        }
        content += fmt::format("{}:", i);
        content.append(length, static_cast<char>('a' + i % 26));
        content += i % 2 == 0 ? "\r\n" : "\n";
    }
    // Enough ordinary lines after them that the backlog is read in ranges again.
    for (int i = 31; i <= 31 + static_cast<int>(chunk / 8); ++i) {
        content += fmt::format("{}:{}\n", i, std::string(static_cast<std::size_t>(i % 40), 'z'));
    }
    append(path, content);
    for (const auto policy :
         {LongLinePolicy::truncate, LongLinePolicy::skip, LongLinePolicy::split}) {
        DYNAMIC_SECTION("policy=" << static_cast<int>(policy)) {
            const auto options = catch_up_options(path, 2, max, policy, 20);
            const Expected expected = expect(content, max, policy);
            const Outcome got = catch_up(options);
            check_same(got.records, expected.records);
            CHECK(got.long_line_reports == expected.long_line_reports);
            CHECK(got.stats.lines == expected.lines);
            CHECK(got.stats.long_lines == expected.long_lines);
            CHECK(got.stats.offset == content.size());
            CHECK(got.stats.parallel_reads > 0);
        }
    }
}

// Live: a file that is written while it is followed gets ranges only when a backlog builds up,
// and the lines that span from one write's range into the next stay whole.
TEST_CASE("following a file that grows in large writes, parallel reads keep lines whole",
          "[tailer][parallel][range]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const std::size_t max = chunk / 2;
    const std::string content = make_content(24, max, 99);
    append(path, "");
    auto options = quick_options(path);
    options.parse_threads = 2;
    options.strip_cr = true;
    options.max_line_bytes = max;
    options.read_ahead_bytes = 16 * chunk;
    options.max_batch_lines = 64;
    ErrorLog errors;
    std::vector<std::string> got;
    std::mutex got_mutex;
    BatchingTailer<CheckedParser> tailer(
        options, CheckedParser{},
        [&](Batch<std::string_view>& batch) {
            std::lock_guard lock(got_mutex);
            for (std::string_view record : batch.records()) {
                got.emplace_back(record);
            }
        },
        errors.handler());
    tailer.start();
    // Writes of 3 pieces and a bit, cut mid-line, so that some lines end in the next write.
    const std::size_t step = 3 * chunk + chunk / 3;
    for (std::size_t at = 0; at < content.size(); at += step) {
        append(path, std::string_view(content).substr(at, step));
    }
    const Expected expected = expect(content, max, LongLinePolicy::truncate);
    REQUIRE(eventually([&] {
        std::lock_guard lock(got_mutex);
        return got.size() >= expected.records.size();
    }));
    REQUIRE(eventually([&] { return tailer.stats().offset == content.size(); }));
    tailer.stop();
    check_same(got, expected.records);
    std::vector<Failure> failures;
    for (const auto& error : errors.of(ErrorKind::parse)) {
        failures.push_back({error.line, error.offset});
    }
    CHECK(failures == expected.parse_failures);
    CHECK(tailer.stats().lines == expected.lines);
}

namespace {

struct Parsed {
    std::string_view text;
    std::thread::id thread;
};

// Lines starting with 's' take 100 us to parse; the others nothing.
struct SometimesSlowParser {
    Parsed parse(std::string_view line) const {
        if (!line.empty() && line.front() == 's') {
            std::this_thread::sleep_for(std::chrono::microseconds{100});
        }
        return {line, std::this_thread::get_id()};
    }
};

}  // namespace

// While parsing keeps up, the tailer's thread parses each batch itself (the others read); once
// a batch takes longer to parse than its lines took to get, parsing goes back to all threads.
// Which thread parsed a line shows which way it went; the lines stay in order either way.
TEST_CASE("catching up, cheap lines are parsed by the tailer's thread and slow ones by all",
          "[tailer][parallel][range]") {
    TempDir dir;
    const auto path = dir / "app.log";
    std::vector<std::string> expected;
    for (int i = 1; i <= 8'000; ++i) {
        const char kind = i > 3'000 && i <= 5'000 ? 's' : 'c';
        expected.push_back(
            fmt::format("{}{:05}{}", kind, i, std::string(static_cast<std::size_t>(i % 500), 'x')));
    }
    append(path, text_of(expected));
    auto options = quick_options(path);
    options.parse_threads = 2;
    options.max_batch_lines = 50;
    options.idle_exit = 100ms;
    std::vector<std::string> got;
    std::vector<std::thread::id> parsed_by;
    std::size_t first_batch = 0;
    std::thread::id sink_thread;
    BatchingTailer<SometimesSlowParser> tailer(options, SometimesSlowParser{},
                                               [&](Batch<Parsed>& batch) {
                                                   sink_thread = std::this_thread::get_id();
                                                   if (first_batch == 0) {
                                                       first_batch = batch.size();
                                                   }
                                                   for (const Parsed& record : batch.records()) {
                                                       got.emplace_back(record.text);
                                                       parsed_by.push_back(record.thread);
                                                   }
                                               });
    tailer.run(std::stop_token{});
    check_same(got, expected);
    REQUIRE(parsed_by.size() == expected.size());
    CHECK(tailer.stats().parallel_reads > 0);
    // The first batch: read in ranges and parsed by the tailer's thread (parsing is taken to
    // keep up until a batch shows otherwise; whether later cheap batches are too depends on
    // timing, so only the first is checked).
    REQUIRE(first_batch > 0);
    const auto first_end = parsed_by.begin() + static_cast<std::ptrdiff_t>(first_batch);
    CHECK(std::all_of(parsed_by.begin(), first_end,
                      [&](std::thread::id id) { return id == sink_thread; }));
    // The slow lines (2,000 of 100 us in batches of 50): parsing went back to both threads.
    CHECK(std::any_of(parsed_by.begin() + 3'000, parsed_by.begin() + 5'000,
                      [&](std::thread::id id) { return id != sink_thread; }));
}

// A line shorter than max_line_bytes but longer than the part of the buffer ranges use (two
// ranges) cannot be read in ranges: the tailer reads on with single reads instead of stopping.
TEST_CASE("catching up, a line longer than the range window is read with single reads",
          "[tailer][parallel][range]") {
    TempDir dir;
    const auto path = dir / "app.log";
    std::vector<std::string> expected{"first", std::string(20 * chunk, 'L')};
    for (int i = 0; i < static_cast<int>(chunk / 8); ++i) {
        expected.push_back(fmt::format("line-{}", i));
    }
    append(path, text_of(expected));
    auto options = quick_options(path);
    options.parse_threads = 2;  // ranges of 8 pieces, in a window of two: 16 * chunk
    options.max_line_bytes = 40 * chunk;
    options.read_ahead_bytes = 64 * chunk;
    options.idle_exit = 300ms;
    Collector collector;
    BatchingTailer<RawLineParser> tailer(options, RawLineParser{}, collector.sink());
    tailer.run(std::stop_token{});
    check_same(collector.lines(), expected);
    CHECK(tailer.stats().offset == text_of(expected).size());
    CHECK(tailer.stats().parallel_reads > 0);
}

// The ahead range goes where the batch in flight may still have its last line's padding: a
// batch the pool parses (parsing stopped keeping up) that ends within line_padding of the end of
// a range shorter than line_padding (the backlog ran out while a writer appended). The next range
// must wait for that batch. Laid out for 256-byte pieces (ranges of 2 KiB), with sleeps in the
// parser and the sink that make those cuts happen; ThreadSanitizer reports the race otherwise.
TEST_CASE("catching up, a range is not read into the padding of a batch the pool is parsing",
          "[tailer][parallel][range]") {
    if constexpr (chunk != 256) {
        SUCCEED("laid out for 256-byte reads: runs in snaptail_small_read_tests");
        return;
    }
    struct SlowInPlaces {
        const fs::path* path;
        std::atomic<bool>* appended;
        std::string_view parse(std::string_view line) const {
            if (!line.empty() && (line[0] == 'L' || line[0] == 'y')) {
                std::this_thread::sleep_for(std::chrono::milliseconds(line[0] == 'L' ? 2 : 1));
            }
            touch_padding(line);
            if (!line.empty() && line[0] == 's' && !appended->exchange(true)) {
                std::this_thread::sleep_for(std::chrono::milliseconds(3));
                std::string more;
                for (int i = 0; i < 400; ++i) {
                    more += fmt::format("more-{}\n", i);
                }
                append(*path, more);
            }
            return line;
        }
    };
    for (int round = 0; round < 5; ++round) {
        TempDir dir;
        const auto path = dir / "app.log";
        std::atomic<bool> appended{false};
        std::string content;
        for (int n = 1; content.size() < 1900; ++n) {
            content += fmt::format("c{}\n", n);
        }
        std::string slow = "s";
        slow.resize(1983 - content.size(), 'x');  // ends just before 1984 = 2048 - line_padding
        content += slow + "\ny\nz\n";
        std::string long_one = "L";
        long_one.resize(2047 - content.size(), 'l');               // ends the first range (2 KiB)
        content += long_one + "\n" + std::string(29, 'r') + "\n";  // a 30-byte range follows
        append(path, content);
        auto options = quick_options(path);
        options.parse_threads = 2;
        options.max_batch_lines = 1;
        options.max_line_bytes = 1000;
        options.read_ahead_bytes = 64 << 10;
        options.poll_interval = 5ms;
        options.idle_exit = 100ms;
        std::vector<std::string> got;
        BatchingTailer<SlowInPlaces> tailer(options, SlowInPlaces{&path, &appended},
                                            [&](Batch<std::string_view>& batch) {
                                                for (std::string_view record : batch.records()) {
                                                    got.emplace_back(record);
                                                    if (record == "y" || record == "z") {
                                                        std::this_thread::sleep_for(1ms);
                                                    }
                                                }
                                            });
        tailer.run(std::stop_token{});
        std::string all = content;
        for (int i = 0; i < 400; ++i) {
            all += fmt::format("more-{}\n", i);
        }
        REQUIRE(appended);
        std::vector<std::string> expected;
        for (std::size_t start = 0, end; (end = all.find('\n', start)) != std::string::npos;
             start = end + 1) {
            expected.push_back(all.substr(start, end - start));
        }
        check_same(got, expected);
    }
}
