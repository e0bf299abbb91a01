// Following a directory of rolling files, newest first: the exchange node's hourly layout
// (hourly/{date}/{hour}, hours without zero padding, a new date folder at midnight).
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>
#include <snaptail/checkpoint_store.hpp>

#include <thread>

using namespace snaptail;
using namespace snaptail::test;

using Tailer = BatchingTailer<RawLineParser>;

namespace {

// hourly/<date>/<hour>, as the node names them.
fs::path hour_file(const TempDir& dir, int date, int hour) {
    return dir / "hourly" / std::to_string(date) / std::to_string(hour);
}

void write_hour(const TempDir& dir, int date, int hour, int first, int last) {
    fs::create_directories(hour_file(dir, date, hour).parent_path());
    append(hour_file(dir, date, hour),
           text_of(numbered(std::to_string(date) + "/" + std::to_string(hour), first, last)));
}

std::vector<std::string> hour_lines(int date, int hour, int first, int last) {
    return numbered(std::to_string(date) + "/" + std::to_string(hour), first, last);
}

TailOptions hourly_options(const TempDir& dir) {
    auto options = quick_set_options(dir.path(), "hourly/*/*");
    options.checkpoint_path = dir / "set.ck";
    return options;
}

std::vector<std::string> run_once(TailOptions options, ErrorLog* errors = nullptr,
                                  Collector* collector = nullptr) {
    options.idle_exit = 150ms;
    Collector local;
    Collector& got = collector != nullptr ? *collector : local;
    Tailer tailer(options, RawLineParser{}, got.sink(),
                  errors != nullptr ? errors->handler() : ErrorHandler{});
    tailer.run(std::stop_token{});
    return got.lines();
}

}  // namespace

TEST_CASE("file set options: exactly one of path and files, and a usable pattern",
          "[file_set][options]") {
    TempDir dir;
    auto both = quick_set_options(dir.path(), "*.log");
    both.path = dir / "app.log";
    CHECK_THROWS_WITH(validate(both),
                      has_substring("give either a path or a file set (TailOptions::files)"));
    TailOptions none;
    CHECK_THROWS_WITH(validate(none), has_substring("a path to follow is required"));
    auto no_root = quick_set_options("", "*.log");
    CHECK_THROWS_WITH(validate(no_root), has_substring("files.root"));
    auto absolute = quick_set_options(dir.path(), "/var/log/*.log");
    CHECK_THROWS_WITH(validate(absolute), has_substring("files.glob = /var/log/*.log"));
    auto deep = quick_set_options(dir.path(), "logs/**/x");
    CHECK_THROWS_WITH(validate(deep), has_substring("part '**' is not supported"));
    auto rotated = quick_set_options(dir.path(), "*.log");
    rotated.rotated_glob = "*.1";
    CHECK_THROWS_WITH(validate(rotated), has_substring("rotated_glob"));
    CHECK_NOTHROW(validate(quick_set_options(dir.path(), "hourly/*/*")));
}

TEST_CASE("follow newest reads the hourly files in natural order, each batch from one file",
          "[file_set][newest]") {
    TempDir dir;
    for (int hour : {8, 9, 10, 11}) {
        write_hour(dir, 20261204, hour, 1, 30);
    }
    write_hour(dir, 20261205, 0, 1, 30);
    Collector got;
    auto options = hourly_options(dir);
    options.max_batch_lines = 7;
    run_once(options, nullptr, &got);
    std::vector<std::string> expected;
    for (int hour : {8, 9, 10, 11}) {
        expected = concat(expected, hour_lines(20261204, hour, 1, 30));
    }
    expected = concat(expected, hour_lines(20261205, 0, 1, 30));
    CHECK(got.lines() == expected);
    for (const auto& batch : got.batches()) {
        // Every line of a batch carries its file's name: a batch never spans two files.
        const auto name = fs::path(batch.path).lexically_relative(dir / "hourly").string();
        CHECK(batch.first_line >= 1);
        CHECK(batch.last_line <= 30);
        CHECK(batch.size <= 7);
        CHECK((name.starts_with("20261204/") || name.starts_with("20261205/")));
    }
    for (int hour : {8, 9, 10, 11}) {
        CHECK(got.lines_of(hour_file(dir, 20261204, hour)) == hour_lines(20261204, hour, 1, 30));
    }
}

