// BatchingTailer across the life of a path: rotation, truncation, deletion, late creation.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <exception>
#include <stdexcept>
#include <thread>

using namespace snaptail;
using namespace snaptail::test;

using Tailer = BatchingTailer<RawLineParser>;

namespace {

// A log writer that keeps its descriptor open, like a real logging process.
class Writer {
  public:
    explicit Writer(const fs::path& path) { reopen(path); }
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    ~Writer() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    void reopen(const fs::path& path) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd_ < 0) {
            throw std::runtime_error("cannot open " + path.string());
        }
    }
    // Throws rather than asserting: it also runs on writer threads, where Catch2 cannot.
    void write(std::string_view bytes) {
        if (::write(fd_, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
            throw std::runtime_error("short write");
        }
    }

  private:
    int fd_{-1};
};

}  // namespace

TEST_CASE("rotation by rename and create while a writer writes: every line once, in order",
          "[tailer][rotation]") {
    TempDir dir;
    const auto path = dir / "app.log";
    constexpr int total = 6000;
    constexpr int rotate_every = 1000;
    Collector got;
    auto options = quick_options(path);
    for (bool inotify : {true, false}) {
        DYNAMIC_SECTION("use_inotify=" << inotify) {
            options.use_inotify = inotify;
            Tailer tailer(options, RawLineParser{}, got.sink());
            tailer.start();
            // The writer never stops writing during a rotation: the new file fills while the
            // old one is finished. It only waits for the tailer to reach the file it is about
            // to rotate away, since a file rotated away twice before the tailer ever opened it
            // is out of any follower's reach.
            std::exception_ptr writer_failed;
            std::thread writer_thread([&] {
                try {
                    Writer writer(path);
                    for (int i = 1; i <= total; ++i) {
                        writer.write("line-" + std::to_string(i) + "\n");
                        if (i % rotate_every == 0 && i < total) {
                            const auto reached = static_cast<std::size_t>(i - rotate_every / 2);
                            if (!got.wait_for_lines(reached)) {
                                throw std::runtime_error("the tailer never reached the file");
                            }
                            fs::rename(path, dir / ("app.log." + std::to_string(i / rotate_every)));
                            writer.reopen(path);
                        }
                    }
                } catch (...) {
                    writer_failed = std::current_exception();
                }
            });
            writer_thread.join();
            if (writer_failed) {
                std::rethrow_exception(writer_failed);
            }
            REQUIRE(got.wait_for_lines(total));
            tailer.stop();
            CHECK(got.lines() == numbered("line", 1, total));
            CHECK(tailer.stats().rotations == total / rotate_every - 1);
        }
    }
}

TEST_CASE("writes to the old file after rotation are read before the new file",
          "[tailer][rotation]") {
    TempDir dir;
    const auto path = dir / "app.log";
    auto options = quick_options(path);
    options.rotate_wait = 2s;  // far longer than the late write below takes
    Collector got;
    Writer old_writer(path);
    old_writer.write("old-1\nold-2\n");
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(2));
    fs::rename(path, dir / "app.log.1");
    append(path, "new-1\n");
    old_writer.write("old-late\n");
    REQUIRE(got.wait_for_lines(4));
    tailer.stop();
    CHECK(got.lines() == std::vector<std::string>{"old-1", "old-2", "old-late", "new-1"});
}

TEST_CASE("the unterminated last line of a rotated file is delivered as a line",
          "[tailer][rotation]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, "a\nb\npartial");
    Collector got;
    Tailer tailer(quick_options(path), RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(2));
    fs::rename(path, dir / "app.log.1");
    append(path, "c\n");
    REQUIRE(got.wait_for_lines(4));
    tailer.stop();
    CHECK(got.lines() == std::vector<std::string>{"a", "b", "partial", "c"});
    const auto batches = got.batches();
    CHECK(batches.back().first_line == 1);  // line numbers restart in the new file
}

TEST_CASE("copy-and-truncate: reading restarts at 0, counted and reported", "[tailer][rotation]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, text_of(numbered("before", 1, 20)));
    ErrorLog errors;
    Collector got;
    Tailer tailer(quick_options(path), RawLineParser{}, got.sink(), errors.handler());
    tailer.start();
    REQUIRE(got.wait_for_lines(20));
    fs::copy_file(path, dir / "app.log.1");
    fs::resize_file(path, 0);
    REQUIRE(errors.wait_for(ErrorKind::truncated));
    append(path, text_of(numbered("after", 1, 5)));
    REQUIRE(got.wait_for_lines(25));
    tailer.stop();
    CHECK(got.lines() == concat(numbered("before", 1, 20), numbered("after", 1, 5)));
    CHECK(tailer.stats().truncations == 1);
    const auto reported = errors.of(ErrorKind::truncated).front();
    CHECK(reported.offset == fs::file_size(dir / "app.log.1"));
    CHECK(reported.path == path.string());
}

TEST_CASE("deletion: the open file is read to its end, then the path is awaited again",
          "[tailer][rotation]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, "one\ntwo\n");
    Collector got;
    auto options = quick_options(path);
    options.rotate_wait = 1s;  // covers the late write below even on a loaded machine
    Tailer tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(2));
    {
        Writer writer(path);
        fs::remove(path);
        writer.write("three\nfour");  // still reaches the deleted file through the open fd
    }
    REQUIRE(got.wait_for_lines(4));
    REQUIRE(eventually([&] { return !tailer.stats().file_open; }));
    append(path, "reborn\n");
    REQUIRE(got.wait_for_lines(5));
    tailer.stop();
    CHECK(got.lines() == std::vector<std::string>{"one", "two", "three", "four", "reborn"});
    CHECK(tailer.stats().rotations == 1);
}

TEST_CASE("a path that does not exist yet is waited for and read from its first byte",
          "[tailer][rotation]") {
    TempDir dir;
    const auto path = dir / "later" / "app.log";  // not even its directory exists yet
    for (auto start : {StartAt::beginning, StartAt::end}) {
        DYNAMIC_SECTION("start=" << (start == StartAt::end ? "end" : "beginning")) {
            fs::remove_all(dir / "later");
            auto options = quick_options(path);
            options.start = start;
            Collector got;
            Tailer tailer(options, RawLineParser{}, got.sink());
            tailer.start();
            REQUIRE(eventually([&] { return tailer.stats().waiting_for_path; }));
            fs::create_directory(dir / "later");
            append(path, "first\nsecond\n");
            REQUIRE(got.wait_for_lines(2));
            tailer.stop();
            CHECK(got.lines() == std::vector<std::string>{"first", "second"});
        }
    }
}
