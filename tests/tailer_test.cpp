// BatchingTailer on one file that is not rotated: framing, parsing, batching, stop, errors.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>

using namespace snaptail;
using namespace snaptail::test;

using Tailer = BatchingTailer<RawLineParser>;

TEST_CASE("tailer reads the existing lines, then lines appended later", "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, text_of(numbered("old", 1, 100)));
    Collector got;
    Tailer tailer(quick_options(path), RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(100));
    append(path, text_of(numbered("new", 1, 50)));
    REQUIRE(got.wait_for_lines(150));
    tailer.stop();
    CHECK(got.lines() == concat(numbered("old", 1, 100), numbered("new", 1, 50)));
    const auto stats = tailer.stats();
    CHECK(stats.lines == 150);
    CHECK(stats.records == 150);
    CHECK(stats.offset == std::filesystem::file_size(path));
}

TEST_CASE("an incomplete line is held until its newline arrives, then delivered whole once",
          "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, "first\nsec");
    Collector got;
    Tailer tailer(quick_options(path), RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(1));
    append(path, "ond half");
    // The tailer has seen the partial bytes once its pending count covers them.
    REQUIRE(eventually([&] { return tailer.stats().pending_bytes == 11; }));
    CHECK(got.lines() == std::vector<std::string>{"first"});
    append(path, "\nthird\n");
    REQUIRE(got.wait_for_lines(3));
    tailer.stop();
    CHECK(got.lines() == std::vector<std::string>{"first", "second half", "third"});
}

TEST_CASE("StartAt::end skips existing lines but keeps true line numbers", "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, text_of(numbered("old", 1, 10)) + "unfinished");
    Collector got;
    auto options = quick_options(path);
    options.start = StartAt::end;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(eventually([&] { return tailer.stats().pending_bytes == 10; }));
    append(path, " line\nnew-1\n");
    REQUIRE(got.wait_for_lines(2));
    tailer.stop();
    // The line being written when the tailer started is delivered whole, not cut.
    CHECK(got.lines() == std::vector<std::string>{"unfinished line", "new-1"});
    const auto batches = got.batches();
    REQUIRE(!batches.empty());
    CHECK(batches.front().first_line == 11);
    CHECK(batches.back().last_line == 12);
}

TEST_CASE("CRLF is stripped, and NUL bytes, lone CRs and invalid UTF-8 pass through untouched",
          "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const std::string nul_line("a\0b\0", 4);
    const std::string bad_utf8 = "\xff\xfe\xc3(";
    append(path, "dos\r\n" + nul_line + "\n" + bad_utf8 + "\nmid\rdle\n\n\r\n");
    SECTION("strip_cr on") {
        Collector got;
        Tailer tailer(quick_options(path), RawLineParser{}, got.sink());
        tailer.start();
        REQUIRE(got.wait_for_lines(6));
        tailer.stop();
        CHECK(got.lines() ==
              std::vector<std::string>{"dos", nul_line, bad_utf8, "mid\rdle", "", ""});
    }
    SECTION("strip_cr off") {
        Collector got;
        auto options = quick_options(path);
        options.strip_cr = false;
        Tailer tailer(options, RawLineParser{}, got.sink());
        tailer.start();
        REQUIRE(got.wait_for_lines(6));
        tailer.stop();
        CHECK(got.lines() ==
              std::vector<std::string>{"dos\r", nul_line, bad_utf8, "mid\rdle", "", "\r"});
    }
}