TEST_CASE("live: an hour file, the next hour, and a new date folder at midnight",
          "[file_set][newest][live]") {
    for (bool inotify : {true, false}) {
        DYNAMIC_SECTION("use_inotify=" << inotify) {
            TempDir dir;
            fs::create_directories(dir / "hourly");
            auto options = hourly_options(dir);
            options.use_inotify = inotify;
            Collector got;
            ErrorLog errors;
            Tailer tailer(options, RawLineParser{}, got.sink(), errors.handler());
            tailer.start();
            write_hour(dir, 20261204, 22, 1, 50);
            REQUIRE(got.wait_for_lines(50));
            write_hour(dir, 20261204, 22, 51, 60);
            write_hour(dir, 20261204, 23, 1, 40);  // the next hour starts
            REQUIRE(got.wait_for_lines(100));
            write_hour(dir, 20261205, 0, 1, 40);  // midnight: a new date folder
            REQUIRE(got.wait_for_lines(140));
            write_hour(dir, 20261205, 0, 41, 45);
            REQUIRE(got.wait_for_lines(145));
            tailer.stop();
            CHECK(got.lines() == concat(hour_lines(20261204, 22, 1, 60),
                                        hour_lines(20261204, 23, 1, 40),
                                        hour_lines(20261205, 0, 1, 45)));
            CHECK(errors.of(ErrorKind::gap).empty());
            const auto stats = tailer.stats();
            CHECK(stats.files_done == 2);
            CHECK(stats.files_found == 3);
            CHECK(stats.current_file == hour_file(dir, 20261205, 0).string());
        }
    }
}

TEST_CASE("late writes to the previous hour within rotate_wait are read before moving on",
          "[file_set][newest][live]") {
    TempDir dir;
    auto options = hourly_options(dir);
    options.rotate_wait = 2s;  // generous: the late write below comes well within it
    write_hour(dir, 20261204, 14, 1, 10);
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(10));
    write_hour(dir, 20261204, 15, 1, 5);
    write_hour(dir, 20261204, 14, 11, 12);  // the node flushes a last batch to hour 14
    REQUIRE(got.wait_for_lines(17));
    tailer.stop();
    CHECK(got.lines() == concat(hour_lines(20261204, 14, 1, 12), hour_lines(20261204, 15, 1, 5)));
}

TEST_CASE("down for three hours: the rest of hour 14, then 15, 16 and 17, none twice",
          "[file_set][newest][checkpoint]") {
    TempDir dir;
    const auto options = hourly_options(dir);
    write_hour(dir, 20261204, 13, 1, 20);
    write_hour(dir, 20261204, 14, 1, 20);
    CHECK(run_once(options) ==
          concat(hour_lines(20261204, 13, 1, 20), hour_lines(20261204, 14, 1, 20)));
    write_hour(dir, 20261204, 14, 21, 25);
    for (int hour : {15, 16, 17}) {
        write_hour(dir, 20261204, hour, 1, 10);
    }
    ErrorLog errors;
    CHECK(run_once(options, &errors) ==
          concat(hour_lines(20261204, 14, 21, 25), hour_lines(20261204, 15, 1, 10),
                 hour_lines(20261204, 16, 1, 10), hour_lines(20261204, 17, 1, 10)));
    CHECK(errors.size() == 0);
    CHECK(run_once(options).empty());
    // The checkpoint holds one position per file: finished ones marked done.
    const auto state = CheckpointStore(*options.checkpoint_path).load_state();
    REQUIRE(state);
    CHECK(state->version == 2);
    CHECK(state->glob == "hourly/*/*");
    REQUIRE(state->files.size() == 5);
    for (std::size_t i = 0; i < 4; ++i) {
        CHECK(state->files[i].done);
    }
    CHECK(state->files[4].path == "hourly/20261204/17");
    CHECK_FALSE(state->files[4].done);
    CHECK(state->files[4].position.offset == fs::file_size(hour_file(dir, 20261204, 17)));
    CHECK(state->files[4].position.line == 10);
}

