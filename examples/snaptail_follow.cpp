// snaptail-follow: `tail -F` with batching. Prints every line of PATH (or of the files under
// --dir that match --glob) to stdout, byte-exact, in file order, following rotation and
// truncation.
#include <snaptail/batching_tailer.hpp>
#include <snaptail/prometheus.hpp>
#ifdef SNAPTAIL_FOLLOW_JETSTREAM
#include <snaptail/sinks/jetstream.hpp>
#endif

#include "example_cli.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace {

using snaptail::examples::add_choice;
using snaptail::examples::add_milliseconds;
using snaptail::examples::add_number;
using snaptail::examples::usage_error;

/// Writes batches of lines to a descriptor, each line followed by '\n', without copying them.
/// The lines of a batch view the tailer's read buffer, where each complete line is followed by
/// the '\n' that ended it: consecutive records whose bytes are adjacent there (the next one
/// starting just after the previous one's '\n') form one run, written straight from the
/// buffer with writev. A run ends where the buffer differs from the output: a stripped '\r', a
/// truncated or split long line, a skipped line, the end of the batch; a '\n' is written after
/// it from elsewhere. Short runs (CRLF lines, mostly) are copied instead, since an iovec costs
/// the kernel more than copying a few bytes. Not thread-safe.
class BatchWriter {
  public:
    /// `what` names the output in errors ("write to stdout").
    BatchWriter(int fd, const char* what)
        : fd_(fd),
          what_(what),
          iov_max_(std::max(16L, ::sysconf(_SC_IOV_MAX))),
          staging_(std::make_unique<char[]>(staging_bytes)) {
        iov_.reserve(static_cast<std::size_t>(iov_max_));
    }

    /// Writes every record of `batch` followed by '\n', byte for byte what copying them into
    /// one buffer would write, and returns once all of it is written (retrying short writes
    /// and EINTR). Throws std::system_error when a write fails (EPIPE: the reader is gone).
    void write(const snaptail::Batch<std::string_view>& batch) {
        // A write that threw left its iovecs: a batch offered again is written from its start.
        iov_.clear();
        staged_ = 0;
        const auto records = batch.records();
        if (records.empty()) {
            return;
        }
        const char* begin = records.front().data();
        const char* end = begin + records.front().size();
        for (std::size_t i = 1; i < records.size(); ++i) {
            const std::string_view record = records[i];
            // Adjacent, with the '\n' that ended the previous line between them (both lie in
            // the bytes this batch consumed, so reading that byte is safe).
            if (record.data() == end + 1 && *end == '\n') {
                end = record.data() + record.size();
                continue;
            }
            add_run(begin, end, false);
            begin = record.data();
            end = begin + record.size();
        }
        add_run(begin, end, ends_with_newline(batch));
        flush();
    }

  private:
    // Runs shorter than this are copied into the staging buffer rather than given an iovec.
    static constexpr std::size_t copy_below = 256;
    // Copied bytes gathered before they are written (then the buffer is reused).
    static constexpr std::size_t staging_bytes = std::size_t{64} << 10;
    static constexpr char newline[1] = {'\n'};

    // Whether the batch's last record is followed in the buffer by the '\n' that ended its
    // line: the batch consumed exactly one byte more than the record, and it is '\n'. Not so
    // for the last line of a retired file without a newline (the byte after it may not be
    // the batch's, so it is not read), for a stripped '\r', or for a truncated line.
    static bool ends_with_newline(const snaptail::Batch<std::string_view>& batch) {
        const std::size_t last = batch.size() - 1;
        const snaptail::LineInfo info = batch.line_of(last);
        const std::string_view record = batch.records()[last];
        return info.line != 0 && batch.end_position().offset == info.offset + record.size() + 1 &&
               record.data()[record.size()] == '\n';
    }

    // Adds the run [begin, end) and its '\n' (`newline_follows`: the byte at `end` is it).
    void add_run(const char* begin, const char* end, bool newline_follows) {
        const auto size = static_cast<std::size_t>(end - begin);
        if (size < copy_below) {
            stage(begin, size);
            stage(newline, 1);
        } else if (newline_follows) {
            add(begin, size + 1);
        } else {
            add(begin, size);
            add(newline, 1);
        }
    }

    // Copies [data, data + size) into the staging buffer and adds it.
    void stage(const char* data, std::size_t size) {
        // Flushes first when the copy or its iovec would not fit: a flush reuses the staging
        // buffer from its start, so it must not come between the copy and its iovec.
        if (staged_ + size > staging_bytes || iov_.size() == static_cast<std::size_t>(iov_max_)) {
            flush();
        }
        char* at = staging_.get() + staged_;
        std::memcpy(at, data, size);
        staged_ += size;
        add(at, size);
    }