TEST_CASE("long lines are truncated, skipped or split, and counted", "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const std::string giant(10'000, 'x');
    const std::string exact(16, 'e');
    append(path, "short\n" + giant + "\n" + exact + "\nafter\n");
    auto options = quick_options(path);
    options.max_line_bytes = 16;
    options.read_ahead_bytes = 4096;  // the giant line is bigger than the whole buffer
    ErrorLog errors;
    Collector got;
    std::vector<std::string> expected;
    std::size_t expected_reports = 1;
    SECTION("truncate") {
        options.long_lines = LongLinePolicy::truncate;
        expected = {"short", std::string(16, 'x'), exact, "after"};
    }
    SECTION("skip") {
        options.long_lines = LongLinePolicy::skip;
        expected = {"short", exact, "after"};
    }
    SECTION("split") {
        options.long_lines = LongLinePolicy::split;
        expected = {"short"};
        for (std::size_t i = 0; i < giant.size(); i += 16) {
            expected.push_back(giant.substr(i, 16));
        }
        expected.insert(expected.end(), {exact, "after"});
        expected_reports = 0;  // nothing is lost, so nothing is reported
    }
    Tailer tailer(options, RawLineParser{}, got.sink(), errors.handler());
    tailer.start();
    REQUIRE(got.wait_for_lines(expected.size()));
    tailer.stop();
    CHECK(got.lines() == expected);
    const auto stats = tailer.stats();
    CHECK(stats.long_lines == 1);
    CHECK(stats.lines == 4);
    const auto reports = errors.of(ErrorKind::long_line);
    REQUIRE(reports.size() == expected_reports);
    if (expected_reports == 1) {
        CHECK(reports[0].line == 2);
        CHECK(reports[0].offset == 6);
    }
}

namespace {

// Throws for lines starting with "boom", drops lines starting with "#".
struct PickyParser {
    std::optional<std::string_view> parse(std::string_view line) const {
        if (line.starts_with("boom")) {
            throw std::runtime_error("cannot parse '" + std::string(line) + "'");
        }
        if (line.starts_with("#")) {
            return std::nullopt;
        }
        return line;
    }
};

}  // namespace

TEST_CASE("a throwing parser loses only its line, reported with line number and offset",
          "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, "one\n# comment\nboom here\ntwo\n");
    ErrorLog errors;
    Collector got;
    BatchingTailer<PickyParser> tailer(quick_options(path), PickyParser{}, got.sink(),
                                       errors.handler());
    tailer.start();
    REQUIRE(got.wait_for_lines(2));
    tailer.stop();
    CHECK(got.lines() == std::vector<std::string>{"one", "two"});
    const auto parse_errors = errors.of(ErrorKind::parse);
    REQUIRE(parse_errors.size() == 1);
    CHECK(parse_errors[0].line == 3);
    CHECK(parse_errors[0].offset == 14);
    CHECK(parse_errors[0].path == path.string());
    CHECK_THAT(parse_errors[0].message, has_substring("cannot parse 'boom here'"));
    const auto stats = tailer.stats();
    CHECK(stats.parse_errors == 1);
    CHECK(stats.filtered == 1);
    CHECK(stats.lines == 4);
    CHECK(stats.records == 2);
}

TEST_CASE("batches respect max_batch_lines and carry line numbers and end positions", "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const auto lines = numbered("row", 1, 25);  // "row-1".."row-9" are 5 bytes, then 6
    append(path, text_of(lines));
    auto options = quick_options(path);
    options.max_batch_lines = 10;
    options.linger = 10s;  // only count and stop cut batches here
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(20));
    tailer.stop();  // delivers the last 5 lines
    CHECK(got.lines() == lines);
    const auto batches = got.batches();
    REQUIRE(batches.size() == 3);
    const std::uint64_t after_10 = 9 * 6 + 7;
    const std::uint64_t after_20 = after_10 + 10 * 7;
    CHECK(batches[0].first_line == 1);
    CHECK(batches[0].last_line == 10);
    CHECK(batches[0].end.offset == after_10);
    CHECK(batches[0].end.line == 10);
    CHECK(batches[1].first_line == 11);
    CHECK(batches[1].last_line == 20);
    CHECK(batches[1].end.offset == after_20);
    CHECK(batches[2].first_line == 21);
    CHECK(batches[2].last_line == 25);
    CHECK(batches[2].end.offset == std::filesystem::file_size(path));
    CHECK(batches[2].end.file == batches[0].end.file);
}

