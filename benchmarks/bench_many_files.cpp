// bench_many_files: one memory budget for many files. A BatchingTailer follows every file of a
// directory (FollowMode::all_files): 1,000 and 10,000 files, each with a backlog already
// written and then one line a second appended to each, behind a sink that takes 10 ms per
// batch; it reports each run's peak RSS against read_ahead_bytes + 24 MiB and beside Fluent
// Bit's minimum buffer of 32 KiB per file. It also compares the catch-up of 1,000 files with
// that of one file of the same total size, and measures the heap a followed file costs.
// A benchmark, not a test: it exits non-zero only when lines are missing or out of order.
//
//   bench_many_files [--files 1000,10000] [--file-kib 1024] [--seconds 20] [--sink-ms 10]
//                    [--dir DIR] [--skip-catch-up]
//
// Each scenario runs in a forked child, so that its peak RSS is its own. The data is written
// once under DIR (default ${TMPDIR:-/tmp}/snaptail-many) and reused.
#include <snaptail/batching_tailer.hpp>

#include <fcntl.h>
#include <fmt/format.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Tailer = snaptail::BatchingTailer<snaptail::RawLineParser>;

constexpr std::size_t line_bytes = 128;  // with its newline
constexpr std::size_t mib = std::size_t{1} << 20;

struct Config {
    std::vector<std::size_t> files{1000, 10000};
    std::size_t file_kib{1024};
    std::chrono::seconds seconds{20};
    std::chrono::milliseconds sink_ms{10};
    fs::path dir;
    bool catch_up{true};
};

[[noreturn]] void usage(const std::string& why) {
    fmt::print(stderr,
               "bench_many_files: {}\nusage: bench_many_files [--files N,N...] [--file-kib K] "
               "[--seconds S] [--sink-ms MS] [--dir DIR] [--skip-catch-up]\n",
               why);
    std::exit(2);
}

std::size_t number(std::string_view text) {
    std::size_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) {
        usage(fmt::format("'{}' is not a number", text));
    }
    return value;
}

Config parse(int argc, char** argv) {
    Config config;
    const char* tmp = std::getenv("TMPDIR");
    config.dir = fs::path(tmp != nullptr ? tmp : "/tmp") / "snaptail-many";
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc) {
                usage(fmt::format("{} needs a value", arg));
            }
            return argv[++i];
        };
        if (arg == "--files") {
            config.files.clear();
            for (std::string_view rest = value(); !rest.empty();) {
                const auto comma = rest.find(',');
                config.files.push_back(number(rest.substr(0, comma)));
                rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
            }
        } else if (arg == "--file-kib") {
            config.file_kib = number(value());
        } else if (arg == "--seconds") {
            config.seconds = std::chrono::seconds(number(value()));
        } else if (arg == "--sink-ms") {
            config.sink_ms = std::chrono::milliseconds(number(value()));
        } else if (arg == "--dir") {
            config.dir = value();
        } else if (arg == "--skip-catch-up") {
            config.catch_up = false;
        } else {
            usage(fmt::format("unknown option {}", arg));
        }
    }
    return config;
}

// "<file> <number> xxxx...\n", line_bytes long.
void append_line(std::string& out, std::size_t file, std::uint64_t number) {
    const std::size_t start = out.size();
    fmt::format_to(std::back_inserter(out), "file {} line {} ", file, number);
    out.append(line_bytes - 1 - (out.size() - start), 'x');
    out += '\n';
}

void write_file(const fs::path& path, std::string_view data, int flags) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "open " + path.string());
    }
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n <= 0) {
            ::close(fd);
            throw std::system_error(errno, std::generic_category(), "write " + path.string());
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    ::close(fd);
}

// A directory of `files` files of `lines` lines each (written once, reused when complete).
fs::path files_dir(const Config& config, std::size_t files, std::uint64_t lines) {
    const fs::path dir = config.dir / fmt::format("set-{}x{}", files, lines);
    const fs::path done = dir / ".complete";
    if (fs::exists(done)) {
        return dir;
    }
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::string content;
    for (std::size_t f = 0; f < files; ++f) {
        content.clear();
        for (std::uint64_t n = 1; n <= lines; ++n) {
            append_line(content, f, n);
        }
        write_file(dir / fmt::format("f{:05}.log", f), content, O_TRUNC);
    }
    write_file(done, "", O_TRUNC);
    return dir;
}

