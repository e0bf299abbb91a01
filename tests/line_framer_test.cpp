// LineFramer: hand-written cases for each rule (empty lines, CR handling, NUL and invalid UTF-8,
// the max_line_bytes boundary, each long-line policy within one feed and across feeds, finish(),
// event ends), and a property test against the model in fuzz/framer_reference.hpp.
#include <snaptail/line_framer.hpp>
#include <snaptail/tail_options.hpp>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz/framer_reference.hpp"
#include "snaptail_catch.hpp"

using snaptail::FramedLine;
using snaptail::LineFramer;
using snaptail::LongLinePolicy;
using namespace std::string_literals;

namespace {

// An event as the tests spell it out. `end` is relative to the bytes of the call that made it
// (feed_once) or to the whole input (frame).
struct Ev {
    std::string text;
    std::size_t end{0};
    bool deliver{true};
    bool ends_line{true};
    bool long_line{false};
    bool first_of_long{false};

    friend bool operator==(const Ev&, const Ev&) = default;
    friend std::ostream& operator<<(std::ostream& os, const Ev& e) {
        return os << "{" << snaptail::test::escape_bytes(e.text) << " end=" << e.end
                  << (e.deliver ? "" : " !deliver") << (e.ends_line ? " ends_line" : "")
                  << (e.long_line ? " long" : "") << (e.first_of_long ? " first" : "") << "}";
    }
};

// Expected-event shorthands.
Ev line(std::string text, std::size_t end) {
    return Ev{std::move(text), end};
}
Ev long_whole(std::string text, std::size_t end) {
    return Ev{std::move(text), end, true, true, true, true};
}
Ev dropped(std::size_t end, bool first) {
    return Ev{"", end, false, true, true, first};
}
Ev piece(std::string text, std::size_t end, bool first) {
    return Ev{std::move(text), end, true, false, true, first};
}
Ev last_piece(std::string text, std::size_t end) {
    return Ev{std::move(text), end, true, true, true, false};
}

Ev to_ev(const FramedLine& l) {
    return Ev{std::string(l.text), l.end, l.deliver, l.ends_line, l.long_line, l.first_of_long};
}

// One feed() call: bytes consumed and the events, ends relative to `data`.
struct FeedResult {
    std::size_t used{0};
    std::vector<Ev> events;
};
FeedResult feed_once(LineFramer& framer, std::string_view data) {
    FeedResult r;
    r.used = framer.feed(data, [&r](const FramedLine& l) { r.events.push_back(to_ev(l)); });
    return r;
}
std::vector<Ev> finish_once(LineFramer& framer, std::string_view rest) {
    std::vector<Ev> events;
    framer.finish(rest, [&events](const FramedLine& l) { events.push_back(to_ev(l)); });
    return events;
}

// The whole input through the tailer-like driver (kept tail + new piece, then finish), ends
// translated to input offsets. The driver's contract checks must pass.
std::vector<Ev> frame(std::string_view input, const std::vector<std::size_t>& pieces,
                      std::size_t max, LongLinePolicy policy, bool strip_cr) {
    const snaptail::test::SeenRun run =
        snaptail::test::drive_framer(input, pieces, max, policy, strip_cr);
    INFO("contract fault: " << run.fault);
    CHECK(run.fault.empty());
    std::vector<Ev> events;
    for (const auto& e : run.events) {
        events.push_back(Ev{e.text, e.end, e.deliver, e.ends_line, e.long_line, e.first_of_long});
    }
    return events;
}

std::vector<std::size_t> whole(std::string_view input) {
    return {input.size()};
}
std::vector<std::size_t> bytewise(std::string_view input) {
    return std::vector<std::size_t>(input.size(), 1);
}

// Feeding modes for cases whose events do not depend on the read boundaries.
enum class Feeding { whole, bytewise };
std::vector<std::size_t> pieces_for(Feeding f, std::string_view input) {
    return f == Feeding::whole ? whole(input) : bytewise(input);
}
const char* feeding_name(Feeding f) {
    return f == Feeding::whole ? "whole" : "bytewise";
}

// The model's check, for the hand-written inputs too.
void require_matches_reference(std::string_view input, std::size_t max, LongLinePolicy policy,
                               bool strip_cr) {
    for (const auto& pieces : {whole(input), bytewise(input)}) {
        const std::string mismatch =
            snaptail::test::compare_with_reference(input, pieces, max, policy, strip_cr);
        INFO("input " << snaptail::test::escape_bytes(input) << " max " << max << " "
                      << snaptail::test::policy_name(policy) << " strip_cr " << strip_cr
                      << " pieces " << pieces.size());
        INFO(mismatch);
        CHECK(mismatch.empty());
    }
}

}  // namespace