TEST_CASE("max_batch_bytes cuts batches by content size", "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, text_of({"aaaa", "bbbb", "cccc", "dddd", "eeee"}));
    auto options = quick_options(path);
    options.max_batch_bytes = 8;
    options.linger = 10s;
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(4));
    tailer.stop();
    const auto batches = got.batches();
    REQUIRE(batches.size() == 3);
    CHECK(batches[0].size == 2);
    CHECK(batches[1].size == 2);
    CHECK(batches[2].size == 1);
    CHECK(got.lines() == std::vector<std::string>{"aaaa", "bbbb", "cccc", "dddd", "eeee"});
}

TEST_CASE("stop() delivers the complete lines already read, and not an incomplete one",
          "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, text_of(numbered("line", 1, 30)) + "incomplete");
    auto options = quick_options(path);
    options.linger = 1h;  // nothing is delivered before stop
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(eventually([&] { return tailer.stats().pending_bytes > 0; }));
    REQUIRE(eventually([&] { return tailer.stats().lines == 30; }));
    CHECK(got.lines().empty());
    tailer.stop();
    CHECK(got.lines() == numbered("line", 1, 30));
    CHECK(tailer.stats().pending_bytes == 10);
}

TEST_CASE("a sink that throws is retried until it succeeds: every line once, in order",
          "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, text_of(numbered("line", 1, 40)));
    auto options = quick_options(path);
    options.max_batch_lines = 10;
    ErrorLog errors;
    Collector got;
    int failures_left = 3;
    got.before_batch = [&](Batch<std::string_view>&) {
        if (failures_left > 0) {
            --failures_left;
            throw std::runtime_error("downstream unavailable");
        }
    };
    Tailer tailer(options, RawLineParser{}, got.sink(), errors.handler());
    tailer.start();
    REQUIRE(got.wait_for_lines(40));
    tailer.stop();
    CHECK(got.lines() == numbered("line", 1, 40));
    const auto sink_errors = errors.of(ErrorKind::sink);
    REQUIRE(sink_errors.size() == 3);
    CHECK_THAT(sink_errors[0].message, has_substring("downstream unavailable"));
    CHECK(tailer.stats().sink_errors == 3);
    CHECK(tailer.stats().skipped_batches == 0);
}

TEST_CASE("sink_max_attempts gives up on a batch, and says which lines", "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, text_of(numbered("line", 1, 3)));
    auto options = quick_options(path);
    options.sink_max_attempts = 2;
    ErrorLog errors;
    Collector got;
    std::atomic<bool> fail{true};
    got.before_batch = [&](Batch<std::string_view>&) {
        if (fail) {
            throw std::runtime_error("rejected");
        }
    };
    Tailer tailer(options, RawLineParser{}, got.sink(), errors.handler());
    tailer.start();
    REQUIRE(errors.wait_for(ErrorKind::sink_gave_up));
    REQUIRE(eventually([&] { return tailer.stats().skipped_batches == 1; }));
    fail = false;
    append(path, "line-4\n");
    REQUIRE(got.wait_for_lines(1));
    tailer.stop();
    CHECK(got.lines() == std::vector<std::string>{"line-4"});
    const auto gave_up = errors.of(ErrorKind::sink_gave_up);
    REQUIRE(gave_up.size() == 1);
    CHECK_THAT(gave_up[0].message, has_substring("lines 1-3"));
    CHECK(tailer.stats().skipped_records == 3);
}

TEST_CASE("a directory at the path is reported and retried, and a file there later is read",
          "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    std::filesystem::create_directory(path);
    ErrorLog errors;
    Collector got;
    Tailer tailer(quick_options(path), RawLineParser{}, got.sink(), errors.handler());
    tailer.start();
    REQUIRE(errors.wait_for(ErrorKind::not_a_file));
    const auto reported = errors.of(ErrorKind::not_a_file).front();
    CHECK(reported.path == path.string());
    CHECK_THAT(reported.message, has_substring("directory"));
    std::filesystem::remove(path);
    append(path, "finally a file\n");
    REQUIRE(got.wait_for_lines(1));
    tailer.stop();
    CHECK(got.lines() == std::vector<std::string>{"finally a file"});
    CHECK(tailer.running() == false);
}