// One file holding the lines of `files` files of `lines` lines.
fs::path one_file(const Config& config, std::size_t files, std::uint64_t lines) {
    const fs::path dir = config.dir / fmt::format("one-{}x{}", files, lines);
    const fs::path done = dir / ".complete";
    if (fs::exists(done)) {
        return dir / "all.log";
    }
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::string content;
    for (std::size_t f = 0; f < files; ++f) {
        content.clear();
        for (std::uint64_t n = 1; n <= lines; ++n) {
            append_line(content, f, n);
        }
        write_file(dir / "all.log", content, O_APPEND);
    }
    write_file(done, "", O_TRUNC);
    return dir / "all.log";
}

void warm(const fs::path& path) {
    std::vector<char> buffer(mib);
    auto read_all = [&](const fs::path& file) {
        const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            while (::read(fd, buffer.data(), buffer.size()) > 0) {
            }
            ::close(fd);
        }
    };
    if (fs::is_directory(path)) {
        for (const auto& entry : fs::directory_iterator(path)) {
            read_all(entry.path());
        }
    } else {
        read_all(path);
    }
}

// What a child reports through a pipe.
struct Outcome {
    double seconds{0};
    std::uint64_t lines{0};
    std::uint64_t batches{0};
    std::uint64_t budget_high_water{0};
    std::uint64_t budget_waits{0};
    std::uint64_t closed_idle{0};
    std::uint64_t out_of_order{0};
    std::uint64_t heap_bytes{0};
    long peak_rss_kib{0};
};

// Runs `body` in a forked child; returns what it reported, with the child's peak RSS.
template <class Body>
Outcome in_child(Body&& body) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
        Outcome out = body();
        const auto n = ::write(fds[1], &out, sizeof out);
        ::_exit(n == static_cast<ssize_t>(sizeof out) ? 0 : 1);
    }
    ::close(fds[1]);
    Outcome out;
    const auto n = ::read(fds[0], &out, sizeof out);
    ::close(fds[0]);
    int status = 0;
    rusage usage{};
    while (::wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
    }
    if (n != static_cast<ssize_t>(sizeof out) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw std::runtime_error("a child failed");
    }
    out.peak_rss_kib = usage.ru_maxrss;
    return out;
}

// A sink that checks each file's lines come in order ("file F line N"), counts them, and
// takes `delay` per batch.
class CheckingSink {
  public:
    CheckingSink(std::size_t files, std::chrono::milliseconds delay)
        : next_(files, 1), delay_(delay) {}

    void operator()(snaptail::Batch<std::string_view>& batch) {
        for (std::string_view line : batch.records()) {
            std::size_t file = 0;
            std::uint64_t number = 0;
            const char* p = line.data() + 5;  // "file "
            const char* end = line.data() + line.size();
            auto r = std::from_chars(p, end, file);
            r = std::from_chars(r.ptr + 6, end, number);  // " line "
            if (file >= next_.size() || next_[file] != number) {
                ++out_of_order_;
            } else {
                ++next_[file];
            }
        }
        lines_ += batch.size();
        if (delay_.count() > 0) {
            std::this_thread::sleep_for(delay_);
        }
    }
    std::uint64_t lines() const noexcept { return lines_; }
    std::uint64_t out_of_order() const noexcept { return out_of_order_; }

  private:
    std::vector<std::uint64_t> next_;
    std::chrono::milliseconds delay_;
    std::uint64_t lines_{0};
    std::uint64_t out_of_order_{0};
};

snaptail::TailOptions set_options(const fs::path& dir) {
    snaptail::TailOptions options;
    options.files = snaptail::FileSet{};
    options.files->root = dir;
    options.files->glob = "*.log";
    options.files->mode = snaptail::FollowMode::all_files;
    // Each commit writes a line per file: with thousands, once a second rather than per batch.
    options.commit_interval = 1s;
    return options;
}

