// What the followed path may be made to be by someone who can write its directory: a FIFO, a
// socket, a device, a directory, a symlink loop, a symlink swapped to another file, a file
// made unreadable or replaced by another user's. Each has a defined behaviour (README,
// "Security").
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

using namespace snaptail;
using namespace snaptail::test;

using Tailer = BatchingTailer<RawLineParser>;

namespace {

// Starts a tailer on `path`, waits for the first not_a_file or io report, and returns it.
Error first_report(const fs::path& path) {
    ErrorLog errors;
    Collector got;
    Tailer tailer(quick_options(path), RawLineParser{}, got.sink(), errors.handler());
    tailer.start();
    const bool reported = eventually([&] {
        return !errors.of(ErrorKind::not_a_file).empty() || !errors.of(ErrorKind::io).empty();
    });
    tailer.stop();
    REQUIRE(reported);
    CHECK(got.lines().empty());
    const auto not_file = errors.of(ErrorKind::not_a_file);
    return not_file.empty() ? errors.of(ErrorKind::io).front() : not_file.front();
}

}  // namespace

TEST_CASE("a FIFO at the path is refused without opening it, and a file there later is read",
          "[tailer][security]") {
    TempDir dir;
    const auto path = dir / "app.log";
    REQUIRE(::mkfifo(path.c_str(), 0644) == 0);
    ErrorLog errors;
    Collector got;
    Tailer tailer(quick_options(path), RawLineParser{}, got.sink(), errors.handler());
    tailer.start();
    REQUIRE(errors.wait_for(ErrorKind::not_a_file));
    CHECK(errors.of(ErrorKind::not_a_file).front().message == "is a FIFO, not a regular file");
    CHECK(errors.of(ErrorKind::not_a_file).front().path == path.string());
    fs::remove(path);
    append(path, "a regular file now\n");
    REQUIRE(got.wait_for_lines(1));
    tailer.stop();
    CHECK(got.lines() == std::vector<std::string>{"a regular file now"});
}

TEST_CASE("a socket, a character device and a symlink loop at the path are refused, named",
          "[tailer][security]") {
    TempDir dir;
    SECTION("socket") {
        const auto path = dir / "app.sock";
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        REQUIRE(fd >= 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        const std::string name = path.string();
        REQUIRE(name.size() < sizeof address.sun_path);
        std::copy(name.begin(), name.end(), address.sun_path);
        REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0);
        const Error e = first_report(path);
        ::close(fd);
        CHECK(e.kind == ErrorKind::not_a_file);
        CHECK(e.message == "is a socket, not a regular file");
    }
    SECTION("character devices behind a symlink: /dev/zero, /dev/urandom") {
        for (const char* device : {"/dev/zero", "/dev/urandom"}) {
            const auto path = dir.path() / fs::path(device).filename();
            fs::create_symlink(device, path);
            const Error e = first_report(path);
            CHECK(e.kind == ErrorKind::not_a_file);
            CHECK(e.message == "is a character device, not a regular file");
            CHECK(e.path == path.string());
        }
    }
    SECTION("symlink loop") {
        const auto path = dir / "loop.log";
        fs::create_symlink(dir / "loop2.log", path);
        fs::create_symlink(path, dir / "loop2.log");
        const Error e = first_report(path);
        CHECK(e.kind == ErrorKind::io);
        CHECK_THAT(e.message, has_substring("symbolic link loop"));
    }
}

TEST_CASE(
    "a symlink swapped to a new target is a rotation: the old target to its end, then the "
    "new one",
    "[tailer][security][rotation]") {
    TempDir dir;
    const auto current = dir / "current";
    const auto day1 = dir / "log.20261204";
    const auto day2 = dir / "log.20261205";
    append(day1, text_of(numbered("day1", 1, 5)));
    fs::create_symlink(day1.filename(), current);
    Collector got;
    ErrorLog errors;
    Tailer tailer(quick_options(current), RawLineParser{}, got.sink(), errors.handler());
    tailer.start();
    REQUIRE(got.wait_for_lines(5));
    // The "current -> log.<date>" style: a new day's file, the link swapped atomically, a late
    // write to the old day.
    append(day2, text_of(numbered("day2", 1, 3)));
    fs::create_symlink(day2.filename(), dir / "current.new");
    fs::rename(dir / "current.new", current);
    append(day1, text_of(numbered("day1", 6, 7)));
    REQUIRE(got.wait_for_lines(10));
    append(day2, text_of(numbered("day2", 4, 4)));
    REQUIRE(got.wait_for_lines(11));
    tailer.stop();
    CHECK(got.lines() == concat(numbered("day1", 1, 7), numbered("day2", 1, 4)));
    CHECK(tailer.stats().rotations == 1);
    CHECK(errors.size() == 0);
}

TEST_CASE("a file made unreadable (chmod 000) while followed goes on being read",
          "[tailer][security]") {
    // Permissions are checked when a file is opened: the open descriptor keeps reading. (A
    // new file that cannot be opened is reported and retried: see the open-failure tests.)
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, "before\n");
    Collector got;
    Tailer tailer(quick_options(path), RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(1));
    fs::permissions(path, fs::perms::none);
    append(path, "after chmod 000\n");
    REQUIRE(got.wait_for_lines(2));
    tailer.stop();
    CHECK(got.lines() == std::vector<std::string>{"before", "after chmod 000"});
}

TEST_CASE("a file replaced by another user's file is followed as a rotation",
          "[tailer][security][rotation]") {
    if (::geteuid() != 0) {
        WARN("not root: the other user's file is this user's here");
    }
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, "mine\n");
    Collector got;
    Tailer tailer(quick_options(path), RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(1));
    append(dir / "theirs", "theirs\n");
    if (::geteuid() == 0) {
        REQUIRE(::chown((dir / "theirs").c_str(), 65534, 65534) == 0);
    }
    fs::rename(dir / "theirs", path);
    REQUIRE(got.wait_for_lines(2));
    tailer.stop();
    CHECK(got.lines() == std::vector<std::string>{"mine", "theirs"});
}
