// write_prometheus: every counter of stats() as Prometheus reads it (checked with promtool when
// it is installed), labels escaped; write_file_atomically.
#include "prometheus_samples.hpp"
#include "snaptail_catch.hpp"
#include "snaptail_skip.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>
#include <snaptail/prometheus.hpp>
#include <snaptail/swap_buffer.hpp>

#include <optional>
#include <stdexcept>

using namespace snaptail;
using namespace snaptail::test;

namespace {

// Lines starting with "x" throw, "skip" are filtered.
struct PickyParser {
    std::optional<std::string_view> parse(std::string_view line) const {
        if (line.starts_with("x")) {
            throw std::runtime_error("x lines are bad");
        }
        if (line.starts_with("skip")) {
            return std::nullopt;
        }
        return line;
    }
};

// A tailer's stats after it read a file with good, filtered, bad and overlong lines, and
// delivered them in several batches with a checkpoint.
TailerStats busy_stats(const TempDir& dir) {
    const auto path = dir / "app.log";
    std::string content;
    for (int i = 0; i < 300; ++i) {
        content += i % 7 == 0 ? "x bad\n" : i % 5 == 0 ? "skip me\n" : fmt::format("line {}\n", i);
    }
    content += std::string(100, 'L') + "\n";
    append(path, content);
    auto options = quick_options(path);
    options.max_batch_lines = 16;
    options.max_line_bytes = 50;
    options.checkpoint_path = dir / "app.ck";
    options.idle_exit = 200ms;
    BatchingTailer tailer(
        options, PickyParser{}, [](Batch<std::string_view>&) {}, [](const Error&) {});
    tailer.run(std::stop_token{});
    return tailer.stats();
}

}  // namespace

TEST_CASE("write_prometheus renders every counter and gauge of TailerStats with its labels",
          "[prometheus]") {
    TempDir dir;
    const TailerStats s = busy_stats(dir);
    REQUIRE(s.lines == 301);
    REQUIRE(s.parse_errors > 0);
    REQUIRE(s.filtered > 0);
    REQUIRE(s.long_lines == 1);
    REQUIRE(s.batches > 1);
    std::string text;
    write_prometheus(text, s, {{"log", "orders"}, {"host", "web1"}});
    const std::string l = R"({log="orders",host="web1"})";
    const std::map<std::string, std::uint64_t> expected{
        {"snaptail_lines_total", s.lines},
        {"snaptail_bytes_total", s.bytes},
        {"snaptail_records_total", s.records},
        {"snaptail_filtered_lines_total", s.filtered},
        {"snaptail_parse_errors_total", s.parse_errors},
        {"snaptail_long_lines_total", s.long_lines},
        {"snaptail_batches_total", s.batches},
        {"snaptail_sink_errors_total", s.sink_errors},
        {"snaptail_skipped_batches_total", s.skipped_batches},
        {"snaptail_skipped_records_total", s.skipped_records},
        {"snaptail_rotations_total", s.rotations},
        {"snaptail_truncations_total", s.truncations},
        {"snaptail_io_errors_total", s.io_errors},
        {"snaptail_commits_total", s.commits},
        {"snaptail_checkpoint_errors_total", s.checkpoint_errors},
        {"snaptail_parallel_reads_total", s.parallel_reads},
        {"snaptail_files_found_total", s.files_found},
        {"snaptail_files_done_total", s.files_done},
        {"snaptail_files_lost_total", s.files_lost},
        {"snaptail_files_closed_idle_total", s.files_closed_idle},
        {"snaptail_file_open", s.file_open ? 1 : 0},
        {"snaptail_waiting_for_path", s.waiting_for_path ? 1 : 0},
        {"snaptail_files", s.files},
        {"snaptail_offset_bytes", s.offset},
        {"snaptail_lag_bytes", s.lag},
        {"snaptail_pending_bytes", s.pending_bytes},
        {"snaptail_read_ahead_high_water_bytes", s.read_ahead_high_water},
        {"snaptail_budget_high_water_bytes", s.budget_high_water},
        {"snaptail_budget_waits_total", s.budget_waits},
    };
    const auto samples = prometheus_samples(text);
    CHECK(samples.size() == expected.size());
    for (const auto& [name, value] : expected) {
        INFO(name);
        const auto it = samples.find(name + l);
        REQUIRE(it != samples.end());
        CHECK(it->second == std::to_string(value));
        const bool counter = name.ends_with("_total");
        CHECK_THAT(text, has_substring(
                             fmt::format("\n# TYPE {} {}\n", name, counter ? "counter" : "gauge")));
        CHECK_THAT(text, has_substring(fmt::format("# HELP {} ", name)));
    }
    CHECK(text.starts_with("# HELP snaptail_lines_total "));
}

