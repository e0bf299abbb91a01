// bench_sinks: lines and batches per second through the sinks, on loopback, against servers of
// its own (PostgreSQL with fsync off, as in the tests; nats-server with JetStream), each beside
// a reference that moves the same lines without snaptail:
//   PostgreSQL: psql's \copy of the lines; the sink with COPY; the sink with multi-row INSERT.
//   JetStream (one node, and an R3 stream on three nodes): a loop of js_PublishAsync with the
//   same client and the same message ids (nats bench style); the sink.
// A benchmark, not a test: it prints one table and exits 0 unless something failed.
//
//   bench_sinks [--lines N] [--js-lines N] [--batch-lines N]
#include "server_support.hpp"

#include <snaptail/batching_tailer.hpp>
#ifdef SNAPTAIL_BENCH_POSTGRES
#include <snaptail/sinks/postgres.hpp>
#endif
#ifdef SNAPTAIL_BENCH_JETSTREAM
#include <snaptail/sinks/jetstream.hpp>
#endif

#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace snaptail::test;
using Clock = std::chrono::steady_clock;

struct Config {
    std::size_t lines{500'000};
    std::size_t js_lines{200'000};
    std::size_t batch_lines{4096};
};

Config parse(int argc, char** argv) {
    Config c;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view flag = argv[i];
        const std::size_t value = std::strtoull(argv[i + 1], nullptr, 10);
        if (flag == "--lines") {
            c.lines = value;
        } else if (flag == "--js-lines") {
            c.js_lines = value;
        } else if (flag == "--batch-lines") {
            c.batch_lines = value;
        } else {
            fmt::print(stderr, "usage: bench_sinks [--lines N] [--js-lines N] [--batch-lines N]\n");
            std::exit(2);
        }
    }
    return c;
}

/// `n` lines of 90-ish printable bytes (no tab or backslash: psql's \copy reads them as is).
void write_log(const fs::path& path, std::size_t n) {
    std::mt19937_64 rng(1);
    std::string text;
    constexpr std::string_view alphabet =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .:=/-_";
    for (std::size_t i = 1; i <= n; ++i) {
        text += fmt::format("seq={} ", i);
        for (int j = 0; j < 80; ++j) {
            text += alphabet[rng() % alphabet.size()];
        }
        text += '\n';
    }
    append(path, text);
}

double cpu_seconds() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct Row {
    std::string target;
    std::string how;
    std::size_t lines;
    std::size_t batches;
    double seconds;
    double sink_seconds;  // inside the sink (snaptail rows); 0 for references
    double cpu;           // this process's CPU time
};

std::vector<Row> rows;

// 1234567.8 -> "1,234,568"
std::string grouped(double value) {
    const std::string digits = fmt::format("{:.0f}", value);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i != 0 && (digits.size() - i) % 3 == 0) {
            out += ',';
        }
        out += digits[i];
    }
    return out;
}

void print_row(const Row& r) {
    const double lps = static_cast<double>(r.lines) / r.seconds;
    fmt::print(
        "| {} | {} | {} | {:.3f} | {} | {} | {} | {:.2f} |\n", r.target, r.how, r.lines, r.seconds,
        grouped(lps),
        r.batches == 0 ? std::string("-") : grouped(static_cast<double>(r.batches) / r.seconds),
        r.sink_seconds > 0 ? fmt::format("{:.0f}%", 100 * r.sink_seconds / r.seconds)
                           : std::string("-"),
        r.cpu);
    std::fflush(stdout);
}

/// Follows `log` to its end through `sink` (catch-up, linger 0); the time to the last batch.
template <class Sink>
Row through_tailer(std::string target, std::string how, const fs::path& log,
                   std::size_t batch_lines, Sink sink) {
    snaptail::TailOptions options;
    options.path = log;
    options.max_batch_lines = batch_lines;
    options.max_batch_bytes = std::size_t{64} << 20;
    options.linger = std::chrono::milliseconds(0);
    options.idle_exit = std::chrono::milliseconds(300);
    std::size_t lines = 0;
    std::size_t batches = 0;
    double in_sink = 0;
    Clock::time_point last{};
    const double cpu_before = cpu_seconds();
    const auto start = Clock::now();
    snaptail::BatchingTailer tailer(options, snaptail::RawLineParser{},
                                    [&](snaptail::Batch<std::string_view>& batch) {
                                        const auto t0 = Clock::now();
                                        sink(batch);
                                        last = Clock::now();
                                        in_sink += std::chrono::duration<double>(last - t0).count();
                                        lines += batch.size();
                                        ++batches;
                                    });
    tailer.run(std::stop_token{});
    const double cpu = cpu_seconds() - cpu_before;
    return Row{std::move(target),
               std::move(how),
               lines,
               batches,
               std::chrono::duration<double>(last - start).count(),
               in_sink,
               cpu};
}

