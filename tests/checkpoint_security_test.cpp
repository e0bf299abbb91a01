// Checkpoints in a directory others can write: the temporary file is never a symlink or a file
// someone else created, the checkpoint is written 0600, and a checkpoint that is a symlink or
// another user's file is refused unless trusted.
#include "snaptail_catch.hpp"
#include "snaptail_skip.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>
#include <snaptail/checkpoint_store.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

using namespace snaptail;
using namespace snaptail::test;

using Tailer = BatchingTailer<RawLineParser>;

namespace {

std::string slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> run_once(const TailOptions& options, ErrorLog* errors = nullptr) {
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink(),
                  errors != nullptr ? errors->handler() : ErrorHandler{});
    tailer.run(std::stop_token{});
    return got.lines();
}

Position sample() {
    return Position{FileId{1, 2}, Fingerprint{0xabc, 4}, 10, 2};
}

}  // namespace

TEST_CASE("a symlink at the old temporary name (or any other) is never followed",
          "[checkpoint][security]") {
    TempDir dir;
    const auto victim = dir / "victim";
    const std::string precious = "root:x:0:0:do not overwrite me\n";
    append(victim, precious);
    // The attack: another user places links where a checkpoint writer might put its
    // temporary file.
    fs::create_symlink(victim, dir / "ck.tmp");
    fs::create_symlink(victim, dir / "ck.tmp.0000000000000000");
    fs::create_symlink(victim, dir / "ck.new");
    auto options = quick_options(dir / "app.log");
    options.checkpoint_path = dir / "ck";
    options.idle_exit = 100ms;
    append(options.path, "a\nb\n");
    CHECK(run_once(options) == std::vector<std::string>{"a", "b"});
    append(options.path, "c\n");
    CHECK(run_once(options) == std::vector<std::string>{"c"});  // the checkpoint works
    CHECK(slurp(victim) == precious);
    CHECK(fs::is_symlink(dir / "ck.tmp"));  // left alone: neither followed nor removed
    CHECK(fs::is_symlink(dir / "ck.tmp.0000000000000000"));
    CHECK(fs::is_regular_file(fs::symlink_status(dir / "ck")));
}

TEST_CASE("a symlink at the checkpoint's own name is replaced, not written through",
          "[checkpoint][security]") {
    TempDir dir;
    const auto victim = dir / "victim";
    append(victim, "precious\n");
    fs::create_symlink(victim, dir / "ck");
    CheckpointStore store(dir / "ck");
    CHECK_THROWS_WITH(store.load(), has_substring("is a symbolic link: refused"));
    store.save(sample(), "/a.log");
    CHECK(slurp(victim) == "precious\n");
    CHECK(fs::is_regular_file(fs::symlink_status(dir / "ck")));
    CHECK(store.load() == sample());
}

TEST_CASE("checkpoints are written with mode 0600 (or checkpoint_mode), whatever the umask",
          "[checkpoint][security]") {
    TempDir dir;
    const mode_t old_umask = ::umask(0);
    CheckpointStore(dir / "ck").save(sample(), "/a.log");
    CheckpointStore(dir / "shared", std::chrono::seconds{1}, CheckpointAccess{0640, false})
        .save(sample(), "/a.log");
    ::umask(old_umask);
    struct stat st {};
    REQUIRE(::stat((dir / "ck").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    REQUIRE(::stat((dir / "shared").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);

    TailOptions bad = quick_options(dir / "app.log");
    bad.checkpoint_mode = 010000;
    CHECK_THROWS_WITH(validate(bad), has_substring("checkpoint_mode = 10000"));
}

TEST_CASE("a checkpoint that is a symlink is refused naming it, unless trusted",
          "[checkpoint][security]") {
    TempDir dir;
    CheckpointStore(dir / "real").save(sample(), "/a.log");
    fs::create_symlink(dir / "real", dir / "link");
    try {
        CheckpointStore(dir / "link").load();
        FAIL("a symlink was read as a checkpoint");
    } catch (const CheckpointError& e) {
        CHECK_THAT(std::string(e.what()), has_substring((dir / "link").string()));
        CHECK_THAT(std::string(e.what()), has_substring("trust_any_owner"));
    }
    CHECK(CheckpointStore(dir / "link", std::chrono::seconds{1}, CheckpointAccess{0600, true})
              .load() == sample());

    // Through a tailer: refused like a corrupt checkpoint (fail by default, or reported).
    auto options = quick_options(dir / "app.log");
    options.checkpoint_path = dir / "link";
    CHECK_THROWS_AS(Tailer(options, RawLineParser{}, [](auto&) {}), CheckpointError);
}

TEST_CASE("a checkpoint owned by another user is refused, unless trusted",
          "[checkpoint][security]") {
    if (::geteuid() != 0) {
        SNAPTAIL_SKIP("needs root to give a file to another user");
    }
    TempDir dir;
    CheckpointStore(dir / "ck").save(sample(), "/a.log");
    REQUIRE(::chown((dir / "ck").c_str(), 65534, 65534) == 0);
    try {
        CheckpointStore(dir / "ck").load();
        FAIL("another user's file was read as a checkpoint");
    } catch (const CheckpointError& e) {
        CHECK_THAT(std::string(e.what()), has_substring("is owned by uid 65534"));
    }
    CHECK(
        CheckpointStore(dir / "ck", std::chrono::seconds{1}, CheckpointAccess{0600, true}).load() ==
        sample());
    // A tailer told to report a corrupt checkpoint reports this one and starts afresh.
    auto options = quick_options(dir / "app.log");
    options.checkpoint_path = dir / "ck";
    options.corrupt_checkpoint = CorruptCheckpoint::use_start;
    options.idle_exit = 100ms;
    append(options.path, "x\n");
    ErrorLog errors;
    CHECK(run_once(options, &errors) == std::vector<std::string>{"x"});
    REQUIRE(errors.of(ErrorKind::checkpoint).size() == 1);
    CHECK_THAT(errors.of(ErrorKind::checkpoint)[0].message, has_substring("owned by uid 65534"));
    struct stat st {};
    REQUIRE(::stat((dir / "ck").c_str(), &st) == 0);
    CHECK(st.st_uid == ::geteuid());  // replaced by a checkpoint of the running user
}

TEST_CASE("a checkpoint that cannot be written is reported and retried with backoff",
          "[checkpoint][security]") {
    TempDir dir;
    auto options = quick_options(dir / "app.log");
    options.checkpoint_path = dir / "state" / "ck";  // its directory does not exist yet
    ErrorLog errors;
    Collector got;
    Tailer tailer(options, RawLineParser{}, got.sink(), errors.handler());
    tailer.start();
    append(options.path, "a\nb\n");
    REQUIRE(got.wait_for_lines(2));
    REQUIRE(errors.wait_for(ErrorKind::checkpoint));
    std::this_thread::sleep_for(300ms);  // time that a retry loop would fill with failures
    const auto failures = errors.of(ErrorKind::checkpoint).size();
    CHECK(failures < 10);
    CHECK_THAT(errors.of(ErrorKind::checkpoint)[0].message, has_substring("No such file"));
    fs::create_directory(dir / "state");  // the fault clears
    append(options.path, "c\n");
    REQUIRE(got.wait_for_lines(3));
    REQUIRE(eventually([&] { return fs::exists(dir / "state" / "ck"); }));
    tailer.stop();
    const auto saved = CheckpointStore(dir / "state" / "ck").load();
    REQUIRE(saved);
    CHECK(saved->offset == 6);
    CHECK(saved->line == 3);
    CHECK(got.lines() == std::vector<std::string>{"a", "b", "c"});
}