TEST_CASE("polling without inotify follows appends", "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    auto options = quick_options(path);
    options.use_inotify = false;
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    append(path, text_of(numbered("a", 1, 5)));
    REQUIRE(got.wait_for_lines(5));
    append(path, text_of(numbered("b", 1, 5)));
    REQUIRE(got.wait_for_lines(10));
    tailer.stop();
    CHECK(got.lines() == concat(numbered("a", 1, 5), numbered("b", 1, 5)));
}

// Skipped lines leave nothing to deliver, so no batch carries the position past them: when they
// come after the last delivered batch, the position must still move once nothing more comes
// (the next read releases them), or the checkpoint stays before them and idle_exit never fires.
TEST_CASE("skipped long lines at the end of the file move the position and let idle_exit end",
          "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const std::string head = "a\nb\n";
    const std::string tail = std::string(100, 'x') + "\n" + std::string(50, 'y') + "\n";
    auto options = quick_options(path);
    options.max_line_bytes = 16;
    options.long_lines = LongLinePolicy::skip;
    options.idle_exit = 300ms;
    options.checkpoint_path = dir / "app.checkpoint";
    for (unsigned threads : {1u, 2u}) {
        INFO("parse_threads=" << threads);
        std::filesystem::remove(path);
        std::filesystem::remove(*options.checkpoint_path);
        append(path, head);
        options.parse_threads = threads;
        Collector got;
        Tailer tailer(options, RawLineParser{}, got.sink());
        tailer.start();
        REQUIRE(got.wait_for_lines(2));
        append(path, tail);  // well within idle_exit of the last input
        const bool ended = eventually([&] { return !tailer.running(); });
        tailer.stop();
        CHECK(ended);
        CHECK(got.lines() == std::vector<std::string>{"a", "b"});
        const auto saved = CheckpointStore(*options.checkpoint_path).load();
        REQUIRE(saved.has_value());
        CHECK(saved->offset == head.size() + tail.size());
        CHECK(saved->line == 4);
    }
}

TEST_CASE("run() in the caller's thread returns after idle_exit once all is delivered",
          "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, text_of(numbered("x", 1, 1000)));
    auto options = quick_options(path);
    options.idle_exit = 100ms;
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.run(std::stop_token{});
    CHECK(got.lines() == numbered("x", 1, 1000));
}

TEST_CASE("records view the line with line_padding readable bytes after it", "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, "x\n");
    std::vector<std::string> seen;
    auto options = quick_options(path);
    options.idle_exit = 50ms;
    Tailer tailer(options, RawLineParser{}, [&](Batch<std::string_view>& batch) {
        for (std::string_view line : batch.records()) {
            // Reading the padding must be valid (ASan checks it); its content is unspecified.
            std::string_view padded(line.data(), line.size() + line_padding);
            std::size_t sum = 0;
            for (char c : padded) {
                sum += static_cast<unsigned char>(c);
            }
            seen.emplace_back(padded.substr(0, line.size()));
            CHECK(sum >= static_cast<unsigned char>('x'));
        }
    });
    tailer.run(std::stop_token{});
    CHECK(seen == std::vector<std::string>{"x"});
}

