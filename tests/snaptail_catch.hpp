// The one place that knows which Catch2 is in use: v2 ships a single header,
// v3 a split one with its main in a separate library.
#pragma once

#if SNAPTAIL_CATCH2_MAJOR >= 3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif

#include <string>

namespace snaptail::test {

/// A matcher for "the string contains `text`": Catch2 v3 renamed it ContainsSubstring (its
/// Contains matches range elements).
inline auto has_substring(const std::string& text) {
#if SNAPTAIL_CATCH2_MAJOR >= 3
    return Catch::Matchers::ContainsSubstring(text);
#else
    return Catch::Matchers::Contains(text);
#endif
}

}  // namespace snaptail::test
