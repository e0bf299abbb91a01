// order_stats: follows an exchange node's order-status log (one JSON object per line), parses
// each line in place with simdjson, and shows orders per coin and status, filled notional per
// coin and the tailer's throughput and lag, refreshed every second; a summary on exit.
#include "order_parser.hpp"

#include <snaptail/batching_tailer.hpp>
#ifdef SNAPTAIL_ORDER_STATS_POSTGRES
#include <snaptail/sinks/postgres.hpp>
#endif

#include "../example_cli.hpp"

#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

using snaptail::examples::add_milliseconds;
using snaptail::examples::add_number;
using snaptail::examples::usage_error;

using order_stats::OrderParser;
using order_stats::OrderRecord;
using order_stats::Status;
using order_stats::status_count;
using Clock = std::chrono::steady_clock;

struct Config {
    snaptail::TailOptions options;
    bool strict{false};
    bool no_parse{false};
    bool quiet{false};
    bool json{false};
    std::string postgres;  // conninfo; empty: no database
    std::string postgres_table{"orders"};
    std::string stream;  // the positions' key; default: PATH
    std::string source;  // PATH, or ROOT/PATTERN
};

Config parse_args(int argc, char** argv) {
    Config config;
    auto& o = config.options;
    CLI::App app(
        "Follows PATH, an order-status log with one JSON object per line, like `tail -F`, and "
        "shows\norders per coin and status, filled notional per coin, lines/s and lag, refreshed "
        "every second.\nCtrl-C (SIGINT) or SIGTERM stops it after the lines already read; then a "
        "summary is printed.",
        "order_stats");
    snaptail::examples::set_style(app);
    std::string path;
    std::string root;
    std::string glob;
    add_number(app, "--parse-threads", o.parse_threads,
               "threads that parse each batch (default 1: the reading thread)");
    app.add_flag_callback(
        "--from-end", [&o] { o.start = snaptail::StartAt::end; },
        "skip the lines already in the file (default: read them all first)");
    add_milliseconds(app, "--idle-exit-ms", o.idle_exit,
                     "exit once everything read is counted and nothing came for N ms");
    add_milliseconds(app, "--linger-ms", o.linger,
                     "deliver a batch once its first line has waited N ms (default 20)");
    app.add_flag("--strict", config.strict,
                 "validate every line as JSON in full (default: only the fields used;\n"
                 "the others are skipped with their brackets and quotes balanced)");
    app.add_flag("--no-parse", config.no_parse,
                 "no JSON: each line's record is its length (measures the tailer alone)");
    app.add_flag("--quiet", config.quiet, "no live table: only the summary at exit");
    app.add_flag("--json", config.json,
                 "print the summary as one JSON object (for scripts and benchmarks)");
#ifdef SNAPTAIL_ORDER_STATS_POSTGRES
    app.add_option("--postgres", config.postgres,
                   "also write every order into a PostgreSQL table, exactly once: each batch\n"
                   "and its end position in one transaction; a restart resumes from the\n"
                   "position stored there (CONNINFO: a libpq connection string)")
        ->type_name("CONNINFO");
    app.add_option("--postgres-table", config.postgres_table,
                   "the table (created if missing; default orders)")
        ->type_name("NAME");
    app.add_option("--stream", config.stream,
                   "the name the stored positions go under (default: PATH)")
        ->type_name("NAME");
#endif
    app.add_option("--dir", root,
                   "follow the node's rolling files instead of PATH: the files below ROOT\n"
                   "whose relative path matches --glob, one at a time in natural order\n"
                   "(hourly/20261204/9 before .../10, each date folder in turn)")
        ->type_name("ROOT");
    app.add_option("--glob", glob, "with --dir: e.g. 'hourly/*/*'")->type_name("PATTERN");
    app.add_option("PATH", path, "the order log to follow")->type_name("");
    snaptail::examples::parse_command_line(app, argc, argv);
    if (path.empty() == root.empty()) {
        usage_error("give either PATH or --dir ROOT --glob PATTERN");
    }
    if (root.empty() != glob.empty()) {
        usage_error("--dir and --glob go together");
    }
    if (config.strict && config.no_parse) {
        usage_error("--strict and --no-parse exclude each other");
    }
    if (!config.postgres.empty() && config.no_parse) {
        usage_error("--postgres needs the orders: not with --no-parse");
    }
    if (!root.empty()) {
        o.files = snaptail::FileSet{};
        o.files->root = root;
        o.files->glob = glob;
        path = (o.files->root / glob).string();  // names the source in views and positions
    } else {
        o.path = path;
    }
    if (config.stream.empty()) {
        config.stream = path;
    }
    config.source = path;
    return config;
}