TEST_CASE("LineFramer frames empty lines", "[line_framer]") {
    const auto feeding = GENERATE(Feeding::whole, Feeding::bytewise);
    CAPTURE(feeding_name(feeding));
    const std::string input = "\n\na\n\n";
    CHECK(frame(input, pieces_for(feeding, input), 4, LongLinePolicy::truncate, true) ==
          std::vector<Ev>{line("", 1), line("", 2), line("a", 4), line("", 5)});
    CHECK(frame("", {}, 4, LongLinePolicy::truncate, true).empty());
}

TEST_CASE("LineFramer strips one CR before LF only when asked", "[line_framer]") {
    const auto feeding = GENERATE(Feeding::whole, Feeding::bytewise);
    CAPTURE(feeding_name(feeding));
    const std::string input = "ab\r\n\r\ncd\r\r\n";
    const auto pieces = pieces_for(feeding, input);
    SECTION("strip_cr on: one CR removed, an earlier one kept") {
        CHECK(frame(input, pieces, 8, LongLinePolicy::truncate, true) ==
              std::vector<Ev>{line("ab", 4), line("", 6), line("cd\r", 11)});
    }
    SECTION("strip_cr off: CRs are content") {
        CHECK(frame(input, pieces, 8, LongLinePolicy::truncate, false) ==
              std::vector<Ev>{line("ab\r", 4), line("\r", 6), line("cd\r\r", 11)});
    }
}

TEST_CASE("LineFramer keeps a lone CR inside a line", "[line_framer]") {
    const auto feeding = GENERATE(Feeding::whole, Feeding::bytewise);
    CAPTURE(feeding_name(feeding));
    const std::string input = "a\rb\n\rc\n";
    CHECK(frame(input, pieces_for(feeding, input), 8, LongLinePolicy::truncate, true) ==
          std::vector<Ev>{line("a\rb", 4), line("\rc", 7)});
}

TEST_CASE("LineFramer passes NUL bytes and invalid UTF-8 through", "[line_framer]") {
    const auto feeding = GENERATE(Feeding::whole, Feeding::bytewise);
    CAPTURE(feeding_name(feeding));
    const std::string input = "a\0b\xFF\n\0\n\xC3\x28\xFE\n"s;
    const auto events = frame(input, pieces_for(feeding, input), 8, LongLinePolicy::split, true);
    REQUIRE(events ==
            std::vector<Ev>{line("a\0b\xFF"s, 5), line("\0"s, 7), line("\xC3\x28\xFE", 11)});
    CHECK(events[0].text.size() == 4);
    CHECK(events[1].text.size() == 1);
}

TEST_CASE("LineFramer: a line of exactly max_line_bytes is not long", "[line_framer]") {
    const auto policy =
        GENERATE(LongLinePolicy::truncate, LongLinePolicy::skip, LongLinePolicy::split);
    const auto feeding = GENERATE(Feeding::whole, Feeding::bytewise);
    CAPTURE(snaptail::test::policy_name(policy), feeding_name(feeding));
    const std::string input = "abcd\nxyzw";
    LineFramer probe(4, policy, true);
    CHECK(probe.max_line_bytes() == 4);
    // The unterminated "xyzw" is exactly max too: held by feed, delivered whole by finish().
    CHECK(frame(input, pieces_for(feeding, input), 4, policy, true) ==
          std::vector<Ev>{line("abcd", 5), line("xyzw", 9)});
}

