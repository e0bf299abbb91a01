// snaptail-follow: `tail -F` with batching. Prints every line of PATH to stdout, byte-exact,
// in file order, following rotation and truncation.
#include <snaptail/batching_tailer.hpp>

#include "example_cli.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

namespace {

using snaptail::examples::option_value;
using snaptail::examples::parse_number;
using snaptail::examples::print_help;
using snaptail::examples::take_path;
using snaptail::examples::usage_error;
using snaptail::examples::write_all;

constexpr std::string_view usage = R"(usage: snaptail-follow [options] PATH
Follows PATH like `tail -F` and prints each line on stdout, byte-exact and in file order.

  --from-beginning          start at the first line of the existing file (default)
  --from-end                start after the existing lines
  --batch-lines N           deliver a batch at N lines (default 4096)
  --batch-bytes N           ... or at N bytes (default 1048576)
  --linger-ms N             ... or when its first line has waited N ms (default 20)
  --max-line-bytes N        longest line delivered whole (default 1048576)
  --long-lines POLICY       truncate|skip|split lines longer than that (default truncate)
  --read-ahead-bytes N      bytes read but not yet delivered, at most (default 8388608)
  --poll-ms N               poll interval, and inotify's guard check (default 250)
  --rotate-wait-ms N        read a rotated file for late writes this long (default 1000)
  --no-inotify              poll instead of using inotify
  --checkpoint FILE         resume from FILE if it is valid for PATH (otherwise it is reported
                            and --from-* decide); commit positions to it
  --commit-interval-ms N    write the checkpoint at most every N ms (default 0: every batch)
  --sink-delay-ms N         sleep N ms per batch (a slow consumer)
  --idle-exit-ms N          exit 0 once all read lines are out and nothing came for N ms
  --show-batches            describe each batch on stderr
  --stats                   print the final stats as one JSON object on stderr
  -h, --help                this text
)";

struct Config {
    snaptail::TailOptions options;
    std::chrono::milliseconds sink_delay{0};
    bool show_batches{false};
    bool print_stats{false};
};

Config parse_args(int argc, char** argv) {
    Config config;
    auto& o = config.options;
    std::optional<std::string> path;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&] { return option_value(i, argc, argv); };
        auto ms = [&] { return std::chrono::milliseconds(parse_number<unsigned>(arg, value())); };
        auto bytes = [&] { return parse_number<std::size_t>(arg, value()); };
        if (arg == "-h" || arg == "--help") {
            print_help();
        } else if (arg == "--from-beginning") {
            o.start = snaptail::StartAt::beginning;
        } else if (arg == "--from-end") {
            o.start = snaptail::StartAt::end;
        } else if (arg == "--batch-lines") {
            o.max_batch_lines = bytes();
        } else if (arg == "--batch-bytes") {
            o.max_batch_bytes = bytes();
        } else if (arg == "--linger-ms") {
            o.linger = ms();
        } else if (arg == "--max-line-bytes") {
            o.max_line_bytes = bytes();
        } else if (arg == "--long-lines") {
            const std::string_view policy = value();
            if (policy == "truncate") {
                o.long_lines = snaptail::LongLinePolicy::truncate;
            } else if (policy == "skip") {
                o.long_lines = snaptail::LongLinePolicy::skip;
            } else if (policy == "split") {
                o.long_lines = snaptail::LongLinePolicy::split;
            } else {
                usage_error(
                    fmt::format("--long-lines takes truncate, skip or split, not '{}'", policy));
            }
        } else if (arg == "--read-ahead-bytes") {
            o.read_ahead_bytes = bytes();
        } else if (arg == "--poll-ms") {
            o.poll_interval = ms();
        } else if (arg == "--rotate-wait-ms") {
            o.rotate_wait = ms();
        } else if (arg == "--checkpoint") {
            o.checkpoint_path = std::string(value());
            // A checkpoint that is not valid for PATH is reported, and --from-* decide.
            o.corrupt_checkpoint = snaptail::CorruptCheckpoint::use_start;
        } else if (arg == "--commit-interval-ms") {
            o.commit_interval = ms();
        } else if (arg == "--no-inotify") {
            o.use_inotify = false;
        } else if (arg == "--sink-delay-ms") {
            config.sink_delay = ms();
        } else if (arg == "--idle-exit-ms") {
            o.idle_exit = ms();
        } else if (arg == "--show-batches") {
            config.show_batches = true;
        } else if (arg == "--stats") {
            config.print_stats = true;
        } else {
            take_path(arg, path);
        }
    }
    if (!path) {
        usage_error("PATH is missing");
    }
    o.path = *path;
    return config;
}