    // Adds an iovec, or extends the last one when the bytes follow on from it. Flushes when
    // all IOV_MAX are taken (stage() has flushed already for bytes in the staging buffer).
    void add(const char* data, std::size_t size) {
        if (size == 0) {
            return;
        }
        if (!iov_.empty()) {
            iovec& last = iov_.back();
            if (static_cast<const char*>(last.iov_base) + last.iov_len == data) {
                last.iov_len += size;
                return;
            }
            if (iov_.size() == static_cast<std::size_t>(iov_max_)) {
                flush();
            }
        }
        iov_.push_back(iovec{const_cast<char*>(data), size});
    }

    // Writes every iovec gathered, at most IOV_MAX per call, resuming after short writes.
    void flush() {
        std::size_t i = 0;
        while (i < iov_.size()) {
            const auto count =
                static_cast<int>(std::min(iov_.size() - i, static_cast<std::size_t>(iov_max_)));
            const ssize_t n = ::writev(fd_, iov_.data() + i, count);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                throw std::system_error(errno, std::generic_category(), what_);
            }
            if (n == 0) {
                throw std::system_error(EIO, std::generic_category(), what_);
            }
            auto left = static_cast<std::size_t>(n);
            while (i < iov_.size() && left >= iov_[i].iov_len) {
                left -= iov_[i].iov_len;
                ++i;
            }
            if (left > 0) {
                iov_[i].iov_base = static_cast<char*>(iov_[i].iov_base) + left;
                iov_[i].iov_len -= left;
            }
        }
        iov_.clear();
        staged_ = 0;
    }

    int fd_;
    const char* what_;
    long iov_max_;
    std::vector<iovec> iov_;
    std::unique_ptr<char[]> staging_;
    std::size_t staged_{0};
};

struct Config {
    snaptail::TailOptions options;
    std::chrono::milliseconds sink_delay{0};
    bool show_batches{false};
    bool print_stats{false};
    std::string metrics_file;
    std::chrono::milliseconds metrics_interval{5000};
    std::string jetstream_url;
    std::string subject;
};