// Catches up on `path` (a file or a directory of files) with a no-op sink until `lines` are in.
Outcome catch_up(const fs::path& path, std::uint64_t lines, std::size_t files) {
    return in_child([&] {
        snaptail::TailOptions options;
        if (fs::is_directory(path)) {
            options = set_options(path);
        } else {
            options.path = path;
        }
        options.idle_exit = 200ms;
        CheckingSink check(files, 0ms);
        std::stop_source stop;
        Tailer tailer(options, snaptail::RawLineParser{}, [&](auto& batch) {
            check(batch);
            if (check.lines() >= lines) {
                stop.request_stop();
            }
        });
        const auto started = Clock::now();
        tailer.run(stop.get_token());
        Outcome out;
        out.seconds = std::chrono::duration<double>(Clock::now() - started).count();
        out.lines = check.lines();
        out.out_of_order = check.out_of_order();
        out.budget_high_water = tailer.stats().budget_high_water;
        return out;
    });
}

// Follows `files` files with a backlog for `seconds` while one line a second is appended to
// each, behind a sink that takes `sink_ms` per batch.
Outcome follow_many(const Config& config, const fs::path& dir, std::size_t files,
                    std::uint64_t backlog_lines) {
    // A copy of the data set: the appends must not change what later runs start from.
    const fs::path live = config.dir / fmt::format("live-{}", files);
    fs::remove_all(live);
    fs::create_directories(live);
    for (std::size_t f = 0; f < files; ++f) {
        const auto name = fmt::format("f{:05}.log", f);
        fs::copy_file(dir / name, live / name);
    }
    warm(live);
    std::atomic<bool> stop_writer{false};
    Outcome out = in_child([&] {
        std::jthread writer([&] {
            std::string line;
            for (std::uint64_t n = backlog_lines + 1; !stop_writer; ++n) {
                const auto round = Clock::now();
                for (std::size_t f = 0; f < files && !stop_writer; ++f) {
                    line.clear();
                    append_line(line, f, n);
                    write_file(live / fmt::format("f{:05}.log", f), line, O_APPEND);
                }
                std::this_thread::sleep_until(round + 1s);
            }
        });
        auto options = set_options(live);
        CheckingSink check(files, config.sink_ms);
        Tailer tailer(options, snaptail::RawLineParser{}, std::ref(check));
        tailer.start();
        std::this_thread::sleep_for(config.seconds);
        stop_writer = true;
        writer.join();
        tailer.stop();
        const auto stats = tailer.stats();
        Outcome o;
        o.seconds = static_cast<double>(config.seconds.count());
        o.lines = check.lines();
        o.batches = stats.batches;
        o.out_of_order = check.out_of_order();
        o.budget_high_water = stats.budget_high_water;
        o.budget_waits = stats.budget_waits;
        o.closed_idle = stats.files_closed_idle;
        return o;
    });
    fs::remove_all(live);
    return out;
}

// Heap in use once `files` one-line files are followed and read, minus the heap before.
Outcome heap_per_files(const Config& config, std::size_t files) {
    const fs::path dir = files_dir(config, files, 1);
    return in_child([&] {
        const auto before = ::mallinfo2().uordblks;
        auto options = set_options(dir);
        options.idle_exit = 200ms;
        CheckingSink check(files, 0ms);
        Outcome o;
        {
            Tailer tailer(options, snaptail::RawLineParser{}, std::ref(check));
            tailer.run(std::stop_token{});
            ::malloc_trim(0);
            o.heap_bytes = ::mallinfo2().uordblks - before;
        }
        o.lines = check.lines();
        return o;
    });
}

// The data caches of cpu0 as sysfs lists them ("L1d 32K, L2 1024K, L3 32768K"): sysconf's
// figures are wrong in some virtual machines.
std::string caches() {
    std::string out;
    for (int index = 0; index < 8; ++index) {
        const fs::path dir = fmt::format("/sys/devices/system/cpu/cpu0/cache/index{}", index);
        std::ifstream level(dir / "level");
        std::ifstream type(dir / "type");
        std::ifstream size(dir / "size");
        std::string l;
        std::string t;
        std::string z;
        if (!(level >> l) || !(type >> t) || !(size >> z) || t == "Instruction") {
            continue;
        }
        out += fmt::format("{}L{}{} {}", out.empty() ? "" : ", ", l, t == "Data" ? "d" : "", z);
    }
    return out.empty() ? "caches unknown" : out;
}

}  // namespace