// --no-parse: the cheapest parser that still touches every line. Copyable, so it runs with
// any --parse-threads, through the same tailer, sink and summary as OrderParser.
struct LineLengthParser {
    std::size_t parse(std::string_view line) const noexcept { return line.size(); }
};

// --- aggregation ---------------------------------------------------------------------------

struct CoinStats {
    std::array<std::uint64_t, status_count> orders{};
    double filled_notional{0};  // sum of px * sz over filled orders

    std::uint64_t total() const noexcept {
        std::uint64_t sum = 0;
        for (std::uint64_t n : orders) {
            sum += n;
        }
        return sum;
    }
    void add(const CoinStats& other) noexcept {
        for (std::size_t i = 0; i < status_count; ++i) {
            orders[i] += other.orders[i];
        }
        filled_notional += other.filled_notional;
    }
};

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

// What the sink has counted. The sink updates it per batch under the mutex; the display
// copies it under the same mutex once a second.
struct Totals {
    std::unordered_map<std::string, CoinStats, StringHash, std::equal_to<>> coins;
    std::uint64_t records{0};
    std::uint64_t line_bytes{0};  // --no-parse: the sum of the lines' lengths (without '\n')
    Clock::time_point last_batch{};

    void add(std::size_t line_length) noexcept { line_bytes += line_length; }

    void add(const OrderRecord& r) {
        const std::string_view name = r.coin.view();
        auto it = coins.find(name);
        if (it == coins.end()) {
            it = coins.emplace(std::string(name), CoinStats{}).first;
        }
        CoinStats& coin = it->second;
        ++coin.orders[static_cast<std::size_t>(r.status)];
        if (r.status == Status::filled) {
            coin.filled_notional += r.px * r.sz;
        }
    }
};

// Parse errors can come by the million: the first few are printed, all are counted, and the
// last is kept for the table. Other faults are printed as they come. Thread-safe.
class ErrorLog {
  public:
    static constexpr std::uint64_t printed_parse_errors = 5;

    void report(const snaptail::Error& error) {
        std::lock_guard lock(mutex_);
        ++counts_[static_cast<std::size_t>(error.kind)];
        if (error.kind != snaptail::ErrorKind::parse) {
            snaptail::print_error(error);
            return;
        }
        last_parse_ = fmt::format("line {}: {}", error.line, error.message);
        const std::uint64_t n = counts_[static_cast<std::size_t>(error.kind)];
        if (n <= printed_parse_errors) {
            snaptail::print_error(error);
        }
        if (n == printed_parse_errors) {
            fmt::print(stderr, "order_stats: further parse errors are counted, not printed\n");
        }
    }

    std::string last_parse_error() const {
        std::lock_guard lock(mutex_);
        return last_parse_;
    }

  private:
    mutable std::mutex mutex_;
    std::array<std::uint64_t, 16> counts_{};
    std::string last_parse_;
};

// --- display -------------------------------------------------------------------------------

// 1234567 -> "1,234,567"
std::string grouped(std::uint64_t n) {
    std::string digits = fmt::format("{}", n);
    std::string out;
    out.reserve(digits.size() + digits.size() / 3);
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i != 0 && (digits.size() - i) % 3 == 0) {
            out.push_back(',');
        }
        out.push_back(digits[i]);
    }
    return out;
}

std::string human_bytes(std::uint64_t n) {
    constexpr std::array<std::string_view, 5> units{"B", "KiB", "MiB", "GiB", "TiB"};
    auto value = static_cast<double>(n);
    std::size_t unit = 0;
    while (value >= 1024 && unit + 1 < units.size()) {
        value /= 1024;
        ++unit;
    }
    return unit == 0 ? fmt::format("{} B", n) : fmt::format("{:.1f} {}", value, units[unit]);
}

double seconds_between(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double>(to - from).count();
}

long peak_rss_kib() {
    rusage self{};
    ::getrusage(RUSAGE_SELF, &self);
    return self.ru_maxrss;
}