TEST_CASE("LineFramer: max_line_bytes + 1 is long under each policy", "[line_framer]") {
    const std::string input = "abcde\nok\n";
    SECTION("truncate, in one feed") {
        CHECK(frame(input, whole(input), 4, LongLinePolicy::truncate, true) ==
              std::vector<Ev>{long_whole("abcd", 6), line("ok", 9)});
    }
    SECTION("truncate, byte by byte: cut as soon as the 5th byte arrives, the rest discarded") {
        CHECK(frame(input, bytewise(input), 4, LongLinePolicy::truncate, true) ==
              std::vector<Ev>{Ev{"abcd", 5, true, false, true, true}, dropped(6, false),
                              line("ok", 9)});
    }
    SECTION("skip, in one feed") {
        CHECK(frame(input, whole(input), 4, LongLinePolicy::skip, true) ==
              std::vector<Ev>{dropped(6, true), line("ok", 9)});
    }
    SECTION("skip, byte by byte") {
        CHECK(
            frame(input, bytewise(input), 4, LongLinePolicy::skip, true) ==
            std::vector<Ev>{Ev{"", 5, false, false, true, true}, dropped(6, false), line("ok", 9)});
    }
    SECTION("split, in one feed or byte by byte: a full piece, then the remainder") {
        const auto feeding = GENERATE(Feeding::whole, Feeding::bytewise);
        CAPTURE(feeding_name(feeding));
        CHECK(frame(input, pieces_for(feeding, input), 4, LongLinePolicy::split, true) ==
              std::vector<Ev>{piece("abcd", 4, true), last_piece("e", 6), line("ok", 9)});
    }
}

TEST_CASE("LineFramer: split pieces are exactly max bytes, the last 1..max", "[line_framer]") {
    const auto feeding = GENERATE(Feeding::whole, Feeding::bytewise);
    CAPTURE(feeding_name(feeding));
    // 6 = 2 * max: two full pieces and no empty third one; then 7 = 2 * max + 1.
    const std::string input = "abcdef\r\nABCDEFG\n";
    CHECK(frame(input, pieces_for(feeding, input), 3, LongLinePolicy::split, true) ==
          std::vector<Ev>{piece("abc", 3, true), last_piece("def", 8), piece("ABC", 11, true),
                          piece("DEF", 14, false), last_piece("G", 16)});
}

TEST_CASE("LineFramer judges length after stripping the CR", "[line_framer]") {
    const auto policy =
        GENERATE(LongLinePolicy::truncate, LongLinePolicy::skip, LongLinePolicy::split);
    const auto feeding = GENERATE(Feeding::whole, Feeding::bytewise);
    CAPTURE(snaptail::test::policy_name(policy), feeding_name(feeding));
    // 5 raw bytes before '\n', 4 of content: not long, even when "abcd\r" sits alone in a feed.
    const std::string input = "abcd\r\nefgh\r";
    SECTION("strip_cr on") {
        CHECK(frame(input, pieces_for(feeding, input), 4, policy, true) ==
              std::vector<Ev>{line("abcd", 6), line("efgh", 11)});
    }
    SECTION("strip_cr off: the CR counts, so the line is long") {
        const auto events = frame(input, pieces_for(feeding, input), 4, policy, false);
        REQUIRE(!events.empty());
        CHECK(events.front().long_line);
        CHECK(events.front().first_of_long);
        require_matches_reference(input, 4, policy, false);
    }
    SECTION("a CR that is not before the LF is content") {
        const std::string held_cr = "abcd\rx\n";
        const auto events = frame(held_cr, pieces_for(feeding, held_cr), 4, policy, true);
        REQUIRE(!events.empty());
        CHECK(events.front().long_line);
        require_matches_reference(held_cr, 4, policy, true);
    }
}

TEST_CASE("LineFramer::feed reports consumed bytes and ends within the fed data", "[line_framer]") {
    LineFramer framer(4, LongLinePolicy::truncate, true);
    auto r = feed_once(framer, "ab\r\n\ncd");
    CHECK(r.used == 5);
    CHECK(r.events == std::vector<Ev>{line("ab", 4), line("", 5)});

    // The caller keeps "cd" and feeds it again with more: ends count from the new data's start.
    r = feed_once(framer, "cd");
    CHECK(r.used == 0);
    CHECK(r.events.empty());
    r = feed_once(framer, "cd\nefgh\r");
    CHECK(r.used == 3);
    CHECK(r.events == std::vector<Ev>{line("cd", 3)});
    CHECK_FALSE(framer.discarding());
    r = feed_once(framer, "efgh\r\n");
    CHECK(r.used == 6);
    CHECK(r.events == std::vector<Ev>{line("efgh", 6)});
    r = feed_once(framer, "");
    CHECK(r.used == 0);
    CHECK(r.events.empty());
}