int main(int argc, char** argv) {
    const Config config = parse(argc, argv);
    const std::uint64_t backlog_lines = config.file_kib * 1024 / line_bytes;
    const snaptail::TailOptions defaults;
    const double budget_mib = static_cast<double>(defaults.read_ahead_bytes) / mib;
    fmt::print("bench_many_files: {} CPUs, {}; read_ahead_bytes {:.0f} MiB; files of {} KiB ({} "
               "lines of {} bytes)\n\n",
               std::thread::hardware_concurrency(), caches(), budget_mib, config.file_kib,
               backlog_lines, line_bytes);
    bool ok = true;

    const Outcome small = heap_per_files(config, 1000);
    const Outcome large = heap_per_files(config, 10000);
    const double per_file =
        static_cast<double>(large.heap_bytes - small.heap_bytes) / (10000.0 - 1000.0);
    fmt::print(
        "heap per followed file: {:.0f} bytes (heap in use with 10,000 files {:.1f} MiB, "
        "with 1,000 {:.1f} MiB; read windows included in both)\n\n",
        per_file, static_cast<double>(large.heap_bytes) / mib,
        static_cast<double>(small.heap_bytes) / mib);
    ok = ok && small.lines == 1000 && large.lines == 10000;

    if (config.catch_up) {
        const std::size_t files = 1000;
        const fs::path dir = files_dir(config, files, backlog_lines);
        const fs::path one = one_file(config, files, backlog_lines);
        warm(dir);
        warm(one);
        const std::uint64_t total = files * backlog_lines;
        const double bytes = static_cast<double>(total * line_bytes);
        std::vector<double> single_rates;
        std::vector<double> set_rates;
        for (int round = 0; round < 3; ++round) {
            const Outcome s = catch_up(one, total, files);
            const Outcome m = catch_up(dir, total, files);
            ok = ok && s.lines == total && m.lines == total && s.out_of_order == 0 &&
                 m.out_of_order == 0;
            single_rates.push_back(bytes / s.seconds / 1e6);
            set_rates.push_back(bytes / m.seconds / 1e6);
        }
        std::sort(single_rates.begin(), single_rates.end());
        std::sort(set_rates.begin(), set_rates.end());
        const double ratio = set_rates[1] / single_rates[1];
        fmt::print(
            "catch-up, {:.0f} MiB in all (medians of 3 interleaved rounds):\n"
            "  one file            {:7.0f} MB/s\n"
            "  {} files          {:7.0f} MB/s  = {:.2f}x one file (target >= 0.8x: {})\n\n",
            bytes / mib, single_rates[1], files, set_rates[1], ratio,
            ratio >= 0.8 ? "met" : "MISSED");
    }

    fmt::print(
        "following, {} s each: a backlog of {} KiB per file, then 1 line/s appended to "
        "each; sink {} ms per batch\n",
        config.seconds.count(), config.file_kib, config.sink_ms.count());
    fmt::print("{:>7} {:>12} {:>10} {:>9} {:>12} {:>12} {:>11} {:>16}\n", "files", "lines",
               "batches", "waits", "budget used", "peak RSS", "bound", "Fluent Bit min");
    for (const std::size_t files : config.files) {
        const fs::path dir = files_dir(config, files, backlog_lines);
        const Outcome o = follow_many(config, dir, files, backlog_lines);
        const double rss = static_cast<double>(o.peak_rss_kib) / 1024;
        const double bound = budget_mib + 24;
        ok = ok && o.out_of_order == 0;
        fmt::print(
            "{:>7} {:>12} {:>10} {:>9} {:>8.1f} MiB {:>8.1f} MiB {:>7.0f} MiB {}"
            " {:>10.0f} MiB\n",
            files, o.lines, o.batches, o.budget_waits,
            static_cast<double>(o.budget_high_water) / mib, rss, bound,
            rss <= bound ? "met   " : "MISSED", 32.0 * static_cast<double>(files) / 1024);
    }
    if (!ok) {
        fmt::print(stderr, "bench_many_files: lines missing or out of order\n");
        return 1;
    }
    return 0;
}