// The per-coin table; `max_rows` coins at most (by orders), the rest summed in one line.
std::string coin_table(const Totals& totals, std::size_t max_rows) {
    std::vector<std::pair<std::string_view, const CoinStats*>> rows;
    rows.reserve(totals.coins.size());
    for (const auto& [name, stats] : totals.coins) {
        rows.emplace_back(name, &stats);
    }
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
        const auto ta = a.second->total();
        const auto tb = b.second->total();
        return ta != tb ? ta > tb : a.first < b.first;
    });

    std::string out;
    auto row = [&out](std::string_view name, const CoinStats& s) {
        fmt::format_to(std::back_inserter(out), "{:<10}", name);
        for (std::uint64_t n : s.orders) {
            fmt::format_to(std::back_inserter(out), " {:>11}", grouped(n));
        }
        fmt::format_to(std::back_inserter(out), " {:>12} {:>20}\n", grouped(s.total()),
                       grouped(static_cast<std::uint64_t>(s.filled_notional + 0.5)));
    };
    fmt::format_to(std::back_inserter(out), "{:<10}", "coin");
    for (std::size_t i = 0; i < status_count; ++i) {
        fmt::format_to(std::back_inserter(out), " {:>11}", to_string(static_cast<Status>(i)));
    }
    fmt::format_to(std::back_inserter(out), " {:>12} {:>20}\n", "orders", "filled notional $");

    CoinStats all;
    CoinStats rest;
    std::size_t rest_coins = 0;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        all.add(*rows[i].second);
        if (i < max_rows) {
            row(rows[i].first, *rows[i].second);
        } else {
            rest.add(*rows[i].second);
            ++rest_coins;
        }
    }
    if (rest_coins != 0) {
        row(fmt::format("+{} coins", rest_coins), rest);
    }
    row("all", all);
    return out;
}

struct Snapshot {
    Totals totals;
    snaptail::TailerStats stats;
    std::string last_parse_error;
};

struct Rates {
    double lines_per_s{0};
    double bytes_per_s{0};
};

std::string live_view(const Config& config, const Snapshot& s, const Rates& rates, double uptime) {
    std::string out = fmt::format(
        "order_stats {}  up {:.0f} s  parse threads {}\n"
        "lines {} ({:.0f}/s, {:.1f} MB/s)  orders {}  other lines {}  parse errors {}  "
        "lag {}\n\n",
        config.source, uptime, config.options.parse_threads, grouped(s.stats.lines),
        rates.lines_per_s, rates.bytes_per_s / 1e6, grouped(s.totals.records),
        grouped(s.stats.filtered), grouped(s.stats.parse_errors), human_bytes(s.stats.lag));
    out += coin_table(s.totals, 20);
    if (!s.last_parse_error.empty()) {
        out += fmt::format("\nlast parse error: {}\n", s.last_parse_error.substr(0, 200));
    }
    return out;
}

std::string_view parser_name(const Config& config) noexcept {
    return config.no_parse ? "none" : config.strict ? "simdjson-strict" : "simdjson";
}

std::string summary_text(const Config& config, const Snapshot& s, double busy, double wall) {
    std::string out = fmt::format(
        "order_stats {}: {} lines, {} ({} orders, {} other lines, {} parse errors)\n"
        "in {:.3f} s to the last batch ({:.0f} lines/s, {:.1f} MB/s), {:.3f} s in all; "
        "parser {}, parse threads {}; peak RSS {:.1f} MiB\n\n",
        config.source, grouped(s.stats.lines), human_bytes(s.stats.bytes),
        grouped(s.totals.records), grouped(s.stats.filtered), grouped(s.stats.parse_errors), busy,
        busy > 0 ? static_cast<double>(s.stats.lines) / busy : 0.0,
        busy > 0 ? static_cast<double>(s.stats.bytes) / busy / 1e6 : 0.0, wall, parser_name(config),
        config.options.parse_threads, static_cast<double>(peak_rss_kib()) / 1024.0);
    out += coin_table(s.totals, s.totals.coins.size());
    return out;
}

