// Following every file of a set at once: per-file order, batches from one file, new files,
// rename and deletion, fairness to small files beside a busy one, and the descriptor cap.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>
#include <snaptail/checkpoint_store.hpp>

#include <algorithm>
#include <map>
#include <thread>

using namespace snaptail;
using namespace snaptail::test;

using Tailer = BatchingTailer<RawLineParser>;

namespace {

TailOptions all_options(const TempDir& dir, std::string glob = "*.log") {
    auto options = quick_set_options(dir.path(), std::move(glob), FollowMode::all_files);
    options.checkpoint_path = dir / "state" / "set.ck";
    fs::create_directories(dir / "state");
    return options;
}

std::vector<std::string> run_once(TailOptions options, Collector& got, ErrorLog* errors = nullptr) {
    options.idle_exit = 150ms;
    Tailer tailer(options, RawLineParser{}, got.sink(),
                  errors != nullptr ? errors->handler() : ErrorHandler{});
    tailer.run(std::stop_token{});
    return got.lines();
}

// Every batch holds lines of its own file only, numbered as in that file (`first`: the number
// in the text of each file's first line).
void check_batches_from_one_file(const Collector& got,
                                 const std::map<std::string, int>& first = {}) {
    const auto lines = got.lines_with_paths();
    std::size_t at = 0;
    for (const auto& batch : got.batches()) {
        const auto stem = fs::path(batch.path).stem().string();
        for (std::size_t i = 0; i < batch.size; ++i, ++at) {
            REQUIRE(at < lines.size());
            CHECK(lines[at].first == batch.path);
            CHECK(lines[at].second.starts_with(stem + "-"));
            const auto it = first.find(stem);
            const auto base = static_cast<std::uint64_t>(it == first.end() ? 1 : it->second);
            CHECK(lines[at].second == stem + "-" + std::to_string(batch.first_line + i + base - 1));
        }
    }
    CHECK(at == lines.size());
}

}  // namespace

TEST_CASE("all files: every file's lines in order, batches from one file each",
          "[file_set][all_files]") {
    TempDir dir;
    for (const char* name : {"a", "b", "c"}) {
        append(dir / (std::string(name) + ".log"), text_of(numbered(name, 1, 200)));
    }
    append(dir / "ignored.txt", "not in the set\n");
    Collector got;
    auto options = all_options(dir);
    options.max_batch_lines = 16;
    run_once(options, got);
    for (const char* name : {"a", "b", "c"}) {
        CHECK(got.lines_of(dir / (std::string(name) + ".log")) == numbered(name, 1, 200));
    }
    CHECK(got.lines().size() == 600);
    check_batches_from_one_file(got);
}

TEST_CASE("all files live: writes to many files interleave, new files are followed",
          "[file_set][all_files][live]") {
    for (bool inotify : {true, false}) {
        DYNAMIC_SECTION("use_inotify=" << inotify) {
            TempDir dir;
            auto options = all_options(dir);
            options.use_inotify = inotify;
            Collector got;
            ErrorLog errors;
            Tailer tailer(options, RawLineParser{}, got.sink(), errors.handler());
            tailer.start();
            std::size_t total = 0;
            for (int round = 1; round <= 20; ++round) {
                for (int f = 0; f < 4 + round / 5; ++f) {
                    const std::string name = "f" + std::to_string(f);
                    append(dir / (name + ".log"), name + "-" + std::to_string(round) + "\n");
                    ++total;
                }
                if (round % 5 == 0) {
                    REQUIRE(got.wait_for_lines(total));
                }
            }
            REQUIRE(got.wait_for_lines(total));
            tailer.stop();
            for (int f = 0; f < 8; ++f) {
                const std::string name = "f" + std::to_string(f);
                const int first = f < 4 ? 1 : (f - 3) * 5;
                CHECK(got.lines_of(dir / (name + ".log")) == numbered(name, first, 20));
            }
            CHECK(errors.size() == 0);
            check_batches_from_one_file(got, {{"f4", 5}, {"f5", 10}, {"f6", 15}, {"f7", 20}});
        }
    }
}

TEST_CASE("all files: a busy file's backlog does not hold back the others",
          "[file_set][all_files][fairness]") {
    TempDir dir;
    // 60 MB in the busy file, 3 lines in each small one: every turn reads each file once,
    // so the small files' lines come out long before the busy file's backlog is read.
    std::string chunk;
    for (int i = 1; i <= 200000; ++i) {
        chunk += "busy-" + std::to_string(i) + " ";
        chunk.append(280, 'x');
        chunk += '\n';
    }
    append(dir / "busy.log", chunk);
    for (int f = 0; f < 5; ++f) {
        const std::string name = "small" + std::to_string(f);
        append(dir / (name + ".log"), text_of(numbered(name, 1, 3)));
    }
    Collector got;
    auto options = all_options(dir);
    options.checkpoint_path.reset();
    run_once(options, got);
    const auto lines = got.lines_with_paths();
    std::size_t last_small = 0;
    std::size_t busy = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (lines[i].first != (dir / "busy.log").string()) {
            last_small = i;
        } else {
            ++busy;
        }
    }
    CHECK(busy == 200000);
    CHECK(lines.size() == 200015);
    // Before a tenth of the busy file was delivered.
    CHECK(last_small < lines.size() / 10);
    for (int f = 0; f < 5; ++f) {
        const std::string name = "small" + std::to_string(f);
        CHECK(got.lines_of(dir / (name + ".log")) == numbered(name, 1, 3));
    }
}

