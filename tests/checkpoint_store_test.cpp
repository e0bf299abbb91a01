// CheckpointStore and the checkpoint text form: round trips, atomic replacement, and every kind
// of corruption rejected with a message that names the file and the problem.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/checkpoint_store.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

using namespace snaptail;
using namespace snaptail::test;

namespace {

Position sample() {
    return Position{FileId{2049, 131'073}, Fingerprint{0x0123456789abcdefULL, 1024}, 987'654, 4321};
}

void write_text(const fs::path& path, std::string_view text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

std::string load_error(const fs::path& file) {
    try {
        CheckpointStore(file).load();
    } catch (const CheckpointError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("a position survives the text form, with any path", "[checkpoint]") {
    const Position p = sample();
    for (std::string path : {"/var/log/app.log", "/odd/na%me\nwith\tcontrol\x7f.log", ""}) {
        const ParsedPosition parsed = parse_position(to_text(p, path));
        INFO(parsed.error);
        REQUIRE(parsed.position);
        CHECK(*parsed.position == p);
        CHECK(parsed.path == path);
    }
}

TEST_CASE("the text form is small, versioned and readable", "[checkpoint]") {
    CHECK(to_text(sample(), "/var/log/app.log") ==
          "snaptail-checkpoint 1\n"
          "path=/var/log/app.log\n"
          "device=2049\n"
          "inode=131073\n"
          "fingerprint=0123456789abcdef/1024\n"
          "offset=987654\n"
          "line=4321\n"
          "end\n");
}

TEST_CASE("save then load round-trips, and save replaces the previous checkpoint", "[checkpoint]") {
    TempDir dir;
    CheckpointStore store(dir / "ck");
    CHECK_FALSE(store.load().has_value());  // no file: no checkpoint
    Position p = sample();
    store.save(p, "/a.log");
    std::string saved_for;
    CHECK(store.load(&saved_for) == p);
    CHECK(saved_for == "/a.log");
    p.offset += 100;
    p.line += 3;
    store.save(p, "/a.log");
    CHECK(store.load() == p);
    CHECK_FALSE(fs::exists(dir / "ck.tmp"));
    store.sync();
    CHECK(store.load() == p);
}

namespace {

// The temporary files ("ck.tmp.*") in `dir`.
std::vector<std::string> temporaries(const TempDir& dir) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir.path())) {
        const auto name = entry.path().filename().string();
        if (name.starts_with("ck.tmp")) {
            names.push_back(name);
        }
    }
    return names;
}

}  // namespace

TEST_CASE("a crash in the middle of a save leaves the old checkpoint whole", "[checkpoint]") {
    TempDir dir;
    CheckpointStore store(dir / "ck");
    store.save(sample(), "/a.log");
    // What a crash between writing the temporary file and renaming it leaves behind.
    write_text(dir / "ck.tmp.00000000deadbeef", "snaptail-checkpoint 1\npath=/a.log\ndevi");
    CHECK(store.load() == sample());
    // The next save writes a temporary file of its own, and a new store clears the leftover.
    Position next = sample();
    next.offset += 1;
    CheckpointStore(dir / "ck").save(next, "/a.log");
    CHECK(store.load() == next);
    CHECK(temporaries(dir).empty());
}

TEST_CASE("a failing write (disk full, file size limit) throws and keeps the old checkpoint",
          "[checkpoint]") {
    TempDir dir;
    CheckpointStore store(dir / "ck");
    store.save(sample(), "/a.log");
    // RLIMIT_FSIZE makes write(2) fail (EFBIG) the way a full disk does (ENOSPC); it applies
    // to the whole process, so the failing save runs in a child.
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::signal(SIGXFSZ, SIG_IGN);
        const rlimit limit{16, 16};
        ::setrlimit(RLIMIT_FSIZE, &limit);
        Position next = sample();
        next.offset += 1;
        try {
            CheckpointStore(dir / "ck").save(next, "/a.log");
        } catch (const CheckpointError& e) {
            const std::string_view what = e.what();
            const bool named = what.find((dir / "ck").string()) != std::string_view::npos &&
                               what.find("cannot write") != std::string_view::npos;
            ::_exit(named ? 0 : 3);
        }
        ::_exit(2);  // no exception: the failure went unnoticed
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(store.load() == sample());
    CHECK(temporaries(dir).empty());  // the failed save removed its temporary file
}

TEST_CASE("save into a missing directory throws naming the file", "[checkpoint]") {
    TempDir dir;
    CheckpointStore store(dir / "missing" / "ck");
    try {
        store.save(sample());
        FAIL("save did not throw");
    } catch (const CheckpointError& e) {
        CHECK_THAT(std::string(e.what()), has_substring((dir / "missing").string()));
        CHECK_THAT(std::string(e.what()), has_substring("No such file"));
    }
}

TEST_CASE("every kind of corrupt checkpoint is rejected with the file and the problem",
          "[checkpoint]") {
    TempDir dir;
    const auto file = dir / "ck";
    const std::string valid = to_text(sample(), "/a.log");
    struct Case {
        std::string name;
        std::string text;
        std::string expected;
    };
    const std::vector<Case> cases{
        {"empty", "", "empty"},
        {"garbage", "\x01\x02 hello world\n", "not a snaptail checkpoint"},
        {"wrong version", "snaptail-checkpoint 7\n" + valid.substr(valid.find('\n') + 1),
         "unsupported version '7'"},
        {"bad number", "snaptail-checkpoint 1\npath=/a.log\ndevice=12x\n", "not a valid device"},
        {"negative offset",
         "snaptail-checkpoint 1\npath=/a\ndevice=1\ninode=2\nfingerprint=0000000000000000/0\n"
         "offset=-5\nline=0\nend\n",
         "not a valid offset"},
        {"missing field",
         "snaptail-checkpoint 1\npath=/a\ndevice=1\nfingerprint=0000000000000000/0\n",
         "expected 'inode='"},
        {"text after end", valid + "extra\n", "after the closing 'end'"},
        {"fingerprint beyond offset",
         "snaptail-checkpoint 1\npath=/a\ndevice=1\ninode=2\nfingerprint=0000000000000000/10\n"
         "offset=5\nline=0\nend\n",
         "fingerprint covers 10 bytes"},
        {"more lines than bytes",
         "snaptail-checkpoint 1\npath=/a\ndevice=1\ninode=2\nfingerprint=0000000000000000/0\n"
         "offset=5\nline=6\nend\n",
         "6 lines cannot end before byte 5"},
        {"bad path encoding", "snaptail-checkpoint 1\npath=/a%zz\n", "malformed path"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            write_text(file, c.text);
            const std::string error = load_error(file);
            CHECK_THAT(error, has_substring(file.string()));
            CHECK_THAT(error, has_substring(c.expected));
        }
    }
}

TEST_CASE("every truncation of a valid checkpoint is rejected", "[checkpoint]") {
    const std::string valid = to_text(sample(), "/a.log");
    for (std::size_t size = 0; size < valid.size(); ++size) {
        INFO("truncated to " << size << " bytes");
        const ParsedPosition parsed = parse_position(valid.substr(0, size));
        CHECK_FALSE(parsed.position.has_value());
        CHECK_FALSE(parsed.error.empty());
    }
    CHECK(parse_position(valid).position == sample());
}

TEST_CASE("a directory or a huge file at the checkpoint path is an error, not a checkpoint",
          "[checkpoint]") {
    TempDir dir;
    fs::create_directory(dir / "ck");
    CHECK_THAT(load_error(dir / "ck"), has_substring("not a regular file"));
    write_text(dir / "big", std::string(CheckpointStore::max_size + 10, 'x'));
    CHECK_THAT(load_error(dir / "big"), has_substring("larger than"));
}