#ifdef SNAPTAIL_BENCH_POSTGRES
void bench_postgres(const Config& c, const fs::path& log, const TempDir& dir) {
    if (auto why = PostgresServer::unavailable()) {
        fmt::print("PostgreSQL skipped: {}\n", *why);
        return;
    }
    PostgresServer server;
    const auto psql = find_program("psql", {*postgres_bin_dir()});
    if (psql) {
        run_program({psql->string(), server.conninfo(), "-q", "-c",
                     "CREATE TABLE plain (text text NOT NULL)"},
                    dir / "psql.log");
        const auto start = Clock::now();
        run_program({psql->string(), server.conninfo(), "-q", "-c",
                     fmt::format("\\copy plain (text) FROM '{}'", log.string())},
                    dir / "psql.log");
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        rows.push_back({"PostgreSQL", "psql \\copy (text only)", c.lines, 0, seconds, 0, 0});
        print_row(rows.back());
    }
    {
        // Like for like with psql: the text alone, in one column.
        snaptail::postgres::Options options;
        options.conninfo = server.conninfo();
        options.table = "lines_text";
        options.columns = {"text"};
        options.stream = "text";
        options.setup_sql = "CREATE TABLE IF NOT EXISTS lines_text (text text NOT NULL)";
        snaptail::postgres::Sink<std::string_view> sink(
            options, [](std::string_view line, const snaptail::RecordInfo&,
                        snaptail::postgres::Row& row) { row.add(line); });
        rows.push_back(through_tailer("PostgreSQL", "snaptail sink, COPY (text only)", log,
                                      c.batch_lines, sink));
        print_row(rows.back());
    }
    for (auto method :
         {snaptail::postgres::WriteMethod::copy, snaptail::postgres::WriteMethod::insert}) {
        const bool copy = method == snaptail::postgres::WriteMethod::copy;
        auto options = snaptail::postgres::raw_lines_options(
            server.conninfo(), copy ? "lines_copy" : "lines_insert", copy ? "copy" : "insert");
        options.method = method;
        snaptail::postgres::Sink<std::string_view> sink(options,
                                                        snaptail::postgres::RawLineMapping{});
        rows.push_back(through_tailer(
            "PostgreSQL",
            copy ? "snaptail sink, COPY (5 columns)" : "snaptail sink, INSERT x1000 (5 columns)",
            log, c.batch_lines, sink));
        print_row(rows.back());
    }
}
#endif

#ifdef SNAPTAIL_BENCH_JETSTREAM
/// A stream on `subject` over `urls`, `replicas` copies.
void add_stream(const std::string& urls, const std::string& name, const std::string& subject,
                int replicas) {
    natsConnection* nc = nullptr;
    snaptail::jetstream::detail::check(natsConnection_ConnectTo(&nc, urls.c_str()), "connect");
    snaptail::jetstream::detail::ConnectionPtr conn(nc);
    jsCtx* raw = nullptr;
    snaptail::jetstream::detail::check(natsConnection_JetStream(&raw, nc, nullptr), "js");
    snaptail::jetstream::detail::ContextPtr js(raw);
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    config.Name = name.c_str();
    const char* subjects[] = {subject.c_str()};
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Replicas = replicas;
    if (!wait_until(
            [&] {
                jsStreamInfo* info = nullptr;
                jsErrCode code{};
                const natsStatus s = js_AddStream(&info, js.get(), &config, nullptr, &code);
                jsStreamInfo_Destroy(info);
                return s == NATS_OK;
            },
            60s)) {
        throw std::runtime_error("cannot add stream " + name);
    }
}

