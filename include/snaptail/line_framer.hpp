// Cuts a byte stream into lines, whatever the read boundaries, with a bound on line length.
#pragma once

#include <snaptail/tail_options.hpp>

#include <cstddef>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <utility>

namespace snaptail {

/// One framing event: a line, a piece of a long line, or the end of a dropped line.
struct FramedLine {
    /// The bytes to deliver, without '\n' (and '\r' when stripped). Empty when !deliver.
    std::string_view text;
    /// Index in the fed input just past the bytes this event consumed.
    std::size_t end{0};
    /// False for a skipped long line and for the discarded tail of a truncated one.
    bool deliver{true};
    /// The line ended here (its '\n', or the end of the input in finish()).
    bool ends_line{true};
    /// Part of a line longer than max_line_bytes.
    bool long_line{false};
    /// The event at which a long line is first seen: count long lines on this flag.
    bool first_of_long{false};
};

/// Frames lines out of a stream fed in arbitrary pieces. The same input yields the same lines
/// however it is split into feed() calls (a long line's events may differ in how they are cut).
/// Holds no buffer of its own: the caller keeps the unconsumed tail and feeds it again with more
/// bytes after it. Not thread-safe; never allocates.
///
///     LineFramer framer(1024, LongLinePolicy::truncate, true);
///     std::size_t used = framer.feed(buffer, [](const FramedLine& l) { use(l.text); });
///     // keep buffer[used..] and feed it again once more bytes follow it
class LineFramer {
  public:
    /// max_line_bytes >= 1. Never allocates.
    LineFramer(std::size_t max_line_bytes, LongLinePolicy policy, bool strip_cr) noexcept
        : max_(max_line_bytes == 0 ? 1 : max_line_bytes), policy_(policy), strip_cr_(strip_cr) {}

    /// Frames `data`, calling on_event(const FramedLine&) for each event in order, and returns
    /// how many bytes were consumed. An on_event that returns bool may return true after a
    /// whole line to stop framing there (the rest is fed again later). The unconsumed rest is an
    /// incomplete line of at most max_line_bytes content bytes (plus a trailing '\r'), to be fed
    /// again followed by more input.
    template <class OnEvent>
    std::size_t feed(std::string_view data, OnEvent&& on_event) {
        std::size_t pos = 0;
        const std::size_t n = data.size();
        while (pos < n) {
            const char* nl =
                static_cast<const char*>(std::memchr(data.data() + pos, '\n', n - pos));
            if (discarding_) {
                if (nl == nullptr) {
                    return n;
                }
                const auto end = static_cast<std::size_t>(nl - data.data()) + 1;
                on_event(FramedLine{{}, end, false, true, true, false});
                discarding_ = false;
                pos = end;
                continue;
            }
            if (nl != nullptr) {
                const auto line_end = static_cast<std::size_t>(nl - data.data());
                std::string_view content = data.substr(pos, line_end - pos);
                if (strip_cr_ && !content.empty() && content.back() == '\r') {
                    content.remove_suffix(1);
                }
                const std::size_t end = line_end + 1;
                if (content.size() <= max_) {
                    const bool long_line = std::exchange(continuing_, false);
                    if (stops(on_event, FramedLine{content, end, true, true, long_line, false})) {
                        return end;
                    }
                } else {
                    long_complete(content, pos, end, on_event);
                }
                pos = end;
                continue;
            }
            std::string_view partial = data.substr(pos);
            std::size_t content_len = partial.size();
            if (strip_cr_ && partial.back() == '\r') {
                --content_len;
            }
            if (content_len <= max_) {
                return pos;
            }
            return long_partial(partial, pos, content_len, on_event);
        }
        return pos;
    }

    /// Ends the input: the unconsumed `rest` (what feed() left) is delivered as a final line,
    /// since no '\n' will ever follow it (its file was rotated away, deleted or truncated).
    template <class OnEvent>
    void finish(std::string_view rest, OnEvent&& on_event) {
        if (discarding_) {
            on_event(FramedLine{{}, rest.size(), false, true, true, false});
        } else if (!rest.empty()) {
            std::string_view content = rest;
            if (strip_cr_ && content.back() == '\r') {
                content.remove_suffix(1);
            }
            on_event(FramedLine{content, rest.size(), true, true, continuing_, false});
        }
        reset();
    }

    /// Forgets any line in progress (a new file starts). Never allocates.
    void reset() noexcept {
        discarding_ = false;
        continuing_ = false;
    }

    /// True while the rest of a truncated or skipped line is being discarded.
    bool discarding() const noexcept { return discarding_; }
    /// True while framing is inside a line longer than max_line_bytes (its rest is being
    /// discarded, or more pieces of it follow): the next byte fed does not start a line.
    bool in_long_line() const noexcept { return discarding_ || continuing_; }
    /// The longest content delivered as one line.
    std::size_t max_line_bytes() const noexcept { return max_; }

  private:
    template <class OnEvent>
    static bool stops(OnEvent& on_event, const FramedLine& line) {
        if constexpr (std::is_same_v<std::invoke_result_t<OnEvent&, const FramedLine&>, bool>) {
            return on_event(line);
        } else {
            on_event(line);
            return false;
        }
    }

    // A whole line longer than the limit is in the input.
    template <class OnEvent>
    void long_complete(std::string_view content, std::size_t pos, std::size_t end,
                       OnEvent& on_event) {
        const bool first = !continuing_;
        continuing_ = false;
        switch (policy_) {
            case LongLinePolicy::truncate:
                on_event(FramedLine{content.substr(0, max_), end, true, true, true, first});
                return;
            case LongLinePolicy::skip:
                on_event(FramedLine{{}, end, false, true, true, first});
                return;
            case LongLinePolicy::split:
                split_pieces(content, pos, on_event, first);
                on_event(FramedLine{content, end, true, true, true, false});
                return;
        }
    }

    // An incomplete line already exceeds the limit: act now instead of holding more of it.
    template <class OnEvent>
    std::size_t long_partial(std::string_view partial, std::size_t pos, std::size_t content_len,
                             OnEvent& on_event) {
        const bool first = !continuing_;
        const std::size_t end = pos + partial.size();
        switch (policy_) {
            case LongLinePolicy::truncate:
                on_event(FramedLine{partial.substr(0, max_), end, true, false, true, first});
                discarding_ = true;
                return end;
            case LongLinePolicy::skip:
                on_event(FramedLine{{}, end, false, false, true, first});
                discarding_ = true;
                return end;
            case LongLinePolicy::split: {
                std::string_view content = partial.substr(0, content_len);
                const std::size_t used = split_pieces(content, pos, on_event, first);
                continuing_ = true;
                return pos + used;
            }
        }
        return pos;
    }

    // Emits leading pieces of exactly max_ bytes while more than max_ remain; shrinks
    // `content` to the remainder and returns the bytes emitted.
    template <class OnEvent>
    std::size_t split_pieces(std::string_view& content, std::size_t pos, OnEvent& on_event,
                             bool first) {
        std::size_t used = 0;
        while (content.size() > max_) {
            used += max_;
            on_event(FramedLine{content.substr(0, max_), pos + used, true, false, true, first});
            first = false;
            content.remove_prefix(max_);
        }
        return used;
    }

    std::size_t max_;
    LongLinePolicy policy_;
    bool strip_cr_;
    bool discarding_{false};
    bool continuing_{false};
};

}  // namespace snaptail