TEST_CASE("LineFramer::finish delivers the unterminated last line", "[line_framer]") {
    SECTION("plain rest") {
        LineFramer framer(8, LongLinePolicy::truncate, true);
        const auto r = feed_once(framer, "ab\ncd");
        CHECK(r.used == 3);
        CHECK(finish_once(framer, "cd") == std::vector<Ev>{line("cd", 2)});
    }
    SECTION("a trailing CR is stripped at finish") {
        LineFramer framer(8, LongLinePolicy::truncate, true);
        CHECK(feed_once(framer, "cd\r").used == 0);
        CHECK(finish_once(framer, "cd\r") == std::vector<Ev>{line("cd", 3)});
    }
    SECTION("...and kept without strip_cr") {
        LineFramer framer(8, LongLinePolicy::truncate, false);
        CHECK(feed_once(framer, "cd\r").used == 0);
        CHECK(finish_once(framer, "cd\r") == std::vector<Ev>{line("cd\r", 3)});
    }
    SECTION("nothing left: no event") {
        LineFramer framer(8, LongLinePolicy::truncate, true);
        CHECK(feed_once(framer, "ab\n").used == 3);
        CHECK(finish_once(framer, "").empty());
    }
    SECTION("the rest of a split line is its last piece") {
        LineFramer framer(2, LongLinePolicy::split, true);
        const auto r = feed_once(framer, "abcde");
        CHECK(r.used == 4);
        CHECK(r.events == std::vector<Ev>{piece("ab", 2, true), piece("cd", 4, false)});
        CHECK(finish_once(framer, "e") == std::vector<Ev>{last_piece("e", 1)});
    }
    SECTION("through the driver, under each policy") {
        const auto policy =
            GENERATE(LongLinePolicy::truncate, LongLinePolicy::skip, LongLinePolicy::split);
        const auto feeding = GENERATE(Feeding::whole, Feeding::bytewise);
        CAPTURE(snaptail::test::policy_name(policy), feeding_name(feeding));
        const std::string input = "x\nlast";
        CHECK(frame(input, pieces_for(feeding, input), 4, policy, true) ==
              std::vector<Ev>{line("x", 2), line("last", 6)});
        require_matches_reference("x\nlonger\r", 4, policy, true);
    }
}

TEST_CASE("LineFramer discards the rest of a truncated or skipped line across feeds",
          "[line_framer]") {
    const auto policy = GENERATE(LongLinePolicy::truncate, LongLinePolicy::skip);
    CAPTURE(snaptail::test::policy_name(policy));
    const bool truncate = policy == LongLinePolicy::truncate;
    LineFramer framer(3, policy, true);
    CHECK_FALSE(framer.discarding());

    auto r = feed_once(framer, "abcdef");
    CHECK(r.used == 6);
    CHECK(r.events == std::vector<Ev>{Ev{truncate ? "abc" : "", 6, truncate, false, true, true}});
    CHECK(framer.discarding());

    r = feed_once(framer, "ghi\r");
    CHECK(r.used == 4);
    CHECK(r.events.empty());
    CHECK(framer.discarding());

    r = feed_once(framer, "jk\r\nxy\n");
    CHECK(r.used == 7);
    CHECK(r.events == std::vector<Ev>{dropped(4, false), line("xy", 7)});
    CHECK_FALSE(framer.discarding());

    SECTION("finish() while discarding ends the line without delivering") {
        r = feed_once(framer, "0123");
        CHECK(r.used == 4);
        CHECK(framer.discarding());
        CHECK(finish_once(framer, "") == std::vector<Ev>{dropped(0, false)});
        CHECK_FALSE(framer.discarding());
        r = feed_once(framer, "ok\n");
        CHECK(r.events == std::vector<Ev>{line("ok", 3)});
    }
    SECTION("reset() forgets the line being discarded") {
        r = feed_once(framer, "0123");
        CHECK(framer.discarding());
        framer.reset();
        CHECK_FALSE(framer.discarding());
        r = feed_once(framer, "new\n");
        CHECK(r.events == std::vector<Ev>{line("new", 4)});
    }
}

TEST_CASE("LineFramer continues a split line across feeds", "[line_framer]") {
    LineFramer framer(3, LongLinePolicy::split, true);
    auto r = feed_once(framer, "abcd");
    CHECK(r.used == 3);
    CHECK(r.events == std::vector<Ev>{piece("abc", 3, true)});
    CHECK_FALSE(framer.discarding());

    // Kept "d", then more: the count of pieces restarts from the kept byte, never re-counted.
    r = feed_once(framer, "defgh");
    CHECK(r.used == 3);
    CHECK(r.events == std::vector<Ev>{piece("def", 3, false)});

    r = feed_once(framer, "gh");
    CHECK(r.used == 0);
    CHECK(r.events.empty());

    r = feed_once(framer, "ghij\r\nk\n");
    CHECK(r.used == 8);
    CHECK(r.events == std::vector<Ev>{piece("ghi", 3, false), last_piece("j", 6), line("k", 8)});

    SECTION("a remainder that completes within max is the last piece, not a new line") {
        r = feed_once(framer, "12345");
        CHECK(r.used == 3);
        CHECK(r.events == std::vector<Ev>{piece("123", 3, true)});
        r = feed_once(framer, "45\r\n");
        CHECK(r.used == 4);
        CHECK(r.events == std::vector<Ev>{last_piece("45", 4)});
    }
}