/// js_PublishAsync of every line with the same client and ids as the sink, nats bench style.
Row publish_loop(const std::string& target, const std::string& urls, const std::string& subject,
                 const fs::path& log, std::size_t max_in_flight) {
    const std::string content = slurp_file(log);
    natsConnection* nc = nullptr;
    snaptail::jetstream::detail::check(natsConnection_ConnectTo(&nc, urls.c_str()), "connect");
    snaptail::jetstream::detail::ConnectionPtr conn(nc);
    jsOptions js_options;
    jsOptions_Init(&js_options);
    js_options.PublishAsync.MaxPending = static_cast<int64_t>(max_in_flight);
    jsCtx* raw = nullptr;
    snaptail::jetstream::detail::check(natsConnection_JetStream(&raw, nc, &js_options), "js");
    snaptail::jetstream::detail::ContextPtr js(raw);
    const double cpu_before = cpu_seconds();
    const auto start = Clock::now();
    std::size_t offset = 0;
    std::size_t lines = 0;
    jsPubOptions publish;
    jsPubOptions_Init(&publish);
    std::string id;
    while (offset < content.size()) {
        const std::size_t end = content.find('\n', offset);
        const std::string_view line(content.data() + offset, end - offset);
        id = snaptail::jetstream::message_id(snaptail::RecordInfo{{1, 2}, 0, offset, {}}, line);
        publish.MsgId = id.c_str();
        snaptail::jetstream::detail::check(js_PublishAsync(js.get(), subject.c_str(), line.data(),
                                                           static_cast<int>(line.size()), &publish),
                                           "publish");
        offset = end + 1;
        ++lines;
    }
    jsPubOptions complete;
    jsPubOptions_Init(&complete);
    complete.MaxWait = 60000;
    snaptail::jetstream::detail::check(js_PublishAsyncComplete(js.get(), &complete), "complete");
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return Row{target,
               "js_PublishAsync loop (same client)",
               lines,
               0,
               seconds,
               0,
               cpu_seconds() - cpu_before};
}

void bench_jetstream(const Config& c, const fs::path& log) {
    if (auto why = NatsServer::unavailable()) {
        fmt::print("JetStream skipped: {}\n", *why);
        return;
    }
    auto run = [&](const std::string& target, const std::string& urls, int replicas) {
        add_stream(urls, "LOOP", "loop", replicas);
        rows.push_back(publish_loop(target, urls, "loop", log, 4096));
        print_row(rows.back());
        add_stream(urls, "SINK", "sink", replicas);
        snaptail::jetstream::Options options;
        options.url = urls;
        options.subject = "sink";
        snaptail::jetstream::Sink<std::string_view> sink(options,
                                                         snaptail::jetstream::RawLinePayload{});
        rows.push_back(
            through_tailer(target, "snaptail sink (max 4096 in flight)", log, c.batch_lines, sink));
        print_row(rows.back());
    };
    {
        NatsServer one;
        run("JetStream, 1 node", one.url(), 1);
    }
    const std::array<int, 3> routes{free_port(), free_port(), free_port()};
    std::vector<std::unique_ptr<NatsServer>> nodes;
    for (int i = 0; i < 3; ++i) {
        std::vector<int> others;
        for (int j = 0; j < 3; ++j) {
            if (j != i) {
                others.push_back(routes[static_cast<std::size_t>(j)]);
            }
        }
        nodes.push_back(std::make_unique<NatsServer>(NatsServer::Cluster{
            fmt::format("n{}", i), routes[static_cast<std::size_t>(i)], others}));
    }
    run("JetStream, 3 nodes, R3",
        fmt::format("{},{},{}", nodes[0]->url(), nodes[1]->url(), nodes[2]->url()), 3);
}
#endif

}  // namespace

int main(int argc, char** argv) {
    const Config c = parse(argc, argv);
    TempDir dir;
    fmt::print(
        "| target | how | lines | seconds | lines/s | batches/s | in sink | CPU s |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|\n");
    try {
#ifdef SNAPTAIL_BENCH_POSTGRES
        const auto pg_log = dir / "pg.log";
        write_log(pg_log, c.lines);
        bench_postgres(c, pg_log, dir);
#endif
#ifdef SNAPTAIL_BENCH_JETSTREAM
        const auto js_log = dir / "js.log";
        write_log(js_log, c.js_lines);
        bench_jetstream(c, js_log);
#endif
    } catch (const std::exception& e) {
        fmt::print(stderr, "bench_sinks: {}\n", e.what());
        return 1;
    }
    return 0;
}
