// pg_follow: the driver of the PostgreSQL kill tests. Follows PATH like snaptail-follow, but
// writes every line into TABLE (RawLineMapping) through snaptail::postgres::Sink, resuming from
// the position stored for STREAM; exits once idle for IDLE_EXIT_MS (0: never).
//
//   pg_follow CONNINFO TABLE STREAM PATH BATCH_LINES IDLE_EXIT_MS
#include <snaptail/batching_tailer.hpp>
#include <snaptail/sinks/postgres.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <stop_token>
#include <string>
#include <thread>

int main(int argc, char** argv) {
    using namespace std::chrono_literals;
    if (argc != 7) {
        fmt::print(stderr,
                   "usage: pg_follow CONNINFO TABLE STREAM PATH BATCH_LINES IDLE_EXIT_MS\n");
        return 2;
    }
    const std::string conninfo = argv[1];
    const std::string stream = argv[3];
    snaptail::TailOptions tail;
    tail.path = argv[4];
    tail.max_batch_lines = std::strtoull(argv[5], nullptr, 10);
    tail.idle_exit = std::chrono::milliseconds(std::strtoll(argv[6], nullptr, 10));
    tail.linger = 2ms;
    tail.poll_interval = 20ms;
    tail.rotate_wait = 100ms;
    tail.sink_retry_initial = 10ms;
    tail.sink_retry_max = 200ms;
    try {
        if (auto stored = snaptail::postgres::load_position(conninfo, stream)) {
            tail.start = snaptail::StartAt::position(*stored);
            fmt::print("resuming at {}\n", *stored);
            std::fflush(stdout);
        }
        snaptail::postgres::Sink<std::string_view> sink(
            snaptail::postgres::raw_lines_options(conninfo, argv[2], stream),
            snaptail::postgres::RawLineMapping{});
        snaptail::BatchingTailer tailer(tail, snaptail::RawLineParser{}, sink,
                                        snaptail::print_error);
        tailer.run(std::stop_token{});
        const auto s = sink.stats();
        fmt::print(
            "batches={} rows={} skipped_batches={} skipped_rows={} failures={} connects={}\n",
            s.batches, s.rows, s.skipped_batches, s.skipped_rows, s.failures, s.connects);
        std::fflush(stdout);
    } catch (const std::exception& e) {
        fmt::print(stderr, "pg_follow: {}\n", e.what());
        return 1;
    }
    return 0;
}
