// A plain model of LineFramer and a driver that feeds a real LineFramer the way a tailer does,
// shared by tests/line_framer_test.cpp and the libFuzzer target tests/fuzz/line_framer_fuzz.cpp.
//
// The model frames the whole input at once: split on '\n', strip one '\r' before it, apply the
// long-line policy to each line; a final piece without '\n' is a line too (as after finish()).
// check_framing() compares what the real framer did, fed in pieces, with the model and returns
// the first difference as text (empty when they agree).
#pragma once

#include <snaptail/line_framer.hpp>
#include <snaptail/tail_options.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace snaptail::test {

/// One line as the model frames it. Offsets are into the whole input.
struct RefLine {
    std::size_t start{0};            ///< Offset of the line's first byte.
    std::size_t end{0};              ///< Offset just past its '\n' (or the end of the input).
    bool long_line{false};           ///< Content (after CR stripping) exceeds max_line_bytes.
    std::vector<std::string> texts;  ///< Delivered pieces in order; none for a skipped line.
};

/// Frames `input` as a whole, the simple way.
inline std::vector<RefLine> reference_frame(std::string_view input, std::size_t max_line_bytes,
                                            LongLinePolicy policy, bool strip_cr) {
    const std::size_t max = max_line_bytes == 0 ? 1 : max_line_bytes;
    std::vector<RefLine> lines;
    std::size_t start = 0;
    while (start < input.size()) {
        const std::size_t nl = input.find('\n', start);
        const std::size_t stop = nl == std::string_view::npos ? input.size() : nl;
        std::string_view content = input.substr(start, stop - start);
        if (strip_cr && !content.empty() && content.back() == '\r') {
            content.remove_suffix(1);
        }
        RefLine line;
        line.start = start;
        line.end = nl == std::string_view::npos ? input.size() : nl + 1;
        line.long_line = content.size() > max;
        if (!line.long_line) {
            line.texts.emplace_back(content);
        } else if (policy == LongLinePolicy::truncate) {
            line.texts.emplace_back(content.substr(0, max));
        } else if (policy == LongLinePolicy::split) {
            for (std::size_t at = 0; at < content.size(); at += max) {
                line.texts.emplace_back(content.substr(at, max));
            }
        }
        start = line.end;
        lines.push_back(std::move(line));
    }
    return lines;
}

/// One event of the real framer, with offsets translated into the whole input.
struct SeenEvent {
    std::string text;
    std::size_t text_at{0};  ///< Input offset of text's first byte (0 when text is empty).
    std::size_t end{0};      ///< Input offset of FramedLine::end.
    bool deliver{false};
    bool ends_line{false};
    bool long_line{false};
    bool first_of_long{false};
};

/// What the real framer did, and the first broken contract of feed()/finish() seen, if any.
struct SeenRun {
    std::vector<SeenEvent> events;
    std::string fault;
};

/// Printable form of arbitrary bytes: \n, \r, \0 and other non-printables escaped.
inline std::string escape_bytes(std::string_view bytes, std::size_t limit = 400) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(bytes.size() + 2);
    out += '"';
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (i == limit) {
            out += "\"...(" + std::to_string(bytes.size()) + " bytes)";
            return out;
        }
        const auto c = static_cast<unsigned char>(bytes[i]);
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\\' || c == '"') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c >= 0x7F) {
            out += "\\x";
            out += hex[c >> 4U];
            out += hex[c & 0xFU];
        } else {
            out += static_cast<char>(c);
        }
    }
    out += '"';
    return out;
}

inline std::string policy_name(LongLinePolicy policy) {
    switch (policy) {
        case LongLinePolicy::truncate:
            return "truncate";
        case LongLinePolicy::skip:
            return "skip";
        case LongLinePolicy::split:
            return "split";
    }
    return "?";
}

/// A small, fully specified generator (SplitMix64), so a seed means the same on every platform.
class SplitMix64 {
  public:
    explicit SplitMix64(std::uint64_t seed) noexcept : state_(seed) {}
    std::uint64_t next() noexcept {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31U);
    }
    /// Uniform enough in [0, n); 0 when n == 0.
    std::size_t below(std::size_t n) noexcept {
        return n == 0 ? 0 : static_cast<std::size_t>(next() % n);
    }

  private:
    std::uint64_t state_;
};

