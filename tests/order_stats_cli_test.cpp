// The order_stats example on the exchange node's hourly layout, as gen_orders --hourly writes it.
#include "sinks/server_support.hpp"
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/detail/file_set_pattern.hpp>

#include <algorithm>
#include <regex>

#if defined(SNAPTAIL_ORDER_STATS_PATH) && defined(SNAPTAIL_GEN_ORDERS_PATH)

using namespace snaptail::test;

namespace {

// The summary without the fields that measure time, memory or name the source.
std::string comparable(std::string json) {
    for (const char* field :
         {"seconds", "wall_seconds", "lines_per_s", "mb_per_s", "peak_rss_mb"}) {
        json = std::regex_replace(json, std::regex(fmt::format("\"{}\":[0-9.]+,", field)), "");
    }
    return json;
}

}  // namespace

TEST_CASE("gen_orders --hourly writes the node's layout, and order_stats --dir reads it in order",
          "[order_stats][file_set]") {
    TempDir dir;
    // 17:00 on the first day, 300 lines an hour: 5,000 lines reach past midnight.
    Child hourly({SNAPTAIL_GEN_ORDERS_PATH, "--hourly", (dir / "hourly").string(), "--hour-lines",
                  "300", "--lines", "5000", "--seed", "7", "--bad-every", "97"},
                 dir / "gen.log");
    REQUIRE(hourly.wait() == 0);
    Child single({SNAPTAIL_GEN_ORDERS_PATH, "--lines", "5000", "--seed", "7", "--bad-every", "97",
                  (dir / "all.log").string()},
                 dir / "gen.log");
    REQUIRE(single.wait() == 0);

    // Hours without zero padding, a new date folder after hour 23, and together in natural
    // order the same bytes as one file written with the same seed.
    std::vector<std::string> names;
    for (const auto& entry : fs::recursive_directory_iterator(dir / "hourly")) {
        if (entry.is_regular_file()) {
            names.push_back(entry.path().lexically_relative(dir / "hourly").string());
        }
    }
    std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
        return snaptail::detail::natural_path_compare(a, b) < 0;
    });
    REQUIRE(names.size() == 17);
    CHECK(names.front() == "20261126/17");
    CHECK(names[6] == "20261126/23");
    CHECK(names[7] == "20261127/0");
    CHECK(names.back() == "20261127/9");
    std::string joined;
    for (const auto& name : names) {
        joined += slurp_file(dir / "hourly" / name);
    }
    CHECK(joined == slurp_file(dir / "all.log"));

    // order_stats over the folder counts what it counts over the single file.
    Child by_dir({SNAPTAIL_ORDER_STATS_PATH, "--json", "--idle-exit-ms", "300", "--dir",
                  dir.path().string(), "--glob", "hourly/*/*"},
                 dir / "by_dir.json");
    REQUIRE(by_dir.wait() == 0);
    Child by_file(
        {SNAPTAIL_ORDER_STATS_PATH, "--json", "--idle-exit-ms", "300", (dir / "all.log").string()},
        dir / "by_file.json");
    REQUIRE(by_file.wait() == 0);
    const std::string dir_json = slurp_file(dir / "by_dir.json");
    INFO(dir_json);
    // The bad lines go to stderr (the same file here): keep the summary line only.
    auto summary = [](const std::string& out) {
        const auto at = out.rfind("{\"lines\":");
        return at == std::string::npos ? std::string() : out.substr(at);
    };
    CHECK_THAT(summary(dir_json), has_substring("\"lines\":5000,"));
    CHECK(comparable(summary(dir_json)) == comparable(summary(slurp_file(dir / "by_file.json"))));
}

#endif