TEST_CASE("LineFramer event ends map to input offsets", "[line_framer]") {
    // Every event's end, translated by the bytes consumed before its feed, is the offset just
    // past the bytes it stands for: past the '\n' for a line, past its bytes for a split piece.
    const std::string input = "a\r\n\nlong-line-here\nxy\r\nend";
    const auto feeding = GENERATE(Feeding::whole, Feeding::bytewise);
    CAPTURE(feeding_name(feeding));
    const auto events = frame(input, pieces_for(feeding, input), 5, LongLinePolicy::split, true);
    CHECK(events == std::vector<Ev>{line("a", 3), line("", 4), piece("long-", 9, true),
                                    piece("line-", 14, false), last_piece("here", 19),
                                    line("xy", 23), line("end", 26)});
    for (const auto& e : events) {
        if (e.ends_line && e.end < input.size()) {
            CHECK(input[e.end - 1] == '\n');
        }
    }
    require_matches_reference(input, 5, LongLinePolicy::split, true);
}

TEST_CASE("LineFramer clamps max_line_bytes 0 to 1", "[line_framer]") {
    LineFramer framer(0, LongLinePolicy::split, false);
    CHECK(framer.max_line_bytes() == 1);
    const auto r = feed_once(framer, "ab\n");
    CHECK(r.events == std::vector<Ev>{piece("a", 1, true), last_piece("b", 3)});
}

TEST_CASE("LineFramer matches the reference model for random inputs and read boundaries",
          "[line_framer]") {
    using snaptail::test::SplitMix64;
    constexpr std::uint64_t seeds = 500;
    constexpr LongLinePolicy policies[] = {LongLinePolicy::truncate, LongLinePolicy::skip,
                                           LongLinePolicy::split};
    // Mostly letters, so that misplaced bytes show; CR, NUL and 0xFF as ordinary bytes.
    constexpr std::string_view alphabet("aaaabbbc\r\r\0\xFF", 12);
    int failures = 0;
    std::size_t lines_checked = 0;
    for (std::uint64_t seed = 1; seed <= seeds && failures < 5; ++seed) {
        SplitMix64 rng(seed);
        const std::size_t max = 1 + rng.below(40);
        const std::size_t length = rng.below(4) == 0 ? rng.below(64) : rng.below(3001);
        // Mean line length from very short to well past max_line_bytes.
        const std::size_t mean_line = rng.below(2 * max + 8);
        std::string input;
        input.reserve(length + 1);
        while (input.size() < length) {
            if (rng.below(mean_line + 1) == 0) {
                if (rng.below(3) == 0) {
                    input += '\r';
                }
                input += '\n';
            } else {
                input += alphabet[rng.below(alphabet.size())];
            }
        }
        for (std::size_t p = 0; p < 3; ++p) {
            for (const bool strip_cr : {false, true}) {
                const auto policy = policies[p];
                const std::uint64_t split_seed = seed * 8 + p * 2 + (strip_cr ? 1 : 0);
                const auto pieces = snaptail::test::random_pieces(input.size(), split_seed);
                const std::string mismatch =
                    snaptail::test::compare_with_reference(input, pieces, max, policy, strip_cr);
                if (!mismatch.empty()) {
                    ++failures;
                    FAIL_CHECK("seed " << seed << ": max_line_bytes " << max << ", "
                                       << snaptail::test::policy_name(policy) << ", strip_cr "
                                       << strip_cr << ", " << pieces.size() << " pieces (seed "
                                       << split_seed << ")\n  " << mismatch << "\n  input "
                                       << snaptail::test::escape_bytes(input));
                }
            }
        }
        lines_checked +=
            snaptail::test::reference_frame(input, max, LongLinePolicy::split, true).size();
    }
    CHECK(failures == 0);
    CHECK(lines_checked > 10000);
}
