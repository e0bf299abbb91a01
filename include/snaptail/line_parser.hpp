// What a line parser is: anything with parse(std::string_view) returning R or std::optional<R>.
#pragma once

#include <concepts>
#include <optional>
#include <string_view>
#include <type_traits>

namespace snaptail {

namespace detail {

template <class T>
struct unwrap_optional {
    using type = T;
    static constexpr bool is_optional = false;
};
template <class T>
struct unwrap_optional<std::optional<T>> {
    using type = T;
    static constexpr bool is_optional = true;
};

template <class P>
using parse_result_t = std::remove_cvref_t<decltype(std::declval<P&>().parse(std::string_view{}))>;

}  // namespace detail

/// A line parser: `parse(std::string_view line)` returns a record `R`, or `std::optional<R>`
/// where nullopt drops the line (counted as filtered). The line's bytes stay valid until the
/// sink returns, so `R` may hold string_views into it, and at least `line_padding` readable
/// bytes follow it. parse may throw: the line is then reported and counted, not delivered.
template <class P>
concept LineParser = requires(P& parser, std::string_view line) {
    {parser.parse(line)};
}
&&!std::is_void_v<detail::parse_result_t<P>> &&
    std::movable<typename detail::unwrap_optional<detail::parse_result_t<P>>::type>;

/// The record type `R` that parser `P` produces.
template <LineParser P>
using record_t = typename detail::unwrap_optional<detail::parse_result_t<P>>::type;

/// The identity parser: each record is the line itself (a view valid until the sink returns).
struct RawLineParser {
    std::string_view parse(std::string_view line) const noexcept { return line; }
};

}  // namespace snaptail
