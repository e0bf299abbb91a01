// Resuming from a checkpoint or a stored position: each resume rule, and commits that follow
// only what the sink accepted.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>
#include <snaptail/checkpoint_store.hpp>

#include <sys/stat.h>

#include <atomic>

using namespace snaptail;
using namespace snaptail::test;

using Tailer = BatchingTailer<RawLineParser>;

namespace {

TailOptions checkpointed(const TempDir& dir) {
    auto options = quick_options(dir / "app.log");
    options.checkpoint_path = dir / "app.ck";
    options.idle_exit = 100ms;  // each run catches up, then returns
    return options;
}

// One run of a tailer in this thread until it is idle; returns the lines it delivered.
std::vector<std::string> run_once(const TailOptions& options, ErrorLog* errors = nullptr) {
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink(),
                  errors != nullptr ? errors->handler() : ErrorHandler{});
    tailer.run(std::stop_token{});
    return got.lines();
}

FileId id_of(const fs::path& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

}  // namespace

TEST_CASE("a restart continues after the last committed line: none twice, none lost",
          "[tailer][checkpoint]") {
    TempDir dir;
    const auto options = checkpointed(dir);
    append(options.path, text_of(numbered("a", 1, 50)));
    CHECK(run_once(options) == numbered("a", 1, 50));
    append(options.path, text_of(numbered("b", 1, 20)) + "half");
    CHECK(run_once(options) == numbered("b", 1, 20));
    append(options.path, " done\n");
    CHECK(run_once(options) == std::vector<std::string>{"half done"});
    CHECK(run_once(options).empty());
    const auto saved = CheckpointStore(*options.checkpoint_path).load();
    REQUIRE(saved);
    CHECK(saved->offset == fs::file_size(options.path));
    CHECK(saved->line == 71);
    CHECK(saved->file == id_of(options.path));
}

TEST_CASE("rotation while stopped: the rest of the old file, then the new one from its start",
          "[tailer][checkpoint]") {
    TempDir dir;
    const auto options = checkpointed(dir);
    append(options.path, text_of(numbered("old", 1, 10)));
    CHECK(run_once(options) == numbered("old", 1, 10));
    append(options.path, text_of(numbered("old", 11, 15)));
    fs::rename(options.path, dir / "app.log.1");
    append(options.path, text_of(numbered("new", 1, 5)));
    ErrorLog errors;
    CHECK(run_once(options, &errors) == concat(numbered("old", 11, 15), numbered("new", 1, 5)));
    CHECK(errors.of(ErrorKind::gap).empty());
    CHECK(run_once(options).empty());
}

TEST_CASE("rotated files are searched with rotated_glob", "[tailer][checkpoint]") {
    TempDir dir;
    auto options = checkpointed(dir);
    options.rotated_glob = (dir / "archive" / "*.log").string();
    append(options.path, "one\n");
    CHECK(run_once(options) == std::vector<std::string>{"one"});
    append(options.path, "two\n");
    fs::create_directory(dir / "archive");
    fs::rename(options.path, dir / "archive" / "app-1.log");
    append(options.path, "three\n");
    CHECK(run_once(options) == std::vector<std::string>{"two", "three"});
}

TEST_CASE("the saved file nowhere to be found: the gap is reported, the path read from 0",
          "[tailer][checkpoint]") {
    TempDir dir;
    const auto options = checkpointed(dir);
    append(options.path, "one\n");
    CHECK(run_once(options) == std::vector<std::string>{"one"});
    append(options.path, "lost with its file\n");
    fs::remove(options.path);
    append(dir / "unrelated.txt", "pad\n");  // keep the old inode from being reused at once
    append(options.path, "fresh\n");
    ErrorLog errors;
    CHECK(run_once(options, &errors) == std::vector<std::string>{"fresh"});
    const auto gaps = errors.of(ErrorKind::gap);
    REQUIRE(gaps.size() == 1);
    CHECK_THAT(gaps[0].message, has_substring("may be lost"));
    CHECK(gaps[0].offset == 4);
}

TEST_CASE("truncated while stopped: same file but shorter, read from 0 and reported",
          "[tailer][checkpoint]") {
    TempDir dir;
    const auto options = checkpointed(dir);
    append(options.path, text_of(numbered("long-line", 1, 10)));
    CHECK(run_once(options) == numbered("long-line", 1, 10));
    fs::resize_file(options.path, 0);
    append(options.path, "x\ny\n");
    ErrorLog errors;
    CHECK(run_once(options, &errors) == std::vector<std::string>{"x", "y"});
    REQUIRE(errors.of(ErrorKind::truncated).size() == 1);
}

