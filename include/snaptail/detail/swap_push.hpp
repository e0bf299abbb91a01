// How SwapBuffer's push functions say how long to wait, and which ranges push_range takes.
#pragma once

#include <chrono>
#include <concepts>
#include <ranges>
#include <type_traits>

namespace snaptail::detail {

enum class PushWait { never, until_deadline, forever };

// `start + d`, saturating: "wait a very long time" (duration::max()) must not overflow into
// the past.
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::steady_clock::time_point start,
                                                     std::chrono::duration<Rep, Period> d) {
    using TimePoint = std::chrono::steady_clock::time_point;
    using Seconds = std::chrono::duration<double>;
    if (d <= d.zero()) {
        return start;
    }
    if (Seconds(d) >= Seconds(TimePoint::max() - start) - Seconds(1)) {
        return TimePoint::max();
    }
    return start + std::chrono::ceil<TimePoint::duration>(d);
}

// push_range moves out of an owning container passed as an rvalue, and copies from
// anything else (lvalues, and views, which do not own their elements).
template <class R>
inline constexpr bool moves_elements_v =
    !std::is_lvalue_reference_v<R> && !std::ranges::borrowed_range<R>;

template <class R>
using range_element_t =
    std::conditional_t<moves_elements_v<R>, std::ranges::range_rvalue_reference_t<R>,
                       std::ranges::range_reference_t<R>>;

// A range whose elements push_range can turn into T.
template <class R, class T>
concept pushable_range =
    std::ranges::input_range<R> && std::constructible_from<T, range_element_t<R>>;

}  // namespace snaptail::detail