TEST_CASE("invalid options are rejected naming the option and the value", "[tailer]") {
    auto rejects = [](TailOptions options, std::string_view expected) {
        try {
            Tailer tailer(std::move(options), RawLineParser{}, [](Batch<std::string_view>&) {});
        } catch (const InvalidOptions& e) {
            return std::string_view(e.what()).find(expected) != std::string_view::npos;
        }
        return false;
    };
    TailOptions base;
    base.path = "/tmp/x.log";
    auto with = [&](auto change) {
        TailOptions o = base;
        change(o);
        return o;
    };
    CHECK(rejects(with([](auto& o) { o.path.clear(); }), "TailOptions::path"));
    CHECK(rejects(with([](auto& o) { o.max_batch_lines = 0; }), "max_batch_lines = 0"));
    CHECK(rejects(with([](auto& o) { o.max_batch_bytes = 0; }), "max_batch_bytes = 0"));
    CHECK(rejects(with([](auto& o) { o.read_ahead_bytes = 1000; }), "read_ahead_bytes = 1000"));
    CHECK(rejects(with([](auto& o) { o.poll_interval = 0ms; }), "poll_interval = 0ms"));
    CHECK(rejects(with([](auto& o) { o.linger = -1ms; }), "linger = -1ms"));
    CHECK(rejects(with([](auto& o) { o.sink_retry_max = 1ms; }), "sink_retry_max = 1ms"));
    CHECK_FALSE(rejects(base, "TailOptions"));
    CHECK_THROWS_AS(Tailer(base, RawLineParser{}, nullptr), InvalidOptions);
}

TEST_CASE("stats are formatted with fmt", "[tailer]") {
    TailerStats stats;
    stats.lines = 7;
    stats.rotations = 2;
    stats.current_file = "/var/log/x.log";
    const std::string text = fmt::format("{}", stats);
    CHECK_THAT(text, has_substring("lines=7"));
    CHECK_THAT(text, has_substring("rotations=2"));
    CHECK_THAT(text, has_substring("file=/var/log/x.log"));
}

TEST_CASE("start() then join() waits for an idle_exit run, and running() is true from start()",
          "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, text_of(numbered("j", 1, 20)));
    auto options = quick_options(path);
    options.idle_exit = 50ms;
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    CHECK(tailer.running());
    CHECK_THROWS_AS(tailer.start(), std::logic_error);
    tailer.join();
    CHECK_FALSE(tailer.running());
    CHECK(got.lines() == numbered("j", 1, 20));
    append(path, "again\n");
    tailer.start();  // a finished run may be started again, from where it was
    tailer.join();
    CHECK(got.lines() == concat(numbered("j", 1, 20), std::vector<std::string>{"again"}));
}

TEST_CASE("a 100 MiB line without a newline is truncated in bounded memory", "[tailer]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const std::string giant(100 << 20, 'g');
    append(path, "before\n" + giant);
    auto options = quick_options(path);  // max_line_bytes 1 MiB, read_ahead_bytes 8 MiB
    ErrorLog errors;
    std::vector<std::size_t> sizes;
    std::vector<std::string> small;
    std::mutex mutex;
    std::condition_variable changed;
    BatchingTailer<RawLineParser> tailer(
        options, RawLineParser{},
        [&](Batch<std::string_view>& batch) {
            std::lock_guard lock(mutex);
            for (std::string_view line : batch.records()) {
                sizes.push_back(line.size());
                if (line.size() < 100) {
                    small.emplace_back(line);
                } else if (line.find_first_not_of('g') != std::string_view::npos) {
                    small.emplace_back("corrupted giant line");
                }
            }
            changed.notify_all();
        },
        errors.handler());
    tailer.start();
    REQUIRE(errors.wait_for(ErrorKind::long_line));
    REQUIRE(eventually([&] { return tailer.stats().bytes == 7 + giant.size(); }));
    append(path, "tail of the giant\nafter\n");
    {
        std::unique_lock lock(mutex);
        REQUIRE(changed.wait_for(lock, deadline, [&] { return sizes.size() == 3; }));
    }
    tailer.stop();
    CHECK(sizes == std::vector<std::size_t>{6, options.max_line_bytes, 5});
    CHECK(small == std::vector<std::string>{"before", "after"});
    const auto stats = tailer.stats();
    CHECK(stats.long_lines == 1);
    CHECK(stats.lines == 3);
    CHECK(stats.read_ahead_high_water <= options.read_ahead_bytes);
    const auto reported = errors.of(ErrorKind::long_line);
    REQUIRE(reported.size() == 1);
    CHECK(reported[0].line == 2);
    CHECK(reported[0].offset == 7);
}