TEST_CASE("a reused inode with other content is not mistaken for the saved file",
          "[tailer][checkpoint]") {
    TempDir dir;
    auto options = quick_options(dir / "app.log");
    options.idle_exit = 100ms;
    append(options.path, "brand new content\nsecond\n");
    // A position taken in an earlier file that had this very device and inode: only the
    // fingerprint of its first bytes tells them apart.
    Position saved{id_of(options.path), Fingerprint{fingerprint_hash("old content\n"), 12}, 12, 1};
    options.start = StartAt::position(saved);
    ErrorLog errors;
    CHECK(run_once(options, &errors) == std::vector<std::string>{"brand new content", "second"});
    CHECK(errors.of(ErrorKind::gap).size() == 1);

    // The same position with the right fingerprint resumes in the middle.
    saved.fingerprint = Fingerprint{fingerprint_hash("brand new content\n"), 18};
    saved.offset = 18;
    options.start = StartAt::position(saved);
    CHECK(run_once(options) == std::vector<std::string>{"second"});
}

TEST_CASE("StartAt::position resumes exactly after a stored end_position", "[tailer][checkpoint]") {
    TempDir dir;
    auto options = quick_options(dir / "app.log");
    options.idle_exit = 100ms;
    options.max_batch_lines = 4;
    append(options.path, text_of(numbered("r", 1, 10)));
    // An exactly-once sink stores the end position with its data; here, after batch two.
    std::optional<Position> stored;
    int batches = 0;
    {
        Tailer tailer(options, RawLineParser{}, [&](Batch<std::string_view>& batch) {
            if (++batches == 2) {
                stored = batch.end_position();
            }
        });
        tailer.run(std::stop_token{});
    }
    REQUIRE(stored);
    CHECK(stored->line == 8);
    options.start = StartAt::position(*stored);
    CHECK(run_once(options) == numbered("r", 9, 10));
}

TEST_CASE("a corrupt checkpoint fails construction, or falls back to start when asked",
          "[tailer][checkpoint]") {
    TempDir dir;
    auto options = checkpointed(dir);
    append(options.path, "a\nb\n");
    append(*options.checkpoint_path, "snaptail-checkpoint 1\npath=");
    try {
        Tailer tailer(options, RawLineParser{}, [](Batch<std::string_view>&) {});
        FAIL("construction did not throw");
    } catch (const CheckpointError& e) {
        CHECK_THAT(std::string(e.what()), has_substring(options.checkpoint_path->string()));
        CHECK_THAT(std::string(e.what()), has_substring("truncated"));
    }
    options.corrupt_checkpoint = CorruptCheckpoint::use_start;
    ErrorLog errors;
    CHECK(run_once(options, &errors) == std::vector<std::string>{"a", "b"});
    CHECK(errors.of(ErrorKind::checkpoint).size() == 1);
    // The run replaced the corrupt checkpoint with a good one.
    CHECK(CheckpointStore(*options.checkpoint_path).load()->offset == 4);
}

TEST_CASE("a checkpoint saved for another path is refused", "[tailer][checkpoint]") {
    TempDir dir;
    auto options = checkpointed(dir);
    append(options.path, "a\n");
    CheckpointStore(*options.checkpoint_path).save(Position{}, "/some/other.log");
    CHECK_THROWS_WITH(Tailer(options, RawLineParser{}, [](Batch<std::string_view>&) {}),
                      has_substring("saved for /some/other.log"));
}

TEST_CASE("the checkpoint never runs ahead of the sink", "[tailer][checkpoint]") {
    TempDir dir;
    auto options = checkpointed(dir);
    options.max_batch_lines = 5;
    append(options.path, text_of(numbered("c", 1, 20)));
    CheckpointStore reader(*options.checkpoint_path);
    std::atomic<int> failures{0};
    std::vector<std::uint64_t> committed_at_sink;
    std::vector<std::uint64_t> batch_ends;
    ErrorLog errors;
    Tailer tailer(
        options, RawLineParser{},
        [&](Batch<std::string_view>& batch) {
            const auto saved = reader.load();
            committed_at_sink.push_back(saved ? saved->offset : 0);
            if (batch.first_line() == 6 && failures < 3) {
                ++failures;
                throw std::runtime_error("not yet");
            }
            batch_ends.push_back(batch.end_position().offset);
        },
        errors.handler());
    tailer.run(std::stop_token{});
    // While a batch is being offered (and retried), the checkpoint is where the previous one
    // ended; it never covers lines the sink has not accepted.
    REQUIRE(batch_ends.size() == 4);
    REQUIRE(committed_at_sink.size() == 7);
    CHECK(committed_at_sink == std::vector<std::uint64_t>{0, batch_ends[0], batch_ends[0],
                                                          batch_ends[0], batch_ends[0],
                                                          batch_ends[1], batch_ends[2]});
    CHECK(reader.load()->offset == batch_ends[3]);
    CHECK(errors.of(ErrorKind::sink).size() == 3);
}

TEST_CASE("commit_interval bounds checkpoint writes, and stop always commits",
          "[tailer][checkpoint]") {
    TempDir dir;
    auto options = checkpointed(dir);
    options.max_batch_lines = 2;
    options.commit_interval = 1h;
    append(options.path, text_of(numbered("i", 1, 10)));
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.run(std::stop_token{});
    CHECK(got.lines() == numbered("i", 1, 10));
    CHECK(tailer.stats().batches == 5);
    CHECK(tailer.stats().commits == 2);  // the first batch, then the one forced at stop
    CHECK(CheckpointStore(*options.checkpoint_path).load()->line == 10);
}