TEST_CASE("write_prometheus escapes label values and rejects bad label names", "[prometheus]") {
    TailerStats s;
    s.lines = 3;
    std::string text;
    write_prometheus(text, s, {{"path", "/var/log/a \"b\" \\c\nd"}});
    CHECK_THAT(text, has_substring(R"(snaptail_lines_total{path="/var/log/a \"b\" \\c\nd"} 3)"
                                   "\n"));
    std::string ignored;
    CHECK_THROWS_AS(write_prometheus(ignored, s, {{"1st", "x"}}), std::invalid_argument);
    CHECK_THROWS_AS(write_prometheus(ignored, s, {{"__name__", "x"}}), std::invalid_argument);
    CHECK_THROWS_AS(write_prometheus(ignored, s, {{"a-b", "x"}}), std::invalid_argument);
}

TEST_CASE("write_prometheus puts several tailers under each family once, and SwapBuffer stats",
          "[prometheus]") {
    TailerStats a;
    a.lines = 1;
    TailerStats b;
    b.lines = 2;
    const std::vector<PrometheusSeries<TailerStats>> both{{a, {{"log", "a"}}}, {b, {{"log", "b"}}}};
    std::string text;
    write_prometheus(text, both);
    CHECK_THAT(text, has_substring("# TYPE snaptail_lines_total counter\n"
                                   "snaptail_lines_total{log=\"a\"} 1\n"
                                   "snaptail_lines_total{log=\"b\"} 2\n"));

    SwapBuffer<int> buffer(2, OverflowPolicy::reject);
    buffer.push(1);
    buffer.push(2);
    CHECK_FALSE(buffer.try_push(3));
    std::vector<int> out;
    buffer.drain(out);
    const SwapBufferStats bs = buffer.stats();
    std::string swap;
    write_prometheus(swap, bs, {{"buffer", "events"}});
    const auto samples = prometheus_samples(swap);
    CHECK(samples.at(R"(snaptail_swap_buffer_pushed_total{buffer="events"})") == "2");
    CHECK(samples.at(R"(snaptail_swap_buffer_drained_total{buffer="events"})") == "2");
    CHECK(samples.at(R"(snaptail_swap_buffer_rejected_total{buffer="events"})") == "1");
    CHECK(samples.at(R"(snaptail_swap_buffer_dropped_total{buffer="events"})") == "0");
    CHECK(samples.at(R"(snaptail_swap_buffer_drains_total{buffer="events"})") == "1");
    CHECK(samples.at(R"(snaptail_swap_buffer_blocked_pushes_total{buffer="events"})") == "0");
    CHECK(samples.at(R"(snaptail_swap_buffer_high_water_mark{buffer="events"})") == "2");
    CHECK(samples.size() == 7);
}

TEST_CASE("promtool check metrics accepts what write_prometheus writes", "[prometheus]") {
    const auto promtool = find_program("promtool");
    if (!promtool) {
        SNAPTAIL_SKIP("promtool was not found (Debian: apt-get install prometheus)");
    }
    TempDir dir;
    std::string text;
    write_prometheus(text, busy_stats(dir), {{"path", "/var/log/a \"b\" \\c\nd"}, {"host", "h"}});
    const std::vector<PrometheusSeries<TailerStats>> two{{TailerStats{}, {{"log", "a"}}},
                                                         {TailerStats{}, {{"log", "b"}}}};
    std::string more;
    write_prometheus(more, two);
    SwapBuffer<int> buffer;
    buffer.push(1);
    std::string swap;
    write_prometheus(swap, buffer.stats());
    for (const std::string* exposition : {&text, &more, &swap}) {
        const auto file = dir / "metrics.prom";
        write_file_atomically(file, *exposition);
        const auto verdict = promtool_check(*promtool, file);
        INFO(*exposition);
        CHECK(verdict.output == "");
        CHECK(verdict.status == 0);
    }
    // A broken exposition is rejected: the check can fail.
    const auto bad = dir / "bad.prom";
    write_file_atomically(bad, "# TYPE x counter\nx{a=\"1} 2\n");
    CHECK(promtool_check(*promtool, bad).status != 0);
}

TEST_CASE("write_file_atomically replaces the file and leaves no temporary behind",
          "[prometheus]") {
    TempDir dir;
    const auto file = dir / "m.prom";
    write_file_atomically(file, "old\n");
    write_file_atomically(file, "new\n");
    std::ifstream in(file);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(content == "new\n");
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) {
        ++entries;
    }
    CHECK(entries == 1);
    CHECK_THROWS_AS(write_file_atomically(dir / "missing" / "m.prom", "x"), std::system_error);
}

TEST_CASE("write_file_atomically never follows a symlink planted where its temporary file goes",
          "[prometheus][security]") {
    TempDir dir;
    const auto victim = dir / "victim";
    {
        std::ofstream out(victim);
        out << "precious\n";
    }
    // The fixed name an earlier version used, and the prefix of today's.
    fs::create_symlink(victim, dir / ".m.prom.tmp");
    fs::create_symlink(victim, dir / ".m.prom.tmp.0000000000000000");
    write_file_atomically(dir / "m.prom", "metrics\n");
    std::ifstream in(victim);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(content == "precious\n");
    std::ifstream written(dir / "m.prom");
    std::string metrics((std::istreambuf_iterator<char>(written)),
                        std::istreambuf_iterator<char>());
    CHECK(metrics == "metrics\n");
}