std::string summary_json(const Config& config, const Snapshot& s, double busy, double wall) {
    CoinStats all;
    for (const auto& [name, stats] : s.totals.coins) {
        all.add(stats);
    }
    std::string statuses;
    for (std::size_t i = 0; i < status_count; ++i) {
        fmt::format_to(std::back_inserter(statuses), "{}\"{}\":{}", i == 0 ? "" : ",",
                       to_string(static_cast<Status>(i)), all.orders[i]);
    }
    return fmt::format(
        R"({{"lines":{},"bytes":{},"orders":{},"other_lines":{},"parse_errors":{},)"
        R"("seconds":{:.3f},"wall_seconds":{:.3f},"lines_per_s":{:.0f},"mb_per_s":{:.1f},)"
        R"("peak_rss_mb":{:.1f},"parser":"{}","parse_threads":{},"strict":{},"line_bytes":{},)"
        R"("coins":{},"statuses":{{{}}},"filled_notional":{:.2f},"lag":{}}})",
        s.stats.lines, s.stats.bytes, s.totals.records, s.stats.filtered, s.stats.parse_errors,
        busy, wall, busy > 0 ? static_cast<double>(s.stats.lines) / busy : 0.0,
        busy > 0 ? static_cast<double>(s.stats.bytes) / busy / 1e6 : 0.0,
        static_cast<double>(peak_rss_kib()) / 1024.0, parser_name(config),
        config.options.parse_threads, config.strict, s.totals.line_bytes, s.totals.coins.size(),
        statuses, all.filled_notional, s.stats.lag);
}

#ifdef SNAPTAIL_ORDER_STATS_POSTGRES
// --postgres: one row per order, with the file and offset it came from.
snaptail::postgres::Options order_table(const Config& config) {
    snaptail::postgres::Options o;
    o.conninfo = config.postgres;
    o.table = config.postgres_table;
    o.stream = config.stream;
    o.columns = {"file_device", "file_inode", "line",   "byte_offset", "seq",
                 "coin",        "side",       "status", "px",          "sz"};
    o.setup_sql = fmt::format(
        "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, file_device bigint NOT NULL, "
        "file_inode bigint NOT NULL, line bigint NOT NULL, byte_offset bigint NOT NULL, "
        "seq bigint NOT NULL, coin text NOT NULL, side text NOT NULL, status text NOT NULL, "
        "px double precision NOT NULL, sz double precision NOT NULL)",
        snaptail::postgres::detail::quote_identifier(config.postgres_table));
    return o;
}

void order_row(const OrderRecord& r, const snaptail::RecordInfo& at, snaptail::postgres::Row& row) {
    row.add(std::bit_cast<std::int64_t>(at.file.device))
        .add(std::bit_cast<std::int64_t>(at.file.inode))
        .add(at.line)
        .add(at.offset)
        .add(r.seq)
        .add(r.coin.view())
        .add(r.side == order_stats::Side::buy ? "B" : "A")
        .add(to_string(r.status))
        .add(r.px)
        .add(r.sz);
}
#endif