TEST_CASE("all files under a descriptor cap: idle files are closed and reopened by identity",
          "[file_set][all_files][cap]") {
    TempDir dir;
    auto options = all_options(dir);
    options.files->max_open_files = 2;
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    std::size_t total = 0;
    for (int round = 1; round <= 6; ++round) {
        for (int f = 0; f < 6; ++f) {
            const std::string name = "cap" + std::to_string(f);
            const auto file =
                round > 3 && f == 0 ? dir / "cap0-renamed.log" : dir / (name + ".log");
            append(file, text_of(numbered(name, round * 10 - 9, round * 10)));
            total += 10;
        }
        REQUIRE(got.wait_for_lines(total));
        if (round == 3) {
            // Renamed within the set while it may be closed: found again by identity.
            fs::rename(dir / "cap0.log", dir / "cap0-renamed.log");
        }
    }
    tailer.stop();
    CHECK(got.lines_of(dir / "cap0.log") == numbered("cap0", 1, 30));
    CHECK(got.lines_of(dir / "cap0-renamed.log") == numbered("cap0", 31, 60));
    for (int f = 1; f < 6; ++f) {
        const std::string name = "cap" + std::to_string(f);
        CHECK(got.lines_of(dir / (name + ".log")) == numbered(name, 1, 60));
    }
    const auto stats = tailer.stats();
    CHECK(stats.files_closed_idle > 0);
    CHECK(stats.files <= 2);
}

TEST_CASE("all files: restart resumes every file, new files from their first byte",
          "[file_set][all_files][checkpoint]") {
    TempDir dir;
    const auto options = all_options(dir);
    append(dir / "x.log", text_of(numbered("x", 1, 10)));
    append(dir / "y.log", text_of(numbered("y", 1, 10)));
    {
        Collector got;
        run_once(options, got);
        CHECK(got.lines().size() == 20);
    }
    append(dir / "x.log", text_of(numbered("x", 11, 12)));
    append(dir / "z.log", text_of(numbered("z", 1, 4)));
    fs::rename(dir / "y.log", dir / "y.log.1");  // rotated out of the set while down
    ErrorLog errors;
    Collector got;
    run_once(options, got, &errors);
    CHECK(got.lines_of(dir / "x.log") == numbered("x", 11, 12));
    CHECK(got.lines_of(dir / "z.log") == numbered("z", 1, 4));
    CHECK(got.lines().size() == 6);
    // y was read to its end before it left: only a possible gap (written after the stop?).
    const auto gaps = errors.of(ErrorKind::gap);
    REQUIRE(gaps.size() == 1);
    CHECK(gaps[0].path == (dir / "y.log").string());
    CHECK(gaps[0].offset == fs::file_size(dir / "y.log.1"));
}

TEST_CASE("all files: a file renamed out of the set is read to its end, a deleted one too",
          "[file_set][all_files][live]") {
    TempDir dir;
    const auto options = all_options(dir);
    Collector got;
    ErrorLog errors;
    Tailer tailer(options, RawLineParser{}, got.sink(), errors.handler());
    append(dir / "r.log", text_of(numbered("r", 1, 5)));
    append(dir / "d.log", text_of(numbered("d", 1, 5)));
    tailer.start();
    REQUIRE(got.wait_for_lines(10));
    // Hold a descriptor so that lines can still be added after the rename and the unlink.
    const int r_fd = ::open((dir / "r.log").c_str(), O_WRONLY | O_APPEND);
    const int d_fd = ::open((dir / "d.log").c_str(), O_WRONLY | O_APPEND);
    REQUIRE(r_fd >= 0);
    REQUIRE(d_fd >= 0);
    fs::rename(dir / "r.log", dir / "r.log.1");
    fs::remove(dir / "d.log");
    const std::string r_late = "r-6\nr-7 no newline";
    const std::string d_late = "d-6\n";
    REQUIRE(::write(r_fd, r_late.data(), r_late.size()) == static_cast<ssize_t>(r_late.size()));
    REQUIRE(::write(d_fd, d_late.data(), d_late.size()) == static_cast<ssize_t>(d_late.size()));
    ::close(r_fd);
    ::close(d_fd);
    REQUIRE(got.wait_for_lines(13));
    REQUIRE(eventually([&] { return tailer.stats().rotations >= 2; }));
    tailer.stop();
    CHECK(got.lines_of(dir / "r.log") ==
          std::vector<std::string>{"r-1", "r-2", "r-3", "r-4", "r-5", "r-6", "r-7 no newline"});
    CHECK(got.lines_of(dir / "d.log") == numbered("d", 1, 6));
    CHECK(errors.of(ErrorKind::gap).empty());
}

TEST_CASE("all files: per-file stats name each file and where it is",
          "[file_set][all_files][stats]") {
    TempDir dir;
    auto options = all_options(dir);
    append(dir / "p.log", text_of(numbered("p", 1, 3)));
    append(dir / "q.log", text_of(numbered("q", 1, 4)));
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(7));
    REQUIRE(eventually([&] {
        const auto files = tailer.file_stats();
        return files.size() == 2 && files[0].lines == 3 && files[1].lines == 4;
    }));
    tailer.stop();
    const auto files = tailer.file_stats();
    CHECK(files[0].path == (dir / "p.log").string());
    CHECK(files[0].offset == fs::file_size(dir / "p.log"));
    CHECK(files[1].path == (dir / "q.log").string());
    CHECK(files[1].size == fs::file_size(dir / "q.log"));
    const auto stats = tailer.stats();
    CHECK(stats.lines == 7);
    CHECK(stats.files_found == 2);
}
