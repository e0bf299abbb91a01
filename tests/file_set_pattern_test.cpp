// A file set's pattern and order: glob parts per directory level, natural order, and listing.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/detail/file_set_pattern.hpp>
#include <snaptail/detail/file_set_scan.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <random>

using namespace snaptail;
using namespace snaptail::test;
using detail::natural_compare;
using detail::natural_path_compare;

TEST_CASE("natural order compares runs of digits as numbers", "[file_set][order]") {
    CHECK(natural_compare("9", "10") < 0);
    CHECK(natural_compare("10", "9") > 0);
    CHECK(natural_compare("hour9", "hour10") < 0);
    CHECK(natural_compare("a2b10", "a2b9") > 0);
    CHECK(natural_compare("abc", "abd") < 0);
    CHECK(natural_compare("ab", "abc") < 0);
    CHECK(natural_compare("x", "x") == 0);
    // Equal by value: fewer leading zeros first, so the order stays total.
    CHECK(natural_compare("7", "007") < 0);
    CHECK(natural_compare("007", "7") > 0);
    CHECK(natural_compare("log-18446744073709551616", "log-18446744073709551615") > 0);
}

TEST_CASE("natural path order goes directory by directory", "[file_set][order]") {
    CHECK(natural_path_compare("20261204/23", "20261205/0") < 0);
    CHECK(natural_path_compare("20261204/9", "20261204/10") < 0);
    CHECK(natural_path_compare("a/x", "a.b/x") < 0);  // byte order would say otherwise
    CHECK(natural_path_compare("a", "a/b") < 0);
    CHECK(natural_path_compare("d/1", "d/1") == 0);

    std::vector<std::string> hours;
    for (const char* date : {"20261205", "20261204"}) {
        for (int hour = 23; hour >= 0; --hour) {
            hours.push_back(std::string(date) + "/" + std::to_string(hour));
        }
    }
    std::shuffle(hours.begin(), hours.end(), std::mt19937(42));
    std::sort(hours.begin(), hours.end(), [](const std::string& a, const std::string& b) {
        return natural_path_compare(a, b) < 0;
    });
    std::vector<std::string> expected;
    for (const char* date : {"20261204", "20261205"}) {
        for (int hour = 0; hour <= 23; ++hour) {
            expected.push_back(std::string(date) + "/" + std::to_string(hour));
        }
    }
    CHECK(hours == expected);
}

TEST_CASE("pattern parts match one directory level each, as glob(7) does", "[file_set][pattern]") {
    const detail::FileSetPattern pattern("hourly/*/[0-9]*");
    REQUIRE(pattern.depth() == 3);
    CHECK(pattern.literal(0) == "hourly");
    CHECK(pattern.literal(1).empty());
    CHECK(pattern.matches_path("hourly/20261204/9"));
    CHECK(pattern.matches_path("hourly/20261204/23"));
    CHECK_FALSE(pattern.matches_path("hourly/20261204"));
    CHECK_FALSE(pattern.matches_path("hourly/20261204/x9"));
    CHECK_FALSE(pattern.matches_path("hourly/a/b/9"));
    CHECK_FALSE(pattern.matches_path("hourly/.hidden/9"));  // a leading '.' needs a '.'
    CHECK_FALSE(pattern.matches(1, ".."));

    const detail::FileSetPattern escaped("logs/a\\*b.log");
    CHECK(escaped.literal(1) == "a*b.log");
    CHECK(escaped.matches_path("logs/a*b.log"));
    CHECK_FALSE(escaped.matches_path("logs/aXb.log"));
    CHECK(detail::FileSetPattern(".*.log").matches_path(".app.log"));
}

TEST_CASE("a scan lists the matching regular files and the directories along the pattern",
          "[file_set][pattern]") {
    TempDir dir;
    fs::create_directories(dir / "hourly" / "20261204");
    fs::create_directories(dir / "hourly" / "20261205");
    fs::create_directories(dir / "other" / "20261204");
    append(dir / "hourly" / "20261204" / "9", "a\n");
    append(dir / "hourly" / "20261204" / "10", "b\n");
    append(dir / "hourly" / "20261205" / "0", "c\n");
    append(dir / "other" / "20261204" / "1", "not in the set\n");
    fs::create_directory(dir / "hourly" / "20261205" / "1");  // a directory where a file goes
    append(dir / "hourly" / "stray", "a file where a directory goes\n");
    const auto scan = detail::scan_file_set(dir.path(), detail::FileSetPattern("hourly/*/*"));
    std::vector<std::string> files;
    for (const auto& found : scan.files) {
        files.push_back(found.relative);
        CHECK(found.size == 2);
    }
    std::sort(files.begin(), files.end(), [](const std::string& a, const std::string& b) {
        return natural_path_compare(a, b) < 0;
    });
    CHECK(files ==
          std::vector<std::string>{"hourly/20261204/9", "hourly/20261204/10", "hourly/20261205/0"});
    CHECK(scan.not_files == std::vector<std::string>{"hourly/20261205/1"});
    std::vector<std::string> dirs;
    for (const auto& found : scan.directories) {
        dirs.push_back(found.relative + "@" + std::to_string(found.level));
    }
    std::sort(dirs.begin(), dirs.end());
    CHECK(dirs ==
          std::vector<std::string>{"@0", "hourly/20261204@2", "hourly/20261205@2", "hourly@1"});
    CHECK(scan.errors.empty());
    CHECK_FALSE(scan.root_missing);
    CHECK(detail::scan_file_set(dir / "absent", detail::FileSetPattern("*")).root_missing);
}