/// Sizes of the pieces `total` bytes arrive in: tiny (0..3, empty reads included), line-sized,
/// large, or a mix of these, chosen by the seed.
inline std::vector<std::size_t> random_pieces(std::size_t total, std::uint64_t seed) {
    SplitMix64 rng(seed);
    std::vector<std::size_t> pieces;
    const std::size_t mode = rng.below(4);
    std::size_t left = total;
    while (left > 0) {
        std::size_t n = 0;
        switch (mode == 3 ? rng.below(3) : mode) {
            case 0:
                n = rng.below(4);
                break;
            case 1:
                n = 1 + rng.below(64);
                break;
            default:
                n = 1 + rng.below(left);
                break;
        }
        n = n < left ? n : left;
        pieces.push_back(n);
        left -= n;
    }
    return pieces;
}

/// Feeds `input` to a LineFramer like a tailer's read loop: each piece is appended to the kept
/// unconsumed tail, the buffer is fed, the consumed prefix erased; finish() gets the final tail.
/// Bytes not covered by `pieces` are appended as one last piece. Checks feed()'s contract on
/// the way (consumed count, event ends, views into the buffer, what may stay unconsumed).
inline SeenRun drive_framer(std::string_view input, const std::vector<std::size_t>& pieces,
                            std::size_t max_line_bytes, LongLinePolicy policy, bool strip_cr) {
    SeenRun run;
    LineFramer framer(max_line_bytes, policy, strip_cr);
    const std::size_t max = framer.max_line_bytes();
    std::string buffer;
    std::size_t base = 0;  // input offset of buffer[0]
    std::size_t last_end = 0;

    auto fail = [&run](std::string what) {
        if (run.fault.empty()) {
            run.fault = std::move(what);
        }
    };
    auto record = [&](const FramedLine& line, std::string_view fed) {
        const auto fed_begin = reinterpret_cast<std::uintptr_t>(fed.data());
        const auto text_begin = reinterpret_cast<std::uintptr_t>(line.text.data());
        SeenEvent event;
        event.text = std::string(line.text);
        event.end = base + line.end;
        event.deliver = line.deliver;
        event.ends_line = line.ends_line;
        event.long_line = line.long_line;
        event.first_of_long = line.first_of_long;
        auto where = [&run] { return " (event " + std::to_string(run.events.size()) + ")"; };
        if (line.end > fed.size()) {
            fail("event end " + std::to_string(line.end) + " past the fed " +
                 std::to_string(fed.size()) + " bytes" + where());
        }
        if (event.end < last_end) {
            fail("event end went back from " + std::to_string(last_end) + " to " +
                 std::to_string(event.end) + where());
        }
        last_end = event.end;
        if (!line.deliver && !line.text.empty()) {
            fail("undelivered event carries text " + escape_bytes(line.text) + where());
        }
        if (line.first_of_long && !line.long_line) {
            fail("first_of_long without long_line" + where());
        }
        if (!line.text.empty()) {
            if (text_begin < fed_begin || line.text.size() > fed.size() ||
                text_begin - fed_begin > fed.size() - line.text.size()) {
                fail("text does not point into the fed bytes" + where());
            } else {
                event.text_at = base + (text_begin - fed_begin);
            }
        }
        run.events.push_back(std::move(event));
    };

    std::size_t fed_total = 0;
    auto feed_piece = [&](std::size_t n) {
        buffer.append(input.substr(fed_total, n));
        fed_total += n;
        const std::string_view fed(buffer);
        std::size_t used = framer.feed(fed, [&](const FramedLine& l) { record(l, fed); });
        if (used > fed.size()) {
            fail("feed consumed " + std::to_string(used) + " of " + std::to_string(fed.size()) +
                 " bytes");
            used = fed.size();
        }
        buffer.erase(0, used);
        if (!run.events.empty() && run.events.back().end > base + used) {
            fail("an event ends past the " + std::to_string(used) + " bytes feed consumed");
        }
        base += used;
        if (buffer.find('\n') != std::string::npos) {
            fail("feed left a complete line unconsumed: " + escape_bytes(buffer));
        }
        std::size_t content = buffer.size();
        if (strip_cr && content > 0 && buffer.back() == '\r') {
            --content;
        }
        if (content > max) {
            fail("feed left " + std::to_string(content) + " content bytes unconsumed, max " +
                 std::to_string(max));
        }
        if (framer.discarding() && !buffer.empty()) {
            fail("feed left bytes unconsumed while discarding");
        }
    };
    for (const std::size_t piece : pieces) {
        if (fed_total >= input.size()) {
            break;
        }
        const std::size_t left = input.size() - fed_total;
        feed_piece(piece < left ? piece : left);
    }
    if (fed_total < input.size()) {
        feed_piece(input.size() - fed_total);
    }
    const std::string_view rest(buffer);
    framer.finish(rest, [&](const FramedLine& l) { record(l, rest); });
    if (framer.discarding()) {
        fail("still discarding after finish()");
    }
    return run;
}