Config parse_args(int argc, char** argv) {
    Config config;
    auto& o = config.options;
    CLI::App app(
        "Follows PATH like `tail -F` (or the files under --dir that match --glob) and prints\n"
        "each line on stdout, byte-exact and in order within its file.",
        "snaptail-follow");
    snaptail::examples::set_style(app);
    std::string path;
    std::string root;
    std::string glob;
    bool all_files = false;
    snaptail::FileSet set;
    // Where to start: the last of --from-beginning and --from-end given wins.
    app.add_flag_callback(
           "--from-beginning", [&o] { o.start = snaptail::StartAt::beginning; },
           "start at the first line of the existing file (default)")
        ->trigger_on_parse();
    app.add_flag_callback(
           "--from-end", [&o] { o.start = snaptail::StartAt::end; },
           "start after the existing lines")
        ->trigger_on_parse();
    add_number(app, "--batch-lines", o.max_batch_lines,
               "deliver a batch at N lines (default 4096)");
    add_number(app, "--batch-bytes", o.max_batch_bytes, "... or at N bytes (default 1048576)");
    add_milliseconds(app, "--linger-ms", o.linger,
                     "... or when its first line has waited N ms (default 20)");
    add_number(app, "--max-line-bytes", o.max_line_bytes,
               "longest line delivered whole (default 1048576)");
    add_choice(app, "--long-lines", o.long_lines,
               {{"truncate", snaptail::LongLinePolicy::truncate},
                {"skip", snaptail::LongLinePolicy::skip},
                {"split", snaptail::LongLinePolicy::split}},
               "truncate|skip|split lines longer than that (default truncate)")
        ->type_name("POLICY");
    add_number(app, "--parse-threads", o.parse_threads,
               "threads that parse and, catching up, read (default 1)");
    add_number(app, "--read-ahead-bytes", o.read_ahead_bytes,
               "bytes read but not yet delivered, at most (default 8388608)");
    add_milliseconds(app, "--poll-ms", o.poll_interval,
                     "poll interval, and inotify's guard check (default 250)");
    add_milliseconds(app, "--rotate-wait-ms", o.rotate_wait,
                     "read a rotated file for late writes this long (default 1000)");
    app.add_flag_callback(
        "--no-inotify", [&o] { o.use_inotify = false; }, "poll instead of using inotify");
    app.add_option_function<std::string>(
           "--checkpoint",
           [&o](const std::string& file) {
               o.checkpoint_path = file;
               // A checkpoint that is not valid for PATH is reported, and --from-* decide.
               o.corrupt_checkpoint = snaptail::CorruptCheckpoint::use_start;
           },
           "resume from FILE if it is valid for PATH (otherwise it is reported\n"
           "and --from-* decide); commit positions to it")
        ->type_name("FILE");
    add_milliseconds(app, "--commit-interval-ms", o.commit_interval,
                     "write the checkpoint at most every N ms (default 0: every batch)");
    add_milliseconds(app, "--sink-delay-ms", config.sink_delay,
                     "sleep N ms per batch (a slow consumer)");
    add_milliseconds(app, "--idle-exit-ms", o.idle_exit,
                     "exit 0 once all read lines are out and nothing came for N ms");
    app.add_flag("--show-batches", config.show_batches, "describe each batch on stderr");
    app.add_flag("--stats", config.print_stats,
                 "print the final stats as one JSON object on stderr");
    app.add_option("--metrics-file", config.metrics_file,
                   "write the stats in Prometheus text format to FILE (atomically, for\n"
                   "node_exporter's textfile collector) every --metrics-interval-ms\n"
                   "and at exit")
        ->type_name("FILE");
    add_milliseconds(app, "--metrics-interval-ms", config.metrics_interval,
                     "how often --metrics-file is rewritten (default 5000)");
#ifdef SNAPTAIL_FOLLOW_JETSTREAM
    app.add_option("--jetstream", config.jetstream_url,
                   "publish each line to NATS JetStream at URL (comma-separated servers)\n"
                   "instead of printing it; a batch counts as delivered once every line is\n"
                   "acknowledged; message ids let the stream drop what a restart re-sends")
        ->type_name("URL");
    app.add_option("--subject", config.subject, "the subject --jetstream publishes to")
        ->type_name("SUBJECT");
#endif
    app.add_option("--dir", root,
                   "follow a directory of rolling files instead of PATH: the files below\n"
                   "ROOT whose relative path matches --glob")
        ->type_name("ROOT");
    app.add_option("--glob", glob,
                   "with --dir: one glob(7) part per directory level, e.g. 'hourly/*/*'")
        ->type_name("PATTERN");
    app.add_flag("--all-files", all_files,
                 "with --dir: follow every matching file at once (default: one at a time,\n"
                 "in order, moving on to the next once a newer file exists)");
    add_choice(app, "--order", set.order,
               {{"name", snaptail::FileOrder::natural}, {"mtime", snaptail::FileOrder::modified}},
               "with --dir: which file is newer: natural order of names, numbers as\n"
               "numbers (default), or modification time")
        ->type_name("name|mtime");
    add_number(app, "--max-open-files", set.max_open_files,
               "with --all-files: descriptors open at most (default 1024)");
    app.add_option("PATH", path, "the file to follow (it need not exist yet)")->type_name("");
    snaptail::examples::parse_command_line(app, argc, argv);
    if (config.jetstream_url.empty() != config.subject.empty()) {
        usage_error("--jetstream and --subject go together");
    }
    if (path.empty() == root.empty()) {
        usage_error("give either PATH or --dir ROOT --glob PATTERN");
    }
    if (root.empty() && (!glob.empty() || all_files)) {
        usage_error("--glob and --all-files go with --dir");
    }
    if (!root.empty()) {
        if (glob.empty()) {
            usage_error("--dir needs --glob PATTERN");
        }
        set.root = root;
        set.glob = glob;
        set.mode = all_files ? snaptail::FollowMode::all_files : snaptail::FollowMode::newest;
        o.files = set;
    } else {
        o.path = path;
    }
    return config;
}

/// When `fd` is a pipe, asks for a 1 MiB pipe buffer (the unprivileged limit by default): a
/// batch then goes into the pipe in one or a few copies instead of one per 64 KiB that the
/// reader drains, each a sleep and a wake-up of both processes. Failure changes nothing.
void widen_pipe(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
        ::fcntl(fd, F_SETPIPE_SZ, 1 << 20);
    }
}

std::string stats_json(const snaptail::TailerStats& s) {
    return fmt::format(
        R"({{"lines":{},"bytes":{},"records":{},"filtered":{},"parse_errors":{},"long_lines":{},)"
        R"("batches":{},"sink_errors":{},"skipped_batches":{},"skipped_records":{},)"
        R"("rotations":{},"truncations":{},"io_errors":{},"commits":{},"checkpoint_errors":{},)"
        R"("offset":{},"lag":{},)"
        R"("pending_bytes":{},"read_ahead_high_water":{},"parallel_reads":{},)"
        R"("files":{},"files_found":{},"files_done":{},"files_lost":{},"files_closed_idle":{}}})",
        s.lines, s.bytes, s.records, s.filtered, s.parse_errors, s.long_lines, s.batches,
        s.sink_errors, s.skipped_batches, s.skipped_records, s.rotations, s.truncations,
        s.io_errors, s.commits, s.checkpoint_errors, s.offset, s.lag, s.pending_bytes,
        s.read_ahead_high_water, s.parallel_reads, s.files, s.files_found, s.files_done,
        s.files_lost, s.files_closed_idle);
}

}  // namespace