std::string stats_json(const snaptail::TailerStats& s) {
    return fmt::format(
        R"({{"lines":{},"bytes":{},"records":{},"filtered":{},"parse_errors":{},"long_lines":{},)"
        R"("batches":{},"sink_errors":{},"skipped_batches":{},"skipped_records":{},)"
        R"("rotations":{},"truncations":{},"io_errors":{},"commits":{},"checkpoint_errors":{},)"
        R"("offset":{},"lag":{},)"
        R"("pending_bytes":{},"read_ahead_high_water":{},"parallel_reads":{}}})",
        s.lines, s.bytes, s.records, s.filtered, s.parse_errors, s.long_lines, s.batches,
        s.sink_errors, s.skipped_batches, s.skipped_records, s.rotations, s.truncations,
        s.io_errors, s.commits, s.checkpoint_errors, s.offset, s.lag, s.pending_bytes,
        s.read_ahead_high_water, s.parallel_reads);
}

}  // namespace

int main(int argc, char** argv) {
    snaptail::examples::usage = {"snaptail-follow", usage};
    Config config = parse_args(argc, argv);

    // SIGINT and SIGTERM are taken by a thread with sigwait, which may request stop safely;
    // every other thread (the tailer is this one) has them blocked.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    std::stop_source stop;
    std::atomic<bool> output_failed{false};
    std::string out;
    std::uint64_t batch_number = 0;
    auto sink = [&](snaptail::Batch<std::string_view>& batch) {
        out.clear();
        for (std::string_view line : batch.records()) {
            out.append(line);
            out.push_back('\n');
        }
        if (config.sink_delay.count() > 0) {
            std::this_thread::sleep_for(config.sink_delay);
        }
        try {
            // The batch counts as delivered only once its bytes are written.
            write_all(STDOUT_FILENO, out, "write to stdout");
        } catch (const std::system_error& e) {
            // stdout is gone (a closed pipe): nothing will ever take these lines.
            fmt::print(stderr, "snaptail-follow: {}; stopping\n", e.what());
            output_failed = true;
            stop.request_stop();
            throw;  // not delivered: the tailer reports these lines as undelivered
        }
        if (config.show_batches) {
            fmt::print(stderr, "batch {}: {} lines ({}-{}), {} bytes, up to {}\n", ++batch_number,
                       batch.size(), batch.first_line(), batch.last_line(), batch.bytes(),
                       batch.end_position());
        }
    };

    std::optional<snaptail::BatchingTailer<snaptail::RawLineParser>> tailer;
    try {
        tailer.emplace(config.options, snaptail::RawLineParser{}, sink);
    } catch (const snaptail::InvalidOptions& e) {
        usage_error(e.what());
    } catch (const snaptail::CheckpointError& e) {
        fmt::print(stderr, "snaptail-follow: {}\n", e.what());
        return 1;
    }

    std::atomic<bool> done{false};
    std::jthread signal_thread([&] {
        const timespec tick{0, 100'000'000};
        while (!done) {
            if (::sigtimedwait(&signals, nullptr, &tick) > 0) {
                stop.request_stop();
                return;
            }
        }
    });

    tailer->run(stop.get_token());
    done = true;
    if (config.print_stats) {
        fmt::print(stderr, "{}\n", stats_json(tailer->stats()));
    }
    return output_failed ? 1 : 0;
}