/// Compares a run with the model line by line: delivered texts and where they sit in the input,
/// flags, the end of each event. Returns the first difference, or "" when they agree.
inline std::string check_framing(const SeenRun& run, const std::vector<RefLine>& lines,
                                 std::size_t max_line_bytes, LongLinePolicy policy) {
    if (!run.fault.empty()) {
        return "contract: " + run.fault;
    }
    const std::size_t max = max_line_bytes == 0 ? 1 : max_line_bytes;
    std::size_t next = 0;  // next event
    for (std::size_t li = 0; li < lines.size(); ++li) {
        const RefLine& ref = lines[li];
        auto at = [&] {
            return "line " + std::to_string(li) + " [" + std::to_string(ref.start) + ", " +
                   std::to_string(ref.end) + "): ";
        };
        std::size_t stop = next;
        while (stop < run.events.size() && !run.events[stop].ends_line) {
            ++stop;
        }
        if (stop == run.events.size()) {
            return at() + "no event ends it (" + std::to_string(run.events.size() - next) +
                   " events left)";
        }
        std::vector<std::string> texts;
        std::size_t piece = 0;
        for (std::size_t ei = next; ei <= stop; ++ei) {
            const SeenEvent& e = run.events[ei];
            auto ev = [&] { return at() + "event " + std::to_string(ei - next) + ": "; };
            if (e.long_line != ref.long_line) {
                return ev() + "long_line " + (e.long_line ? "true" : "false") + ", expected " +
                       (ref.long_line ? "true" : "false");
            }
            if (e.first_of_long != (ref.long_line && ei == next)) {
                return ev() + "first_of_long " + (e.first_of_long ? "true" : "false") +
                       ", expected " + (ref.long_line && ei == next ? "true" : "false");
            }
            if (ei == stop && e.end != ref.end) {
                return ev() + "ends the line at " + std::to_string(e.end) + ", expected " +
                       std::to_string(ref.end);
            }
            if (ei != stop) {
                if (!ref.long_line) {
                    return ev() + "a short line came in more than one event";
                }
                if (policy == LongLinePolicy::split) {
                    const std::size_t want = ref.start + (piece + 1) * max;
                    if (!e.deliver || e.end != want) {
                        return ev() + "split piece ending at " + std::to_string(e.end) +
                               (e.deliver ? "" : " (not delivered)") + ", expected end " +
                               std::to_string(want);
                    }
                } else if (e.end <= ref.start + max || e.end > ref.end) {
                    return ev() + "partial long-line event ending at " + std::to_string(e.end) +
                           ", outside (" + std::to_string(ref.start + max) + ", " +
                           std::to_string(ref.end) + "]";
                }
            }
            if (e.deliver) {
                const std::size_t want_at = ref.start + piece * max;
                if (!e.text.empty() && e.text_at != want_at) {
                    return ev() + "text " + escape_bytes(e.text) + " taken from offset " +
                           std::to_string(e.text_at) + ", expected " + std::to_string(want_at);
                }
                texts.push_back(e.text);
                ++piece;
            }
        }
        if (texts != ref.texts) {
            std::string got;
            std::string want;
            for (const auto& t : texts) {
                got += escape_bytes(t) + " ";
            }
            for (const auto& t : ref.texts) {
                want += escape_bytes(t) + " ";
            }
            return at() + "delivered [ " + got + "], expected [ " + want + "]";
        }
        next = stop + 1;
    }
    if (next != run.events.size()) {
        return std::to_string(run.events.size() - next) + " events after the last line, first " +
               escape_bytes(run.events[next].text) + " ending at " +
               std::to_string(run.events[next].end);
    }
    return {};
}

/// The whole check: model vs. real framer fed in `pieces`. "" when they agree.
inline std::string compare_with_reference(std::string_view input,
                                          const std::vector<std::size_t>& pieces,
                                          std::size_t max_line_bytes, LongLinePolicy policy,
                                          bool strip_cr) {
    const SeenRun run = drive_framer(input, pieces, max_line_bytes, policy, strip_cr);
    return check_framing(run, reference_frame(input, max_line_bytes, policy, strip_cr),
                         max_line_bytes, policy);
}

}  // namespace snaptail::test
