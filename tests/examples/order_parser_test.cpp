// The order_stats example's parser: what it reads from an order line, which lines it filters,
// and that a malformed line is an error naming the field, never a crash; then the same parser
// behind a tailer with two parse threads, where each bad line is reported with its line number.
#include "order_parser.hpp"
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace snaptail;
using namespace snaptail::test;
using order_stats::OrderParser;
using order_stats::OrderRecord;
using order_stats::Side;
using order_stats::Status;

namespace {

// simdjson reads up to line_padding bytes past the line: parse a padded copy, as the tailer's
// buffer would hold it.
std::optional<OrderRecord> parse(OrderParser& parser, std::string_view line) {
    std::string padded(line);
    padded.append(line_padding, ' ');
    return parser.parse(std::string_view(padded).substr(0, line.size()));
}

std::string order_line(std::uint64_t seq, std::string_view status, std::string_view coin,
                       std::string_view side, std::string_view px, std::string_view sz) {
    return fmt::format(
        R"({{"seq":{},"time":"2026-11-26T17:00:00.012","user":"0xab12","status":"{}",)"
        R"("order":{{"coin":"{}","side":"{}","limitPx":{},"sz":{},"oid":40000000012,)"
        R"("timestamp":1764172800012,"orderType":"Limit","tif":"Gtc","reduceOnly":false}}}})",
        seq, status, coin, side, px, sz);
}

}  // namespace

TEST_CASE("order parser reads the fields of an order line", "[order_stats]") {
    OrderParser parser;
    const auto record =
        parse(parser, order_line(12, "open", "BTC", "B", R"("97000.5")", R"("0.0100")"));
    REQUIRE(record.has_value());
    CHECK(record->seq == 12);
    CHECK(record->status == Status::open);
    CHECK(record->coin.view() == "BTC");
    CHECK(record->side == Side::buy);
    CHECK(record->px == 97000.5);
    CHECK(record->sz == 0.01);

    // Numbers as JSON numbers too; every status; an unknown status counts as other.
    const std::vector<std::pair<std::string_view, Status>> statuses{
        {"filled", Status::filled},
        {"canceled", Status::canceled},
        {"triggered", Status::triggered},
        {"rejected", Status::rejected},
        {"liquidated", Status::other}};
    std::uint64_t seq = 100;
    for (const auto& [text, status] : statuses) {
        const auto r = parse(parser, order_line(seq, text, "ETH", "A", "3100.25", "2"));
        REQUIRE(r.has_value());
        CHECK(r->seq == seq);
        CHECK(r->status == status);
        CHECK(r->coin.view() == "ETH");
        CHECK(r->side == Side::sell);
        CHECK(r->px == 3100.25);
        CHECK(r->sz == 2.0);
        ++seq;
    }
}

TEST_CASE("order parser filters JSON that is not an order line", "[order_stats]") {
    OrderParser parser;
    for (std::string_view line : {R"({"type":"heartbeat","seq":5})", R"([1,2,{"a":null}])", "42",
                                  R"("text")", "true", "null"}) {
        INFO(line);
        CHECK_FALSE(parse(parser, line).has_value());
    }
}

TEST_CASE("order parser rejects a malformed line with a message naming the problem",
          "[order_stats]") {
    const std::string good = order_line(7, "open", "SOL", "B", R"("180.5")", R"("1")");
    struct Case {
        std::string line;
        std::string_view says;
    };
    const std::vector<Case> cases{
        {good.substr(0, good.size() / 2), "malformed JSON"},
        {"this is not JSON", "malformed JSON"},
        {good + "}", "malformed JSON"},
        {order_line(7, "open", "SOL", "B", R"("18x.5")", R"("1")"),
         R"("order.limitPx": "18x.5" is not a decimal number)"},
        {order_line(7, "open", "SOL", "B", R"("180.5")", "-1"),
         R"("order.sz": -1 is out of range)"},
        {order_line(7, "open", "SOL", "X", R"("180.5")", R"("1")"),
         R"("order.side": "X" is neither "B" nor "A")"},
        {R"({"seq":7,"status":"open","order":{"side":"B","limitPx":"1","sz":"1"}})",
         R"("order" without "coin")"},
        {R"({"status":"open","order":{"coin":"SOL","side":"B","limitPx":"1","sz":"1"}})",
         R"(order line without "seq")"},
        {order_line(7, "open", "AVERYLONGCOINNAMEOVER23BYTES", "B", "1", "1"),
         "is longer than 23 bytes"},
    };
    for (const bool strict : {false, true}) {
        OrderParser parser(strict);
        for (const auto& c : cases) {
            INFO("strict=" << strict << " line: " << c.line);
            CHECK_THROWS_WITH(parse(parser, c.line), has_substring(std::string(c.says)));
        }
        // The parser is still good for the next line.
        const auto record = parse(parser, good);
        REQUIRE(record.has_value());
        CHECK(record->seq == 7);
    }
    // Only strict validates the fields the parser does not use.
    const std::string bad_unused = order_line(8, "open", "SOL", "B", "1", "1") + " ";
    std::string mangled = order_line(8, "open", "SOL", "B", "1", "1");
    mangled.replace(mangled.find(R"("user":"0xab12")"), 15, R"("user":[1,,2]  )");
    OrderParser lenient;
    CHECK(parse(lenient, mangled).has_value());
    OrderParser strict(true);
    CHECK_THROWS_WITH(parse(strict, mangled), has_substring("malformed JSON"));
    CHECK(parse(strict, bad_unused).has_value());  // trailing whitespace is fine
}

TEST_CASE("order lines through a tailer with two parse threads: bad lines reported by number",
          "[order_stats][parallel]") {
    TempDir dir;
    const auto path = dir / "orders.log";
    std::string content;
    std::vector<std::uint64_t> expected_seqs;
    std::vector<std::uint64_t> expected_bad_lines;
    std::uint64_t filtered = 0;
    constexpr std::uint64_t total = 6000;
    for (std::uint64_t line = 1; line <= total; ++line) {
        if (line % 101 == 0) {
            content += order_line(line, "open", "BTC", "B", R"("oops")", R"("1")");
            expected_bad_lines.push_back(line);
        } else if (line % 37 == 0) {
            content += fmt::format(R"({{"type":"heartbeat","seq":{}}})", line);
            ++filtered;
        } else {
            content +=
                order_line(line, line % 2 ? "filled" : "open", "BTC", "A", "97000.5", R"("0.5")");
            expected_seqs.push_back(line);
        }
        content += '\n';
    }
    append(path, content);
    auto options = quick_options(path);
    options.parse_threads = 2;
    options.max_batch_lines = 500;
    options.idle_exit = std::chrono::milliseconds{100};
    ErrorLog errors;
    std::vector<std::uint64_t> seqs;
    BatchingTailer<OrderParser> tailer(
        options, OrderParser{},
        [&](Batch<OrderRecord>& batch) {
            for (const auto& record : batch.records()) {
                seqs.push_back(record.seq);
            }
        },
        errors.handler());
    tailer.run(std::stop_token{});
    CHECK(seqs == expected_seqs);
    std::vector<std::uint64_t> bad_lines;
    for (const auto& error : errors.of(ErrorKind::parse)) {
        bad_lines.push_back(error.line);
        CHECK_THAT(error.message, has_substring(R"("order.limitPx": "oops" is not a decimal)"));
    }
    CHECK(bad_lines == expected_bad_lines);
    const auto stats = tailer.stats();
    CHECK(stats.lines == total);
    CHECK(stats.parse_errors == expected_bad_lines.size());
    CHECK(stats.filtered == filtered);
}