TEST_CASE("a file deleted before it was read is reported as a gap with its path",
          "[file_set][newest][gap]") {
    TempDir dir;
    const auto options = hourly_options(dir);
    write_hour(dir, 20261204, 1, 1, 5);
    CHECK(run_once(options) == hour_lines(20261204, 1, 1, 5));
    write_hour(dir, 20261204, 2, 1, 5);
    write_hour(dir, 20261204, 3, 1, 5);
    write_hour(dir, 20261204, 4, 1, 5);
    fs::remove(hour_file(dir, 20261204, 3));  // the operator cleans up while snaptail is down
    ErrorLog errors;
    // Hour 3 is not there at the restart: it is never known, so it is not a gap; hour 2 is
    // read, then 4.
    CHECK(run_once(options, &errors) ==
          concat(hour_lines(20261204, 2, 1, 5), hour_lines(20261204, 4, 1, 5)));

    // Now a file that was known and not yet read goes: that is a gap, named.
    Collector got;
    auto live = options;
    live.rotate_wait = 5s;  // hour 5 stays current for a while, so hour 6 waits
    Tailer tailer(live, RawLineParser{}, got.sink(), errors.handler());
    write_hour(dir, 20261204, 5, 1, 5);
    tailer.start();
    REQUIRE(got.wait_for_lines(5));
    write_hour(dir, 20261204, 6, 1, 5);
    REQUIRE(eventually([&] { return tailer.stats().files_found >= 2; }));
    fs::remove(hour_file(dir, 20261204, 6));
    REQUIRE(errors.wait_for(ErrorKind::gap));
    tailer.stop();
    const auto gaps = errors.of(ErrorKind::gap);
    REQUIRE(gaps.size() == 1);
    CHECK(gaps[0].path == hour_file(dir, 20261204, 6).string());
    CHECK(gaps[0].offset == 0);
    CHECK_THAT(gaps[0].message, has_substring("read up to offset 0 of"));
    CHECK(got.lines() == hour_lines(20261204, 5, 1, 5));
    CHECK(tailer.stats().files_lost == 1);
}

TEST_CASE("positions of files gone from the set are pruned after forget_after",
          "[file_set][newest][checkpoint]") {
    TempDir dir;
    auto options = hourly_options(dir);
    options.files->forget_after = std::chrono::seconds{0};
    for (int hour : {1, 2, 3}) {
        write_hour(dir, 20261204, hour, 1, 3);
    }
    CHECK(run_once(options).size() == 9);
    fs::remove(hour_file(dir, 20261204, 1));
    fs::remove(hour_file(dir, 20261204, 2));
    CHECK(run_once(options).empty());
    const auto state = CheckpointStore(*options.checkpoint_path).load_state();
    REQUIRE(state);
    REQUIRE(state->files.size() == 1);
    CHECK(state->files[0].path == "hourly/20261204/3");

    options.files->forget_after = std::chrono::hours{1};
    write_hour(dir, 20261204, 4, 1, 2);  // before the removal: hour 3's inode is not reused
    fs::remove(hour_file(dir, 20261204, 3));
    CHECK(run_once(options) == hour_lines(20261204, 4, 1, 2));
    const auto kept = CheckpointStore(*options.checkpoint_path).load_state();
    REQUIRE(kept);
    REQUIRE(kept->files.size() == 2);
    CHECK(kept->files[0].path == "hourly/20261204/3");
    CHECK(kept->files[0].gone_since > 0);  // gone, remembered for an hour
    CHECK(kept->files[1].gone_since == 0);
}