// Follows the file with `parser` until idle exit, SIGINT or SIGTERM; prints the summary.
template <class Parser>
int follow(const Config& config, Parser parser) {
    using Record = snaptail::record_t<Parser>;
    // SIGINT and SIGTERM are blocked in every thread and taken by this one with sigtimedwait,
    // which also times the refresh. SIGUSR1 is the tailer thread's "I have finished".
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    std::mutex totals_mutex;
    Totals totals;
    ErrorLog errors;
#ifdef SNAPTAIL_ORDER_STATS_POSTGRES
    std::optional<snaptail::postgres::Sink<Record>> database;
    if constexpr (std::same_as<Record, OrderRecord>) {
        if (!config.postgres.empty()) {
            auto options = order_table(config);
            options.on_error = [&errors](const snaptail::Error& e) { errors.report(e); };
            database.emplace(std::move(options), order_row);
        }
    }
#endif
    auto sink = [&](snaptail::Batch<Record>& batch) {
#ifdef SNAPTAIL_ORDER_STATS_POSTGRES
        // First: a batch the database refuses is retried, and must not be counted twice.
        if (database) {
            (*database)(batch);
        }
#endif
        std::lock_guard lock(totals_mutex);
        for (const Record& record : batch.records()) {
            totals.add(record);
        }
        if constexpr (std::same_as<Record, OrderRecord>) {
            totals.records += batch.size();  // orders; --no-parse counts none
        }
        totals.last_batch = Clock::now();
    };

    std::optional<snaptail::BatchingTailer<Parser>> tailer;
    try {
        tailer.emplace(config.options, std::move(parser), sink,
                       [&errors](const snaptail::Error& e) { errors.report(e); });
    } catch (const snaptail::InvalidOptions& e) {
        usage_error(e.what());
    } catch (const std::exception& e) {
        fmt::print(stderr, "order_stats: {}\n", e.what());
        return 1;
    }

    auto snapshot = [&] {
        Snapshot s;
        {
            std::lock_guard lock(totals_mutex);
            s.totals = totals;
        }
        s.stats = tailer->stats();
        s.last_parse_error = errors.last_parse_error();
        return s;
    };

    const auto started = Clock::now();
    {
        std::lock_guard lock(totals_mutex);
        totals.last_batch = started;
    }
    const pthread_t main_thread = pthread_self();
    std::atomic<bool> finished{false};
    std::atomic<bool> failed{false};
    std::jthread worker([&](std::stop_token stop) {
        try {
            tailer->run(stop);
        } catch (const std::exception& e) {
            fmt::print(stderr, "order_stats: the tailer stopped: {}\n", e.what());
            failed = true;
        }
        finished = true;
        pthread_kill(main_thread, SIGUSR1);
    });

    const bool live = !config.quiet;
    const bool tty = ::isatty(STDOUT_FILENO) == 1;
    auto next_refresh = started + std::chrono::seconds{1};
    auto last_refresh = started;
    snaptail::TailerStats last_stats;
    while (!finished) {
        const auto wait = std::max(Clock::duration::zero(), next_refresh - Clock::now());
        const auto wait_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
        const timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000),
                               static_cast<long>(wait_ns % 1'000'000'000)};
        const int signal = ::sigtimedwait(&signals, nullptr, &timeout);
        if (signal == SIGINT || signal == SIGTERM) {
            break;
        }
        if (signal >= 0 || errno != EAGAIN) {
            continue;  // SIGUSR1 (checked by the loop), or EINTR
        }
        const auto now = Clock::now();
        next_refresh = now + std::chrono::seconds{1};
        if (!live) {
            continue;
        }
        const Snapshot s = snapshot();
        const double dt = seconds_between(last_refresh, now);
        const Rates rates{static_cast<double>(s.stats.lines - last_stats.lines) / dt,
                          static_cast<double>(s.stats.bytes - last_stats.bytes) / dt};
        last_refresh = now;
        last_stats = s.stats;
        if (tty) {
            fmt::print("\x1b[H\x1b[2J{}",
                       live_view(config, s, rates, seconds_between(started, now)));
        } else {
            fmt::print(
                "{:.0f} s: lines {} ({:.0f}/s, {:.1f} MB/s), orders {}, parse errors {}, "
                "lag {}\n",
                seconds_between(started, now), s.stats.lines, rates.lines_per_s,
                rates.bytes_per_s / 1e6, s.totals.records, s.stats.parse_errors,
                human_bytes(s.stats.lag));
        }
        std::fflush(stdout);
    }
    worker.request_stop();
    worker.join();  // the lines already read are counted first

    const auto ended = Clock::now();
    const Snapshot s = snapshot();
    const double busy = seconds_between(started, s.totals.last_batch);
    const double wall = seconds_between(started, ended);
    if (config.json) {
        fmt::print("{}\n", summary_json(config, s, busy, wall));
    } else {
        const std::string_view clear = !live ? "" : tty ? "\x1b[H\x1b[2J" : "\n";
        fmt::print("{}{}", clear, summary_text(config, s, busy, wall));
    }
    return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    Config config = parse_args(argc, argv);
#ifdef SNAPTAIL_ORDER_STATS_POSTGRES
    if (!config.postgres.empty()) {
        // Exactly once: resume just past what the table holds.
        try {
            if (config.options.files) {
                // One position per file: each resumes just past its last stored order.
                config.options.resume_positions =
                    snaptail::postgres::load_positions(config.postgres, config.stream);
            } else if (auto stored =
                           snaptail::postgres::load_position(config.postgres, config.stream)) {
                config.options.start = snaptail::StartAt::position(*stored);
            }
        } catch (const std::exception& e) {
            fmt::print(stderr, "order_stats: {}\n", e.what());
            return 1;
        }
    }
#endif
    if (config.no_parse) {
        return follow(config, LineLengthParser{});
    }
    return follow(config, OrderParser{config.strict});
}