int main(int argc, char** argv) {
    Config config = parse_args(argc, argv);

    // SIGINT and SIGTERM are taken by a thread with sigwait, which may request stop safely;
    // every other thread (the tailer is this one) has them blocked.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    widen_pipe(STDOUT_FILENO);

    std::stop_source stop;
    std::atomic<bool> output_failed{false};
    BatchWriter out(STDOUT_FILENO, "write to stdout");
    std::uint64_t batch_number = 0;
    auto describe = [&](const snaptail::Batch<std::string_view>& batch) {
        return fmt::format("batch {}: {}: {} lines ({}-{}), {} bytes, up to {}", ++batch_number,
                           batch.path(), batch.size(), batch.first_line(), batch.last_line(),
                           batch.bytes(), batch.end_position());
    };
#ifdef SNAPTAIL_FOLLOW_JETSTREAM
    std::optional<snaptail::jetstream::Sink<std::string_view>> jetstream;
    if (!config.jetstream_url.empty()) {
        snaptail::jetstream::Options js;
        js.url = config.jetstream_url;
        js.subject = config.subject;
        js.name = "snaptail-follow";
        jetstream.emplace(js, snaptail::jetstream::RawLinePayload{});
    }
#endif
    auto sink = [&](snaptail::Batch<std::string_view>& batch) {
        if (config.sink_delay.count() > 0) {
            std::this_thread::sleep_for(config.sink_delay);
        }
#ifdef SNAPTAIL_FOLLOW_JETSTREAM
        if (jetstream) {
            const auto before = jetstream->stats();
            (*jetstream)(batch);  // throws unless every line is acknowledged: then retried
            if (config.show_batches) {
                const auto after = jetstream->stats();
                fmt::print(stderr, "{}, {} stored, {} duplicates\n", describe(batch),
                           after.messages - before.messages, after.duplicates - before.duplicates);
            }
            return;
        }
#endif
        try {
            // The batch counts as delivered only once its bytes are written.
            out.write(batch);
        } catch (const std::system_error& e) {
            // stdout is gone (a closed pipe): nothing will ever take these lines.
            fmt::print(stderr, "snaptail-follow: {}; stopping\n", e.what());
            output_failed = true;
            stop.request_stop();
            throw;  // not delivered: the tailer reports these lines as undelivered
        }
        if (config.show_batches) {
            fmt::print(stderr, "{}\n", describe(batch));
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

    // --metrics-file: rewritten by the signal thread every interval, and once more at exit.
    auto write_metrics = [&] {
        if (config.metrics_file.empty()) {
            return;
        }
        std::string text;
        const std::string followed =
            config.options.files
                ? (config.options.files->root / config.options.files->glob).string()
                : config.options.path.string();
        snaptail::write_prometheus(text, tailer->stats(), {{"path", followed}});
        try {
            snaptail::write_file_atomically(config.metrics_file, text);
        } catch (const std::system_error& e) {
            fmt::print(stderr, "snaptail-follow: --metrics-file: {}\n", e.what());
        }
    };

    std::atomic<bool> done{false};
    std::jthread signal_thread([&] {
        const timespec tick{0, 100'000'000};
        auto next_metrics = std::chrono::steady_clock::now();
        while (!done) {
            if (std::chrono::steady_clock::now() >= next_metrics) {
                write_metrics();
                next_metrics = std::chrono::steady_clock::now() + config.metrics_interval;
            }
            if (::sigtimedwait(&signals, nullptr, &tick) > 0) {
                if (!done) {
                    stop.request_stop();
                }
                return;
            }
        }
    });

    tailer->run(stop.get_token());
    done = true;
    // Wakes the signal thread from its wait now rather than at its next tick (up to 100 ms
    // later); seeing `done`, it ends without acting on the signal.
    ::pthread_kill(signal_thread.native_handle(), SIGTERM);
    signal_thread.join();
    write_metrics();
    if (config.print_stats) {
        std::string json = stats_json(tailer->stats());
#ifdef SNAPTAIL_FOLLOW_JETSTREAM
        if (jetstream) {
            const auto js = jetstream->stats();
            json.insert(json.size() - 1,
                        fmt::format(R"(,"jetstream":{{"batches":{},"messages":{},"duplicates":{},)"
                                    R"("publish_errors":{},"failures":{},"connects":{}}})",
                                    js.batches, js.messages, js.duplicates, js.publish_errors,
                                    js.failures, js.connects));
        }
#endif
        fmt::print(stderr, "{}\n", json);
    }
    return output_failed ? 1 : 0;
}