TEST_CASE("StartAt::end in a file set starts after the last line of the newest file",
          "[file_set][newest]") {
    TempDir dir;
    auto options = hourly_options(dir);
    options.start = StartAt::end;
    write_hour(dir, 20261204, 1, 1, 5);
    write_hour(dir, 20261204, 2, 1, 5);
    fs::create_directories(dir / "hourly");
    append(hour_file(dir, 20261204, 2), "partial");
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(eventually([&] { return tailer.stats().file_open; }));
    append(hour_file(dir, 20261204, 2), " line\n");
    write_hour(dir, 20261204, 3, 1, 2);
    REQUIRE(got.wait_for_lines(3));
    tailer.stop();
    CHECK(got.lines() ==
          concat(std::vector<std::string>{"partial line"}, hour_lines(20261204, 3, 1, 2)));
}

TEST_CASE("a version 1 checkpoint of one path resumes a file set in that file",
          "[file_set][newest][checkpoint]") {
    TempDir dir;
    write_hour(dir, 20261204, 7, 1, 10);
    {
        auto single = quick_options(hour_file(dir, 20261204, 7));
        single.checkpoint_path = dir / "set.ck";
        single.idle_exit = 100ms;
        Collector got;
        Tailer tailer(single, RawLineParser{}, got.sink());
        tailer.run(std::stop_token{});
        REQUIRE(got.lines().size() == 10);
    }
    write_hour(dir, 20261204, 6, 1, 3);  // before it in order: counts as read
    write_hour(dir, 20261204, 7, 11, 12);
    write_hour(dir, 20261204, 8, 1, 2);
    CHECK(run_once(hourly_options(dir)) ==
          concat(hour_lines(20261204, 7, 11, 12), hour_lines(20261204, 8, 1, 2)));
}

TEST_CASE("a checkpoint saved for another file set is refused, or ignored as configured",
          "[file_set][checkpoint]") {
    TempDir dir;
    write_hour(dir, 20261204, 1, 1, 2);
    CHECK(run_once(hourly_options(dir)).size() == 2);
    auto other = hourly_options(dir);
    other.files->glob = "hourly/*/[0-9]*";
    CHECK_THROWS_WITH(Tailer(other, RawLineParser{}, [](auto&) {}),
                      has_substring("it was saved for the file set"));
    other.corrupt_checkpoint = CorruptCheckpoint::use_start;
    ErrorLog errors;
    CHECK(run_once(other, &errors) == hour_lines(20261204, 1, 1, 2));
    CHECK(errors.of(ErrorKind::checkpoint).size() == 1);
}

TEST_CASE("an older file that appears late is read, and the current one resumed after it",
          "[file_set][newest][live]") {
    TempDir dir;
    auto options = hourly_options(dir);
    write_hour(dir, 20261204, 10, 1, 5);
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(5));
    write_hour(dir, 20261204, 9, 1, 3);  // copied in late, sorts before the current file
    REQUIRE(got.wait_for_lines(8));
    write_hour(dir, 20261204, 10, 6, 7);
    REQUIRE(got.wait_for_lines(10));
    tailer.stop();
    CHECK(got.lines() == concat(hour_lines(20261204, 10, 1, 5), hour_lines(20261204, 9, 1, 3),
                                hour_lines(20261204, 10, 6, 7)));
}

