// detail::RangeRead: the pieces of a catch-up read, their line ends, and which of them count.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/detail/range_read.hpp>
#include <snaptail/detail/unique_fd.hpp>

#include <fcntl.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

using namespace snaptail;
using namespace snaptail::test;

namespace {

struct End {
    std::uint32_t index;
    bool cr;
    bool operator==(const End&) const = default;
};

std::vector<End> ends_of(const detail::ReadPiece& piece) {
    std::vector<End> out;
    for (const std::uint32_t entry : piece.ends) {
        out.push_back({entry >> 1, (entry & 1) != 0});
    }
    return out;
}

}  // namespace

TEST_CASE("a range is read in pieces that each know their line ends", "[range]") {
    TempDir dir;
    const auto path = dir / "data";
    // Pieces of 8 bytes: "\r\n" inside piece 0, '\n' first in piece 1 with its '\r' last in
    // piece 0, a lone '\r' (not before '\n'), and a last piece cut short by the end of the file.
    const std::string content =
        "ab\r\ncde\r"   // piece 0
        "\nef\nx\ry\n"  // piece 1
        "\n\r\nz";      // piece 2, short
    append(path, content);
    detail::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd);
    std::string buffer(32, '.');
    detail::RangeRead range;
    range.prepare(fd.get(), buffer.data(), 0, 24, 8);
    REQUIRE(range.count == 3);
    bool last = false;
    std::vector<bool> lasts;
    while (range.take_piece(last)) {
        lasts.push_back(last);
    }
    CHECK(lasts == std::vector<bool>{false, false, true});
    CHECK(range.pending.load() == 0);
    CHECK(buffer.substr(0, content.size()) == content);
    CHECK(range.pieces[0].got == 8);
    CHECK(range.pieces[1].got == 8);
    CHECK(range.pieces[2].got == static_cast<long>(content.size()) - 16);
    CHECK(range.pieces[0].offset == 0);
    CHECK(range.pieces[2].offset == 16);
    CHECK(ends_of(range.pieces[0]) == std::vector<End>{{3, true}});
    // Piece 1 starts with the '\n' after "cde\r": its '\r' is in piece 0, so the bit is clear
    // and the caller looks at the byte before.
    CHECK(ends_of(range.pieces[1]) == std::vector<End>{{0, false}, {3, false}, {7, false}});
    CHECK(ends_of(range.pieces[2]) == std::vector<End>{{0, false}, {2, true}});
    // The last piece was short: it is taken, and the range is not complete.
    CHECK(range.accept() == content.size());
    CHECK(range.accepted == 3);
    CHECK_FALSE(range.complete);
}

TEST_CASE("a range takes its pieces up to the first short or failed one", "[range]") {
    detail::RangeRead range;
    std::string buffer(40, '.');
    range.prepare(-1, buffer.data(), 100, 40, 10);
    REQUIRE(range.count == 4);
    auto set = [&](long a, long b, long c, long d) {
        const long got[] = {a, b, c, d};
        for (std::size_t i = 0; i < 4; ++i) {
            range.pieces[i].got = got[i];
        }
    };
    SECTION("all whole: all taken, complete") {
        set(10, 10, 10, 10);
        CHECK(range.accept() == 40);
        CHECK(range.accepted == 4);
        CHECK(range.complete);
    }
    SECTION("a short piece ends them, even when a later one has bytes (written since)") {
        set(10, 4, 10, 3);
        CHECK(range.accept() == 14);
        CHECK(range.accepted == 2);
        CHECK_FALSE(range.complete);
    }
    SECTION("an empty piece ends them") {
        set(10, 10, 0, 10);
        CHECK(range.accept() == 20);
        CHECK(range.accepted == 3);
        CHECK_FALSE(range.complete);
    }
    SECTION("a failed piece ends them before it") {
        set(10, -1, 10, 10);
        CHECK(range.accept() == 10);
        CHECK(range.accepted == 1);
        CHECK_FALSE(range.complete);
    }
    SECTION("a failed first piece: nothing") {
        set(-1, 10, 10, 10);
        CHECK(range.accept() == 0);
        CHECK(range.accepted == 0);
        CHECK_FALSE(range.complete);
    }
}

TEST_CASE("a piece that cannot be read says why", "[range]") {
    detail::RangeRead range;
    std::string buffer(16, '.');
    range.prepare(-1, buffer.data(), 0, 16, 16);
    bool last = false;
    REQUIRE(range.take_piece(last));
    CHECK(last);
    CHECK(range.pieces[0].got == -1);
    CHECK(range.pieces[0].error == EBADF);
    CHECK(range.pieces[0].ends.empty());
    CHECK_FALSE(range.take_piece(last));
}