TEST_CASE("positions stored by an exactly-once sink resume a file set without a checkpoint",
          "[file_set][newest][checkpoint]") {
    TempDir dir;
    for (int hour : {1, 2, 3}) {
        write_hour(dir, 20261204, hour, 1, 10);
    }
    // What a sink stores with each batch: the path and the end position of that batch.
    std::vector<std::pair<std::string, Position>> history;
    auto options = hourly_options(dir);
    options.checkpoint_path.reset();
    options.max_batch_lines = 4;
    {
        auto first = options;
        first.idle_exit = 150ms;
        Tailer tailer(first, RawLineParser{}, [&](Batch<std::string_view>& batch) {
            history.emplace_back(std::string(batch.path()), batch.end_position());
        });
        tailer.run(std::stop_token{});
    }
    // Batches of 4: hour 1 ends after its third batch, hour 2's second batch ends at line 8.
    REQUIRE(history.size() == 9);
    REQUIRE(history[2].first == hour_file(dir, 20261204, 1).string());
    REQUIRE(history[4].first == hour_file(dir, 20261204, 2).string());
    REQUIRE(history[4].second.line == 8);
    // The database committed up to hour 2's second batch, then the process died.
    options.resume_positions = {history[2].second, history[4].second};
    CHECK(run_once(options) ==
          concat(hour_lines(20261204, 2, 9, 10), hour_lines(20261204, 3, 1, 10)));
    // Only hour 2's position: hour 1 lies before it and counts as read.
    options.resume_positions = {history[4].second};
    CHECK(run_once(options) ==
          concat(hour_lines(20261204, 2, 9, 10), hour_lines(20261204, 3, 1, 10)));

    auto single = quick_options(dir / "x.log");
    single.resume_positions = options.resume_positions;
    CHECK_THROWS_WITH(validate(single), has_substring("resume_positions"));
}

TEST_CASE("follow newest with two parse threads: backlogs read in parallel, every line in order",
          "[file_set][newest][parallel]") {
    TempDir dir;
    // Files large enough for catch-up ranges (512 KiB and more), with lines of many lengths.
    std::vector<std::string> expected;
    for (int hour = 0; hour < 4; ++hour) {
        std::string content;
        for (int i = 1; i <= 9000; ++i) {
            std::string line = fmt::format("20261204/{}-{} ", hour, i);
            line.append(static_cast<std::size_t>((i * 37) % 200), 'x');
            content += line + (i % 11 == 0 ? "\r\n" : "\n");
            expected.push_back(line);
        }
        fs::create_directories(hour_file(dir, 20261204, hour).parent_path());
        append(hour_file(dir, 20261204, hour), content);
    }
    auto options = hourly_options(dir);
    options.parse_threads = 2;
    options.max_batch_lines = 500;
    options.idle_exit = 150ms;
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.run(std::stop_token{});
    CHECK(got.lines() == expected);
    CHECK(tailer.stats().parallel_reads > 0);  // the backlogs were read by both threads
    std::size_t largest = 0;
    for (const auto& batch : got.batches()) {
        largest = std::max(largest, batch.size);
    }
    CHECK(largest <= 500);
}

TEST_CASE("a sink that throws in a file set: each batch retried, every line once, in order",
          "[file_set][all_files][sink]") {
    TempDir dir;
    for (const char* name : {"a", "b"}) {
        append(dir / (std::string(name) + ".log"), text_of(numbered(name, 1, 60)));
    }
    auto options = quick_set_options(dir.path(), "*.log", FollowMode::all_files);
    options.max_batch_lines = 8;
    options.idle_exit = 200ms;
    Collector got;
    int calls = 0;
    got.before_batch = [&](Batch<std::string_view>&) {
        if (++calls % 3 == 0) {
            throw std::runtime_error("the sink is down");
        }
    };
    ErrorLog errors;
    Tailer tailer(options, RawLineParser{}, got.sink(), errors.handler());
    tailer.run(std::stop_token{});
    CHECK(got.lines_of(dir / "a.log") == numbered("a", 1, 60));
    CHECK(got.lines_of(dir / "b.log") == numbered("b", 1, 60));
    const auto sink_errors = errors.of(ErrorKind::sink);
    REQUIRE_FALSE(sink_errors.empty());
    for (const auto& e : sink_errors) {
        CHECK((e.path == (dir / "a.log").string() || e.path == (dir / "b.log").string()));
    }
}
