// bench_tailer: what a BatchingTailer costs. It measures catch-up throughput against `wc -l`,
// `cat` and `tail -n +1` (and snaptail-follow against the last two), with the instructions each
// executes per byte and per line counted by callgrind; peak memory behind a lagging sink, the
// CPU an idle tailer burns, and write()-to-sink latency of live lines; then prints one table.
// A benchmark, not a test: it exits 0 whatever the figures, and non-zero only when something
// is broken (lines missing or out of order, a child failed).
//
//   bench_tailer [--size-mib N] [--quick] [--data PATH] [--catch-up-only] [--rounds N]
//                [--follow PATH] [--follow-baseline PATH] [--callgrind-mib N] [--results FILE]
//
// The data file is generated once and reused by later runs: --data PATH, else
// $SNAPTAIL_BENCH_DATA, else ${TMPDIR:-/tmp}/snaptail-bench/bench_<size>.log (and the smaller
// one callgrind runs on beside it). Each snaptail scenario runs in a forked child, so that its
// peak RSS and CPU time are its own.
#include <snaptail/batching_tailer.hpp>

#include "../examples/example_cli.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

extern char** environ;

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Tailer = snaptail::BatchingTailer<snaptail::RawLineParser>;
using RawBatch = snaptail::Batch<std::string_view>;

constexpr std::uint64_t mib = std::uint64_t{1} << 20;
constexpr std::string_view data_version = "snaptail-bench-data v1";

struct Config {
    std::uint64_t size_bytes{1024 * mib};
    std::optional<fs::path> data;
    bool quick{false};
    bool catch_up_only{false};
    int rounds{5};
    std::optional<fs::path> follow;           // snaptail-follow (default: the build's own)
    std::optional<fs::path> follow_baseline;  // another build of it, run in the same rounds
    std::uint64_t callgrind_mib{128};         // 0: no instruction counts
    std::optional<fs::path> results;          // TSV of the catch-up figures, for the chart
    unsigned run_catch_up{0};                 // internal: one catch-up in this process
    std::chrono::milliseconds lag_duration{5000};
    std::chrono::milliseconds idle_duration{10000};
    std::chrono::milliseconds latency_duration{5000};
    double lag_lines_per_second{20'000};
    double live_lines_per_second{1'000};
};

Config parse_args(int argc, char** argv) {
    Config config;
    std::optional<std::uint64_t> size_mib;
    CLI::App app("Measures a snaptail::BatchingTailer and prints one table.", "bench_tailer");
    snaptail::examples::set_style(app);
    app.add_option("--size-mib", size_mib,
                   "size of the generated log (default 1024; 256 with --quick)")
        ->transform(snaptail::examples::non_negative_integer)
        ->check(CLI::Range(1, 65536).description(""))
        ->type_name("N");
    app.add_flag("--quick", config.quick, "smoke run: 256 MiB and shorter scenarios");
    app.add_flag("--catch-up-only", config.catch_up_only,
                 "measure only the catch-up (and count its instructions)");
    app.add_option("--rounds", config.rounds,
                   "catch-up rounds, each running every program once (default 5; 3 with --quick)")
        ->transform(snaptail::examples::non_negative_integer)
        ->check(CLI::Range(1, 1000).description(""))
        ->type_name("N");
    app.add_option("--follow", config.follow,
                   "the snaptail-follow to measure (default: ../examples/snaptail-follow\n"
                   "beside this program, if it is there)")
        ->type_name("PATH");
    app.add_option("--follow-baseline", config.follow_baseline,
                   "another build of snaptail-follow, measured in the same rounds")
        ->type_name("PATH");
    app.add_option("--callgrind-mib", config.callgrind_mib,
                   "size of the log valgrind --tool=callgrind counts instructions on\n"
                   "(default 128; 0: none)")
        ->transform(snaptail::examples::non_negative_integer)
        ->check(CLI::Range(0, 65536).description(""))
        ->type_name("N");
    app.add_option("--results", config.results,
                   "write the catch-up figures to FILE (tab-separated; see catch_up_chart.py)")
        ->type_name("FILE");
    app.add_option("--run-catch-up", config.run_catch_up,
                   "internal: one catch-up of --data with N parse threads in this process\n"
                   "(what callgrind counts)")
        ->transform(snaptail::examples::non_negative_integer)
        ->check(CLI::Range(1, 256).description(""))
        ->type_name("N")
        ->group("");
    app.add_option("--data", config.data,
                   "the log to generate once and reuse (default $SNAPTAIL_BENCH_DATA,\n"
                   "else ${TMPDIR:-/tmp}/snaptail-bench/bench_<size>.log)")
        ->type_name("PATH");
    const CLI::Option* rounds = app.get_option("--rounds");
    snaptail::examples::parse_command_line(app, argc, argv);
    if (config.quick && rounds->count() == 0) {
        config.rounds = 3;
    }
    if (config.quick) {
        config.size_bytes = 256 * mib;
        config.lag_duration = 2000ms;
        config.idle_duration = 3000ms;
        config.latency_duration = 2000ms;
    }
    if (size_mib) {
        config.size_bytes = *size_mib * mib;
    }
    if (!config.data) {
        if (const char* env = std::getenv("SNAPTAIL_BENCH_DATA"); env != nullptr && *env != '\0') {
            config.data = fs::path(env);
        } else {
            const char* tmp = std::getenv("TMPDIR");
            const fs::path dir = fs::path(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp");
            const std::uint64_t n = config.size_bytes / mib;
            const std::string size =
                n % 1024 == 0 ? fmt::format("{}g", n / 1024) : fmt::format("{}m", n);
            config.data = dir / "snaptail-bench" / fmt::format("bench_{}.log", size);
        }
    }
    return config;
}

// --- small system helpers ---------------------------------------------------------------

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

double cpu_seconds(const rusage& u) {
    auto s = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
    };
    return s(u.ru_utime) + s(u.ru_stime);
}

rusage self_usage() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return u;
}

// A field of /proc/self/status in KiB ("VmHWM", "VmRSS"), or -1.
long status_kib(std::string_view field) {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with(field) && line.size() > field.size() && line[field.size()] == ':') {
            std::size_t at = field.size() + 1;
            while (at < line.size() && (line[at] == ' ' || line[at] == '\t')) {
                ++at;
            }
            long kib = -1;
            std::from_chars(line.data() + at, line.data() + line.size(), kib);
            return kib;
        }
    }
    return -1;
}

void write_all(int fd, const void* data, std::size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t n = ::write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(errno, std::generic_category(), "write");
        }
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

std::size_t read_full(int fd, void* data, std::size_t size) {
    char* p = static_cast<char*>(data);
    std::size_t got = 0;
    while (got < size) {
        const ssize_t n = ::read(fd, p + got, size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += static_cast<std::size_t>(n);
    }
    return got;
}

std::string cpu_model() {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
        if (line.starts_with("model name")) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                return line.substr(line.find_first_not_of(" \t", colon + 1));
            }
        }
    }
    return "unknown";
}

// The 1, 5 and 15 minute load averages, as /proc/loadavg gives them.
std::string load_average() {
    std::ifstream file("/proc/loadavg");
    std::string one;
    std::string five;
    std::string fifteen;
    file >> one >> five >> fifteen;
    return fmt::format("{} {} {}", one, five, fifteen);
}

// A fresh directory for the scenario files, removed with its contents on destruction.
class ScratchDir {
  public:
    explicit ScratchDir(const fs::path& parent) {
        std::string pattern = (parent / "run.XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
        }
        path_ = pattern;
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    ~ScratchDir() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
    fs::path operator/(std::string_view name) const { return path_ / name; }

  private:
    fs::path path_;
};

// --- running a scenario in a child --------------------------------------------------------

template <class Result>
struct ChildRun {
    Result result{};
    rusage usage{};  // the child's own, from wait4: ru_maxrss is its peak RSS
    bool ok{false};
};

// Runs `body` in a forked child and returns its trivially copyable result through a pipe.
// The parent stays single-threaded, so fork is safe; the child may start threads. A child
// still running after `limit` is killed by SIGALRM and reported as failed.
template <class Result, class Body>
ChildRun<Result> in_child(std::string_view name, std::chrono::seconds limit, Body&& body) {
    static_assert(std::is_trivially_copyable_v<Result>);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = ::fork();
    if (pid < 0) {
        throw std::system_error(errno, std::generic_category(), "fork");
    }
    if (pid == 0) {
        ::close(fds[0]);
        ::alarm(static_cast<unsigned>(limit.count()));
        int code = 0;
        try {
            const Result result = body();
            write_all(fds[1], &result, sizeof result);
        } catch (const std::exception& e) {
            fmt::print(stderr, "bench_tailer: {}: {}\n", name, e.what());
            code = 70;
        } catch (...) {
            code = 70;
        }
        ::_exit(code);
    }
    ::close(fds[1]);
    ChildRun<Result> run;
    const std::size_t got = read_full(fds[0], &run.result, sizeof run.result);
    ::close(fds[0]);
    int status = 0;
    while (::wait4(pid, &status, 0, &run.usage) < 0 && errno == EINTR) {
    }
    run.ok = got == sizeof run.result && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!run.ok) {
        fmt::print(stderr, "bench_tailer: {}: the child failed (wait status {:#x})\n", name,
                   status);
    }
    return run;
}

// Counts the tailer's runtime faults and prints them; none is expected in any scenario.
struct ErrorCounter {
    std::uint64_t* count;
    void operator()(const snaptail::Error& error) const {
        ++*count;
        snaptail::print_error(error);
    }
};

// --- the data ----------------------------------------------------------------------------

class Rng {
  public:
    explicit Rng(std::uint64_t seed) : state_(seed) {}
    std::uint64_t next() {  // splitmix64
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    std::uint64_t below(std::uint64_t n) { return next() % n; }
    template <class T, std::size_t N>
    const T& pick(const std::array<T, N>& items) {
        return items[static_cast<std::size_t>(below(N))];
    }

  private:
    std::uint64_t state_;
};

constexpr std::array<std::string_view, 16> symbols{"AAPL", "MSFT",  "NVDA", "AMZN", "GOOGL", "META",
                                                   "TSLA", "BRK.B", "JPM",  "V",    "XOM",   "UNH",
                                                   "AVGO", "LLY",   "COST", "ORCL"};
constexpr std::array<std::string_view, 6> events{"NEW",  "ACK",    "PARTIAL_FILL",
                                                 "FILL", "CANCEL", "REPLACE"};
constexpr std::array<std::string_view, 6> venues{"XNAS", "XNYS", "ARCX", "BATS", "EDGX", "IEXG"};
constexpr std::array<std::string_view, 3> order_types{"LIMIT", "MARKET", "STOP"};
constexpr std::array<std::string_view, 3> tifs{"DAY", "IOC", "GTC"};
constexpr std::array<std::string_view, 5> strategies{"VWAP", "TWAP", "POV", "ICEBERG", "DMA"};
constexpr std::array<std::string_view, 24> words{
    "client",  "requested", "amend",   "after", "partial", "fill",   "at",   "venue",
    "routing", "to",        "best",    "price", "within",  "limits", "risk", "check",
    "passed",  "for",       "account", "desk",  "note",    "rebate", "tier", "hedge"};

// Appends one order-log line of 250..310 bytes (newline included; ~280 on average) to `out`.
void append_order_line(fmt::memory_buffer& out, Rng& rng, std::uint64_t seq,
                       std::uint64_t& micros) {
    micros += 1 + rng.below(40);
    const std::uint64_t day_us = micros % (std::uint64_t{86'400} * 1'000'000);
    const std::uint64_t secs = day_us / 1'000'000;
    const std::size_t start = out.size();
    const std::uint64_t qty = (1 + rng.below(50)) * 100;
    fmt::format_to(std::back_inserter(out),
                   "2024-06-03T{:02}:{:02}:{:02}.{:06}Z INFO order-gw[{}]: seq={:010} evt={} "
                   "ord_id=O{:012X} cl_ord_id=C{:08} acct=ACC{:05} sym={} side={} type={} tif={} "
                   "px={}.{:04} qty={} leaves={} venue={} strat={} lat_us={} note=\"",
                   secs / 3600, secs / 60 % 60, secs % 60, day_us % 1'000'000, 2000 + rng.below(8),
                   seq, rng.pick(events), rng.next() & 0xffffffffffffULL, seq * 7 % 100'000'000,
                   rng.below(100'000), rng.pick(symbols), rng.below(2) == 0 ? "BUY" : "SELL",
                   rng.pick(order_types), rng.pick(tifs), 10 + rng.below(990), rng.below(10'000),
                   qty, qty - rng.below(qty + 1) / 100 * 100, rng.pick(venues),
                   rng.pick(strategies), 5 + rng.below(400));
    const std::size_t target = 250 + static_cast<std::size_t>(rng.below(61));
    for (;;) {
        const std::string_view word = rng.pick(words);
        if (out.size() - start + word.size() + 3 > target) {
            break;
        }
        out.append(word);
        out.push_back(' ');
    }
    out.append(std::string_view("\"\n"));
}

struct DataFile {
    fs::path path;
    std::uint64_t bytes{0};
    std::uint64_t lines{0};
    bool generated{false};
    double generate_seconds{0};
};

fs::path meta_path(const fs::path& data) {
    return fs::path(data.string() + ".meta");
}

// The data file described by its .meta sidecar, if it is there (with the requested size, if
// one is given).
std::optional<DataFile> reuse_data(const fs::path& path, std::optional<std::uint64_t> size) {
    std::ifstream meta(meta_path(path));
    std::string version;
    std::string word;
    std::uint64_t target = 0;
    DataFile data{path};
    if (!std::getline(meta, version) || version != data_version ||
        !(meta >> word >> target >> word >> data.bytes >> word >> data.lines) ||
        (size && target != *size)) {
        return std::nullopt;
    }
    std::error_code ec;
    if (fs::file_size(path, ec) != data.bytes || ec) {
        return std::nullopt;
    }
    return data;
}

// Writes `size` bytes of whole lines (a little less: it stops before the line that would cross
// it) to a temporary name, renames it into place and records bytes and lines in the sidecar.
DataFile generate_data(const fs::path& path, std::uint64_t size) {
    if (path.has_parent_path()) {
        fs::create_directories(path.parent_path());
    }
    const auto started = Clock::now();
    const fs::path tmp = fs::path(fmt::format("{}.tmp.{}", path.string(), ::getpid()));
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "create " + tmp.string());
    }
    Rng rng(20240603);
    fmt::memory_buffer chunk;
    fmt::memory_buffer line;
    std::uint64_t written = 0;
    std::uint64_t lines = 0;
    std::uint64_t micros = std::uint64_t{9} * 3600 * 1'000'000;
    try {
        for (;;) {
            line.clear();
            append_order_line(line, rng, lines + 1, micros);
            if (written + chunk.size() + line.size() > size) {
                break;
            }
            chunk.append(line);
            ++lines;
            if (chunk.size() >= 4 * mib) {
                write_all(fd, chunk.data(), chunk.size());
                written += chunk.size();
                chunk.clear();
            }
        }
        write_all(fd, chunk.data(), chunk.size());
        written += chunk.size();
    } catch (...) {
        ::close(fd);
        fs::remove(tmp);
        throw;
    }
    ::close(fd);
    fs::rename(tmp, path);
    std::ofstream meta(meta_path(path), std::ios::trunc);
    meta << data_version << "\nsize " << size << " bytes " << written << " lines " << lines << "\n";
    if (!meta.flush()) {
        throw std::runtime_error("cannot write " + meta_path(path).string());
    }
    return DataFile{path, written, lines, true, seconds_since(started)};
}

// Reads the whole file once so that every scenario starts with it in the page cache.
double page_cache(const fs::path& path) {
    const auto started = Clock::now();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "open " + path.string());
    }
    std::vector<char> buffer(mib);
    while (::read(fd, buffer.data(), buffer.size()) > 0) {
    }
    ::close(fd);
    return seconds_since(started);
}

// --- 1. catch-up throughput ----------------------------------------------------------------

struct CatchUp {
    double seconds{0};
    double cpu{0};
    std::uint64_t records{0};
    std::uint64_t content_bytes{0};
    std::uint64_t checksum{0};
    std::uint64_t batches{0};
    std::uint64_t errors{0};
    std::uint64_t read_ahead_high_water{0};
    std::uint64_t last_batch_lines{0};
    double last_batch_gap{0};  // between the last two batches: mostly the last one's linger
    bool in_order{true};
};

// Catches up from the start with the identity parser; stops once every line is delivered
// (idle_exit is the backstop should one be missing). With parse_threads > 1 the threads also
// read the backlog (the identity parser keeps up).
CatchUp catch_up(const DataFile& data, unsigned parse_threads) {
    CatchUp r;
    snaptail::TailOptions options;
    options.path = data.path;
    options.parse_threads = parse_threads;
    options.start = snaptail::StartAt::beginning;
    options.idle_exit = 50ms;
    std::stop_source stop;
    std::uint64_t next_line = 1;
    Clock::time_point previous_batch{};
    auto sink = [&](RawBatch& batch) {
        if (batch.first_line() != next_line) {
            r.in_order = false;
        }
        next_line = batch.last_line() + 1;
        for (const std::string_view line : batch.records()) {
            r.content_bytes += line.size();
            r.checksum += line.empty() ? 0U : static_cast<unsigned char>(line.front());
        }
        r.records += batch.size();
        const auto now = Clock::now();
        r.last_batch_gap = std::chrono::duration<double>(now - previous_batch).count();
        r.last_batch_lines = batch.size();
        previous_batch = now;
        if (r.records >= data.lines) {
            stop.request_stop();
        }
    };
    const rusage before = self_usage();
    const auto started = Clock::now();
    previous_batch = started;
    Tailer tailer(options, snaptail::RawLineParser{}, sink, ErrorCounter{&r.errors});
    tailer.run(stop.get_token());
    r.seconds = seconds_since(started);
    r.cpu = cpu_seconds(self_usage()) - cpu_seconds(before);
    const snaptail::TailerStats stats = tailer.stats();
    r.batches = stats.batches;
    r.read_ahead_high_water = stats.read_ahead_high_water;
    return r;
}

double mib_of(double bytes) {
    return bytes / static_cast<double>(mib);
}

// --- the machine's caches --------------------------------------------------------------------

std::string kib_text(long bytes) {
    if (bytes <= 0) {
        return "?";
    }
    return bytes % (1 << 20) == 0 ? fmt::format("{} MiB", bytes >> 20)
                                  : fmt::format("{} KiB", bytes >> 10);
}

std::string read_line_of(const fs::path& path) {
    std::ifstream file(path);
    std::string line;
    std::getline(file, line);
    return line;
}

// The caches as glibc's sysconf reports them and as the kernel does (sysfs, cpu0): under a
// hypervisor the two may differ (sysconf derives them from CPUID).
std::string cache_sizes() {
    std::string text = fmt::format(
        "caches (sysconf): L1d {}, L2 {}, L3 {}", kib_text(::sysconf(_SC_LEVEL1_DCACHE_SIZE)),
        kib_text(::sysconf(_SC_LEVEL2_CACHE_SIZE)), kib_text(::sysconf(_SC_LEVEL3_CACHE_SIZE)));
    std::string sysfs;
    for (int index = 0; index < 8; ++index) {
        const fs::path dir = fmt::format("/sys/devices/system/cpu/cpu0/cache/index{}", index);
        const std::string size = read_line_of(dir / "size");
        if (size.empty()) {
            break;
        }
        sysfs += fmt::format("{}L{} {} {} (cpus {})", sysfs.empty() ? "" : ", ",
                             read_line_of(dir / "level"), read_line_of(dir / "type"), size,
                             read_line_of(dir / "shared_cpu_list"));
    }
    return text + (sysfs.empty() ? std::string() : "\ncaches (sysfs, cpu0): " + sysfs);
}

// --- programs to compare with --------------------------------------------------------------

// Where a program's stdout goes: /dev/null, or a pipe this process drains (counting bytes),
// or a pipe whose text is kept (wc -l's count).
enum class Output { null, pipe, text };

struct ProgramRun {
    double seconds{0};
    double user{0};
    double sys{0};
    std::uint64_t out_bytes{0};
    std::string text;  // Output::text: the first 4 KiB of stdout
    bool ok{false};
};

double seconds_of(const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
}

// Runs argv (searched in PATH) with stdout as `output` says and stderr inherited, timing it
// from spawn to exit; user and system time are the child's own (wait4).
ProgramRun run_program(const std::vector<std::string>& argv, Output output) {
    ProgramRun run;
    int fds[2] = {-1, -1};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (output == Output::null) {
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    } else {
        if (::pipe2(fds, O_CLOEXEC) != 0) {
            posix_spawn_file_actions_destroy(&actions);
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    }
    std::vector<std::string> args = argv;
    std::vector<char*> pointers;
    for (std::string& arg : args) {
        pointers.push_back(arg.data());
    }
    pointers.push_back(nullptr);
    const auto started = Clock::now();
    pid_t pid = 0;
    const int spawned =
        ::posix_spawnp(&pid, pointers[0], &actions, nullptr, pointers.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (fds[1] >= 0) {
        ::close(fds[1]);
    }
    if (spawned != 0) {
        if (fds[0] >= 0) {
            ::close(fds[0]);
        }
        fmt::print(stderr, "bench_tailer: cannot run {}: {}\n", argv[0],
                   snaptail::detail::errno_text(spawned));
        return run;
    }
    if (fds[0] >= 0) {
        std::vector<char> buffer(256 << 10);
        for (;;) {
            const ssize_t n = ::read(fds[0], buffer.data(), buffer.size());
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                break;
            }
            if (output == Output::text && run.text.size() < 4096) {
                run.text.append(buffer.data(), static_cast<std::size_t>(n));
            }
            run.out_bytes += static_cast<std::uint64_t>(n);
        }
        ::close(fds[0]);
    }
    int status = 0;
    rusage usage{};
    while (::wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
    }
    run.seconds = seconds_since(started);
    run.user = seconds_of(usage.ru_utime);
    run.sys = seconds_of(usage.ru_stime);
    run.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    return run;
}

// The path of this program's executable.
fs::path self_path() {
    std::error_code ec;
    return fs::read_symlink("/proc/self/exe", ec);
}

// The snaptail-follow of the same build: <build>/examples/snaptail-follow beside
// <build>/benchmarks/bench_tailer.
std::optional<fs::path> default_follow() {
    const fs::path self = self_path();
    if (self.empty()) {
        return std::nullopt;
    }
    const fs::path follow = self.parent_path().parent_path() / "examples" / "snaptail-follow";
    if (::access(follow.c_str(), X_OK) != 0) {
        return std::nullopt;
    }
    return follow;
}

// Whether `name` is an executable in PATH.
bool in_path(std::string_view name) {
    const char* path = std::getenv("PATH");
    std::string_view dirs = path != nullptr ? path : "/usr/bin:/bin";
    while (!dirs.empty()) {
        const auto colon = dirs.find(':');
        const std::string_view dir = dirs.substr(0, colon);
        const fs::path candidate = fs::path(dir) / name;
        if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) {
            return true;
        }
        dirs.remove_prefix(colon == std::string_view::npos ? dirs.size() : colon + 1);
    }
    return false;
}

// --- instruction counts (callgrind) ------------------------------------------------------------

// The instructions callgrind counted for argv (all threads, user space only: the kernel's
// work, such as copying the file out of the page cache, is not counted), or nullopt.
std::optional<std::uint64_t> callgrind_instructions(const std::vector<std::string>& argv,
                                                    const fs::path& out_file) {
    std::vector<std::string> command{"valgrind", "--tool=callgrind", "--quiet",
                                     "--callgrind-out-file=" + out_file.string()};
    command.insert(command.end(), argv.begin(), argv.end());
    const ProgramRun run = run_program(command, Output::null);
    std::ifstream file(out_file);
    std::string line;
    std::optional<std::uint64_t> totals;
    while (std::getline(file, line)) {
        if (line.starts_with("totals: ")) {
            std::uint64_t value = 0;
            const char* first = line.data() + 8;
            if (std::from_chars(first, line.data() + line.size(), value).ec == std::errc{}) {
                totals = value;
            }
        }
    }
    std::error_code ignored;
    fs::remove(out_file, ignored);
    if (!run.ok || !totals) {
        fmt::print(stderr, "bench_tailer: callgrind failed for {}\n", fmt::join(argv, " "));
        return std::nullopt;
    }
    return totals;
}

// Instructions per byte and per line of a program: its count on a log minus its count on an
// empty log (start-up and exit), over the log's bytes and lines.
struct Instructions {
    std::uint64_t on_log{0};
    std::uint64_t on_empty{0};
    double per_byte{0};
    double per_line{0};
};

// A program (or the library's catch-up) in the catch-up comparison, and its runs.
struct Contender {
    std::string name;
    std::vector<std::string> args;  // without the log's path (which goes last); empty: the library
    Output output{Output::null};
    unsigned threads{1};  // the library's parse threads
    std::string key;      // the program, whatever its output: one instruction count per key
    std::vector<ProgramRun> runs;
    std::optional<Instructions> instructions;

    double median(double ProgramRun::*field) const {
        std::vector<double> values;
        for (const ProgramRun& run : runs) {
            values.push_back(run.*field);
        }
        std::sort(values.begin(), values.end());
        if (values.empty()) {
            return 0;
        }
        const std::size_t mid = values.size() / 2;
        return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
    }
};

// One line of --results: a contender's medians and instruction counts (-1: not counted).
struct ResultLine {
    std::string name;
    double mb_per_s;
    double seconds;
    double user;
    double sys;
    double instructions_per_byte;
    double instructions_per_line;
};

// Writes the catch-up figures as tab-separated lines under '#' comments saying what was run,
// for benchmarks/catch_up_chart.py.
void write_results(const fs::path& file, const std::vector<ResultLine>& results,
                   const DataFile& data, int rounds) {
    std::ofstream out(file, std::ios::trunc);
    out << fmt::format(
        "# bench_tailer catch-up: {} ({:.0f} MiB, {} lines) in the page cache, "
        "medians of {} rounds; {}\n",
        data.path.filename().string(), mib_of(static_cast<double>(data.bytes)), data.lines, rounds,
        cpu_model());
    out << "name\tMB/s\tseconds\tuser\tsys\tinstructions/byte\tinstructions/line\n";
    for (const ResultLine& r : results) {
        out << fmt::format("{}\t{:.1f}\t{:.4f}\t{:.4f}\t{:.4f}\t{:.4f}\t{:.1f}\n", r.name,
                           r.mb_per_s, r.seconds, r.user, r.sys, r.instructions_per_byte,
                           r.instructions_per_line);
    }
    if (!out.flush()) {
        throw std::runtime_error("cannot write " + file.string());
    }
}

// --- 2. memory behind a lagging sink ----------------------------------------------------------

struct Lagging {
    double seconds{0};
    std::uint64_t records{0};
    std::uint64_t read_ahead_high_water{0};
    std::uint64_t lag{0};
    std::uint64_t errors{0};
    long baseline_kib{0};
    long hwm_kib{0};
    bool in_order{true};
};

// Catches up with a sink paced to `rate` lines/s (it sleeps in proportion to each batch's
// size) for `duration`: the file holds nearly all of the backlog throughout.
Lagging lagging_sink(const DataFile& data, double rate, std::chrono::milliseconds duration) {
    Lagging r;
    r.baseline_kib = status_kib("VmRSS");
    snaptail::TailOptions options;
    options.path = data.path;
    options.start = snaptail::StartAt::beginning;
    std::stop_source stop;
    std::uint64_t next_line = 1;
    std::uint64_t sum = 0;
    Clock::time_point started;
    auto sink = [&](RawBatch& batch) {
        if (batch.first_line() != next_line) {
            r.in_order = false;
        }
        next_line = batch.last_line() + 1;
        for (const std::string_view line : batch.records()) {
            sum += line.size();
        }
        r.records += batch.size();
        const auto due =
            started + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(static_cast<double>(r.records) / rate));
        std::this_thread::sleep_until(due);
        if (Clock::now() - started >= duration) {
            stop.request_stop();
        }
    };
    Tailer tailer(options, snaptail::RawLineParser{}, sink, ErrorCounter{&r.errors});
    started = Clock::now();
    tailer.run(stop.get_token());
    r.seconds = seconds_since(started);
    r.hwm_kib = status_kib("VmHWM");
    const snaptail::TailerStats stats = tailer.stats();
    r.read_ahead_high_water = stats.read_ahead_high_water;
    r.lag = stats.lag;
    if (sum == 0) {
        r.in_order = false;
    }
    return r;
}

// --- 3. an idle tailer -----------------------------------------------------------------------

struct Idle {
    double seconds{0};
    double cpu{0};
    long wakeups{0};
    std::uint64_t errors{0};
    std::uint64_t records{0};
};

// Follows a file nothing writes to (from its end) for `duration`.
Idle idle_tailer(const fs::path& path, std::chrono::milliseconds duration) {
    Idle r;
    {
        std::ofstream file(path, std::ios::trunc);
        for (int i = 0; i < 1000; ++i) {
            file << "idle line " << i << "\n";
        }
    }
    snaptail::TailOptions options;
    options.path = path;
    options.start = snaptail::StartAt::end;
    Tailer tailer(
        options, snaptail::RawLineParser{}, [&r](RawBatch& batch) { r.records += batch.size(); },
        ErrorCounter{&r.errors});
    std::stop_source stop;
    const rusage before = self_usage();
    const auto started = Clock::now();
    std::jthread timer([&] {
        std::this_thread::sleep_until(started + duration);
        stop.request_stop();
    });
    tailer.run(stop.get_token());
    r.seconds = seconds_since(started);
    timer.join();
    const rusage after = self_usage();
    r.cpu = cpu_seconds(after) - cpu_seconds(before);
    r.wakeups = after.ru_nvcsw - before.ru_nvcsw;  // voluntary sleeps: the tailer's polls
    return r;
}

// --- 4. live latency -------------------------------------------------------------------------

struct Latency {
    std::uint64_t written{0};
    std::uint64_t received{0};
    std::uint64_t batches{0};
    std::uint64_t errors{0};
    double seconds{0};
    std::int64_t p50_ns{0};
    std::int64_t p90_ns{0};
    std::int64_t p99_ns{0};
    std::int64_t p999_ns{0};
    std::int64_t max_ns{0};
    bool in_order{true};
    bool ready{false};
};

// Sorts the samples into r's percentiles (nearest rank).
void summarize(std::vector<std::int64_t>& latencies, Latency& r) {
    if (latencies.empty()) {
        return;
    }
    std::sort(latencies.begin(), latencies.end());
    auto rank = [&](double p) {
        const auto k =
            static_cast<std::size_t>(std::ceil(p * static_cast<double>(latencies.size())));
        return latencies[std::clamp<std::size_t>(k, 1, latencies.size()) - 1];
    };
    r.p50_ns = rank(0.50);
    r.p90_ns = rank(0.90);
    r.p99_ns = rank(0.99);
    r.p999_ns = rank(0.999);
    r.max_ns = latencies.back();
}

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
}

// A writer thread appends `rate` lines/s, each starting with its steady_clock time, with
// write(2) on an O_APPEND descriptor; the sink records arrival minus that time.
Latency live_latency(const fs::path& path, double rate, std::chrono::milliseconds duration,
                     unsigned parse_threads) {
    Latency r;
    const auto total =
        static_cast<std::uint64_t>(rate * std::chrono::duration<double>(duration).count());
    std::vector<std::int64_t> latencies;
    latencies.reserve(total);
    std::atomic<std::uint64_t> received{0};
    std::uint64_t next_seq = 0;

    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "create " + path.string());
    }
    snaptail::TailOptions options;
    options.path = path;
    options.start = snaptail::StartAt::end;
    options.linger = 0ms;
    options.parse_threads = parse_threads;
    auto sink = [&](RawBatch& batch) {
        const std::int64_t arrived = now_ns();
        for (const std::string_view line : batch.records()) {
            // "ts=<ns> seq=<n> ..."
            std::int64_t sent = 0;
            std::uint64_t seq = 0;
            const char* end = line.data() + line.size();
            bool parsed = line.starts_with("ts=");
            if (parsed) {
                const auto ts = std::from_chars(line.data() + 3, end, sent);
                const std::string_view rest(ts.ptr, static_cast<std::size_t>(end - ts.ptr));
                parsed = ts.ec == std::errc{} && rest.starts_with(" seq=") &&
                         std::from_chars(ts.ptr + 5, end, seq).ec == std::errc{};
            }
            if (!parsed || seq != next_seq) {
                r.in_order = false;
            }
            next_seq = seq + 1;
            latencies.push_back(arrived - sent);
        }
        received.fetch_add(batch.size(), std::memory_order_release);
    };
    Tailer tailer(options, snaptail::RawLineParser{}, sink, ErrorCounter{&r.errors});
    tailer.start();
    // Lines written before the tailer has opened the file would count as old lines: wait.
    for (const auto give_up = Clock::now() + 5s; Clock::now() < give_up;) {
        if (tailer.stats().file_open) {
            r.ready = true;
            break;
        }
        std::this_thread::sleep_for(1ms);
    }

    const std::string filler = [] {
        Rng rng(7);
        fmt::memory_buffer line;
        std::uint64_t micros = 0;
        append_order_line(line, rng, 1, micros);
        return std::string(line.data(), line.size() - 1);
    }();
    const auto started = Clock::now();
    const auto period = std::chrono::duration<double>(1.0 / rate);
    fmt::memory_buffer line;
    for (std::uint64_t i = 0; i < total && r.ready; ++i) {
        std::this_thread::sleep_until(
            started + std::chrono::duration_cast<Clock::duration>(period * static_cast<double>(i)));
        line.clear();
        fmt::format_to(std::back_inserter(line), "ts={} seq={} {}\n", now_ns(), i,
                       std::string_view(filler).substr(0, 240));
        write_all(fd, line.data(), line.size());
        ++r.written;
    }
    ::close(fd);
    for (const auto give_up = Clock::now() + 5s;
         received.load(std::memory_order_acquire) < r.written && Clock::now() < give_up;) {
        std::this_thread::sleep_for(1ms);
    }
    r.seconds = seconds_since(started);
    tailer.stop();
    r.received = received.load();
    r.batches = tailer.stats().batches;
    summarize(latencies, r);
    return r;
}

// The machine's own wake-up latency, for comparison: the same writer schedule into a pipe that a
// thread blocked in poll(2) reads. No snaptail, no file system: what is left of the tailer's
// latency beyond this is the tailer's.
Latency pipe_latency(double rate, std::chrono::milliseconds duration) {
    Latency r;
    const auto total =
        static_cast<std::uint64_t>(rate * std::chrono::duration<double>(duration).count());
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    std::vector<std::int64_t> latencies;
    latencies.reserve(total);
    std::jthread reader([&] {
        std::array<std::int64_t, 512> sent{};
        std::size_t have = 0;  // bytes in `sent`
        for (;;) {
            pollfd ready{fds[0], POLLIN, 0};
            ::poll(&ready, 1, -1);
            const ssize_t n =
                ::read(fds[0], reinterpret_cast<char*>(sent.data()) + have, sizeof sent - have);
            if (n <= 0) {
                return;
            }
            const std::int64_t arrived = now_ns();
            have += static_cast<std::size_t>(n);
            const std::size_t whole = have / sizeof(std::int64_t);
            for (std::size_t i = 0; i < whole; ++i) {
                latencies.push_back(arrived - sent[i]);
            }
            have -= whole * sizeof(std::int64_t);
            std::memmove(sent.data(), sent.data() + whole, have);
        }
    });
    r.ready = true;
    const auto started = Clock::now();
    const auto period = std::chrono::duration<double>(1.0 / rate);
    for (std::uint64_t i = 0; i < total; ++i) {
        std::this_thread::sleep_until(
            started + std::chrono::duration_cast<Clock::duration>(period * static_cast<double>(i)));
        const std::int64_t sent = now_ns();
        write_all(fds[1], &sent, sizeof sent);
        ++r.written;
    }
    ::close(fds[1]);
    reader.join();
    ::close(fds[0]);
    r.seconds = seconds_since(started);
    r.received = latencies.size();
    summarize(latencies, r);
    return r;
}

// --- the table ------------------------------------------------------------------------------

struct Row {
    std::string scenario;
    std::string figure;
    std::string target;
    std::string verdict;
};

std::string verdict(bool ok, bool pass) {
    if (!ok) {
        return "BROKEN";
    }
    return pass ? "PASS" : "FAIL";
}

void print_table(const std::vector<Row>& rows) {
    std::array<std::size_t, 4> width{8, 6, 6, 9};
    for (const Row& row : rows) {
        width[0] = std::max(width[0], row.scenario.size());
        width[1] = std::max(width[1], row.figure.size());
        width[2] = std::max(width[2], row.target.size());
        width[3] = std::max(width[3], row.verdict.size());
    }
    auto print_row = [&](std::string_view a, std::string_view b, std::string_view c,
                         std::string_view d) {
        fmt::print("| {:<{}} | {:<{}} | {:<{}} | {:<{}} |\n", a, width[0], b, width[1], c, width[2],
                   d, width[3]);
    };
    print_row("scenario", "figure", "target", "vs target");
    fmt::print("|{:-<{}}|{:-<{}}|{:-<{}}|{:-<{}}|\n", "", width[0] + 2, "", width[1] + 2, "",
               width[2] + 2, "", width[3] + 2);
    for (const Row& row : rows) {
        print_row(row.scenario, row.figure, row.target, row.verdict);
    }
}

std::string micros(std::int64_t ns) {
    return fmt::format("{:.0f} us", static_cast<double>(ns) / 1e3);
}

}  // namespace

int main(int argc, char** argv) {
    const Config config = parse_args(argc, argv);
    bool broken = false;
    if (config.run_catch_up > 0) {
        // What callgrind counts: one catch-up, in this process, printing nothing.
        try {
            const auto data = reuse_data(*config.data, std::nullopt);
            if (!data) {
                fmt::print(stderr, "bench_tailer: {} has no .meta: not bench_tailer's data\n",
                           config.data->string());
                return 1;
            }
            const CatchUp c = catch_up(*data, config.run_catch_up);
            return c.records == data->lines && c.in_order && c.errors == 0 ? 0 : 1;
        } catch (const std::exception& e) {
            fmt::print(stderr, "bench_tailer: {}\n", e.what());
            return 1;
        }
    }
    try {
        utsname uts{};
        ::uname(&uts);
#if defined(__clang__)
        const std::string compiler =
            fmt::format("clang++ {}.{}.{}", __clang_major__, __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
        const std::string compiler =
            fmt::format("g++ {}.{}.{}", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#else
        const std::string compiler = "unknown compiler";
#endif
#if defined(NDEBUG)
        constexpr std::string_view build = "";
#else
        constexpr std::string_view build = " (NDEBUG not defined: not a release build)";
#endif
        fmt::print("bench_tailer: {} CPUs online, {}, Linux {} ({}), {}{}\n",
                   ::sysconf(_SC_NPROCESSORS_ONLN), cpu_model(), uts.release, uts.machine, compiler,
                   build);
        fmt::print("{}\n", cache_sizes());
        const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
        const std::string load_at_start = load_average();
        fmt::print("load average at start: {}\n", load_at_start);

        const fs::path& path = *config.data;
        std::optional<DataFile> reused = reuse_data(path, config.size_bytes);
        if (!reused && fs::exists(path) && !fs::exists(meta_path(path))) {
            throw std::runtime_error(fmt::format(
                "{} exists and was not generated by bench_tailer (no {}): remove it or choose "
                "another --data path",
                path.string(), meta_path(path).filename().string()));
        }
        const DataFile data = reused ? *reused : generate_data(path, config.size_bytes);
        // Generous: a scenario that overruns these is hung, not slow.
        const auto catch_up_limit = std::chrono::seconds{60 + 60 * (data.bytes >> 30)};
        const auto scenario_limit =
            std::chrono::duration_cast<std::chrono::seconds>(
                std::max({config.lag_duration, config.idle_duration, config.latency_duration})) +
            std::chrono::seconds{60};
        const double cache_seconds = page_cache(data.path);
        fmt::print(
            "data: {} ({:.1f} MiB, {} lines, {:.1f} bytes/line; {}); read once in {:.2f} s\n",
            data.path.string(), mib_of(static_cast<double>(data.bytes)), data.lines,
            static_cast<double>(data.bytes) /
                static_cast<double>(std::max<std::uint64_t>(data.lines, 1)),
            data.generated ? fmt::format("generated in {:.1f} s", data.generate_seconds) : "reused",
            cache_seconds);
        const ScratchDir scratch(path.has_parent_path() ? path.parent_path() : fs::path("."));
        const snaptail::TailOptions defaults;
        std::vector<Row> rows;
        std::vector<std::string> notes;
        const double mb = static_cast<double>(data.bytes) / 1e6;
        const double mlines = static_cast<double>(data.lines) / 1e6;

        // 1. catch-up: every contender once per round, the rounds interleaved so that all see
        // the same machine (each round starts with the next contender); medians of the rounds.
        const std::optional<fs::path> follow = config.follow ? config.follow : default_follow();
        std::vector<Contender> contenders;
        auto add_program = [&](std::string name, std::vector<std::string> args, Output output,
                               std::string key) {
            Contender c;
            c.name = std::move(name);
            c.args = std::move(args);
            c.output = output;
            c.key = std::move(key);
            contenders.push_back(std::move(c));
        };
        add_program("wc -l", {"wc", "-l"}, Output::text, "wc -l");
        for (const auto& [name, args] :
             std::vector<std::pair<std::string, std::vector<std::string>>>{
                 {"cat", {"cat"}}, {"tail -n +1", {"tail", "-n", "+1"}}}) {
            if (in_path(args.front())) {
                add_program(name + " > /dev/null", args, Output::null, name);
                add_program(name + " | pipe", args, Output::pipe, name);
            }
        }
        for (const unsigned threads : {1u, 2u}) {
            Contender c;
            c.name = threads == 1 ? "snaptail, RawLineParser" : "snaptail, 2 parse threads";
            c.threads = threads;
            c.key = c.name;
            contenders.push_back(std::move(c));
        }
        // snaptail-follow exits once idle for 1 ms; with --linger-ms 0 its last batch does not
        // wait 20 ms for more lines.
        const std::vector<std::string> follow_flags{"--idle-exit-ms", "1", "--linger-ms", "0"};
        auto add_follow = [&](const fs::path& binary, const std::string& label,
                              std::vector<std::string> extra) {
            std::vector<std::string> args{binary.string()};
            args.insert(args.end(), follow_flags.begin(), follow_flags.end());
            args.insert(args.end(), extra.begin(), extra.end());
            add_program(label + " > /dev/null", args, Output::null, label);
            add_program(label + " | pipe", args, Output::pipe, label);
        };
        if (follow) {
            add_follow(*follow, "snaptail-follow", {});
            add_follow(*follow, "snaptail-follow --parse-threads 2", {"--parse-threads", "2"});
        } else {
            notes.push_back("snaptail-follow not found (--follow PATH): not measured");
        }
        if (config.follow_baseline) {
            add_follow(*config.follow_baseline, "snaptail-follow (baseline build)", {});
        }

        std::vector<ChildRun<CatchUp>> library_runs[2];
        for (int round = 0; round < config.rounds && !broken; ++round) {
            for (std::size_t k = 0; k < contenders.size() && !broken; ++k) {
                Contender& c =
                    contenders[(k + static_cast<std::size_t>(round)) % contenders.size()];
                if (c.args.empty()) {
                    const auto run = in_child<CatchUp>("catch-up", catch_up_limit,
                                                       [&] { return catch_up(data, c.threads); });
                    const CatchUp& u = run.result;
                    if (!run.ok || u.records != data.lines ||
                        u.content_bytes != data.bytes - data.lines || !u.in_order ||
                        u.errors != 0) {
                        fmt::print(stderr,
                                   "bench_tailer: catch-up ({} parse threads) delivered {} of {} "
                                   "lines, {} of {} bytes{}{}\n",
                                   c.threads, u.records, data.lines, u.content_bytes,
                                   data.bytes - data.lines, u.in_order ? "" : ", out of order",
                                   u.errors != 0 ? fmt::format(", {} errors", u.errors) : "");
                        broken = true;
                        continue;
                    }
                    c.runs.push_back({u.seconds,
                                      seconds_of(run.usage.ru_utime),
                                      seconds_of(run.usage.ru_stime),
                                      0,
                                      {},
                                      true});
                    library_runs[c.threads - 1].push_back(run);
                    continue;
                }
                std::vector<std::string> args = c.args;
                args.push_back(data.path.string());
                ProgramRun run = run_program(args, c.output);
                std::uint64_t counted = 0;
                if (c.output == Output::text) {
                    std::string_view text = run.text;
                    text.remove_prefix(std::min(text.find_first_not_of(' '), text.size()));
                    std::from_chars(text.data(), text.data() + text.size(), counted);
                }
                const bool right =
                    run.ok && (c.output == Output::null ||
                               (c.output == Output::pipe && run.out_bytes == data.bytes) ||
                               (c.output == Output::text && counted == data.lines));
                if (!right) {
                    fmt::print(stderr,
                               "bench_tailer: {} failed or gave the wrong output ({} bytes to the "
                               "pipe, {} counted)\n",
                               c.name, run.out_bytes, counted);
                    broken = true;
                    continue;
                }
                c.runs.push_back(std::move(run));
            }
        }
        fmt::print("1. catch-up timed ({} rounds)\n", config.rounds);

        // Instructions per byte and per line (callgrind) on a smaller log of the same lines.
        std::optional<DataFile> small;
        if (config.callgrind_mib > 0 && !broken && in_path("valgrind")) {
            const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
            const fs::path small_path = dir / fmt::format("bench_{}m.log", config.callgrind_mib);
            const fs::path empty_path = dir / "bench_empty.log";
            const std::uint64_t small_size = config.callgrind_mib * mib;
            small = reuse_data(small_path, small_size);
            if (!small) {
                small = generate_data(small_path, small_size);
            }
            std::optional<DataFile> empty = reuse_data(empty_path, 0);
            if (!empty) {
                empty = generate_data(empty_path, 0);
            }
            page_cache(small->path);
            std::map<std::string, Instructions> counted;
            for (Contender& c : contenders) {
                if (c.output == Output::pipe || counted.contains(c.key)) {
                    continue;  // one count per program: where its output goes is the kernel's work
                }
                auto command = [&](const fs::path& log) {
                    std::vector<std::string> args = c.args;
                    if (args.empty()) {
                        args = {self_path().string(), "--run-catch-up", std::to_string(c.threads),
                                "--data"};
                    }
                    args.push_back(log.string());
                    return args;
                };
                const auto on_log =
                    callgrind_instructions(command(small->path), scratch / "callgrind.out");
                const auto on_empty =
                    callgrind_instructions(command(empty->path), scratch / "callgrind.out");
                if (on_log && on_empty) {
                    Instructions n{*on_log, *on_empty};
                    const double marginal =
                        static_cast<double>(*on_log) - static_cast<double>(*on_empty);
                    n.per_byte = marginal / static_cast<double>(small->bytes);
                    n.per_line = marginal / static_cast<double>(small->lines);
                    counted[c.key] = n;
                }
            }
            for (Contender& c : contenders) {
                if (const auto it = counted.find(c.key); it != counted.end()) {
                    c.instructions = it->second;
                }
            }
            fmt::print("1. instructions counted\n");
        } else if (config.callgrind_mib > 0 && !broken) {
            notes.push_back("valgrind not found: no instruction counts");
        }

        // The rows: medians, ratios to the programs each is compared with, instruction counts.
        auto find = [&](std::string_view name) -> const Contender* {
            for (const Contender& c : contenders) {
                if (c.name == name && !c.runs.empty()) {
                    return &c;
                }
            }
            return nullptr;
        };
        auto ratio_to = [&](const Contender& c, std::string_view name) -> std::optional<double> {
            const Contender* other = find(name);
            if (other == nullptr || c.runs.empty()) {
                return std::nullopt;
            }
            return other->median(&ProgramRun::seconds) / c.median(&ProgramRun::seconds);
        };
        std::vector<ResultLine> results;
        for (const Contender& c : contenders) {
            if (c.runs.empty()) {
                continue;
            }
            const double seconds = c.median(&ProgramRun::seconds);
            std::string figure =
                fmt::format("{:.0f} MB/s, {:.2f} M lines/s ({:.3f} s; user {:.3f} s, sys {:.3f} s)",
                            mb / seconds, mlines / seconds, seconds, c.median(&ProgramRun::user),
                            c.median(&ProgramRun::sys));
            if (c.instructions) {
                figure += fmt::format("; {:.3f} instr/byte, {:.0f} instr/line",
                                      c.instructions->per_byte, c.instructions->per_line);
            }
            std::string target = "-";
            std::string verdict_text = "info";
            std::vector<std::pair<std::string, double>> ratios;
            auto compare = [&](std::string_view name, std::string label) {
                if (const auto r = ratio_to(c, name)) {
                    ratios.emplace_back(std::move(label), *r);
                }
            };
            const bool to_pipe = c.output == Output::pipe;
            const std::string sink = to_pipe ? " | pipe" : " > /dev/null";
            if (c.args.empty()) {
                compare("wc -l", "wc -l");
                const double goal = c.threads == 1 ? 0.8 : 1.2;
                target = fmt::format(">= {:.1f}x wc -l", goal);
                if (!ratios.empty()) {
                    verdict_text = verdict(true, ratios.front().second >= goal);
                }
            } else if (c.key.starts_with("snaptail-follow")) {
                compare("tail -n +1" + sink, "tail");
                compare("cat" + sink, "cat");
                if (c.key != "snaptail-follow (baseline build)") {
                    compare("snaptail-follow (baseline build)" + sink, "baseline");
                }
                target = ">= 1.0x tail, >= 0.6x cat";
                const auto tail = ratio_to(c, "tail -n +1" + sink);
                const auto cat = ratio_to(c, "cat" + sink);
                if (tail && cat) {
                    verdict_text = verdict(true, *tail >= 1.0 && *cat >= 0.6);
                }
            } else if (c.name != "wc -l") {
                compare("wc -l", "wc -l");
            }
            for (const auto& [label, r] : ratios) {
                figure += fmt::format(", {:.2f}x {}", r, label);
            }
            rows.push_back({"catch-up: " + c.name, figure, target, verdict_text});
            results.push_back({c.name, mb / seconds, seconds, c.median(&ProgramRun::user),
                               c.median(&ProgramRun::sys),
                               c.instructions ? c.instructions->per_byte : -1.0,
                               c.instructions ? c.instructions->per_line : -1.0});
        }
        if (small) {
            std::string counts;
            for (const Contender& c : contenders) {
                if (c.instructions && c.output != Output::pipe) {
                    counts += fmt::format("{}{}: {:.1f} M on the log, {:.1f} M on an empty one",
                                          counts.empty() ? "" : "; ", c.key,
                                          static_cast<double>(c.instructions->on_log) / 1e6,
                                          static_cast<double>(c.instructions->on_empty) / 1e6);
                }
            }
            notes.push_back(fmt::format(
                "instructions: valgrind --tool=callgrind on {} ({:.0f} MiB, {} lines), all "
                "threads, user space only (the copy out of the page cache is the kernel's: see "
                "sys); per byte and per line after subtracting the count on an empty log: {}",
                small->path.string(), mib_of(static_cast<double>(small->bytes)), small->lines,
                counts));
        }
        notes.push_back(
            "catch-up: programs are timed from spawn to exit; the library's catch-up from the "
            "tailer's construction until the last line is delivered (in a forked child)");
        // The library's median run: its last batch's wait and its peak memory.
        for (const unsigned threads : {1u, 2u}) {
            auto& runs = library_runs[threads - 1];
            if (runs.empty()) {
                continue;
            }
            std::sort(runs.begin(), runs.end(), [](const auto& a, const auto& b) {
                return a.result.seconds < b.result.seconds;
            });
            const ChildRun<CatchUp>& median = runs[runs.size() / 2];
            const CatchUp& c = median.result;
            const double peak = static_cast<double>(median.usage.ru_maxrss) / 1024.0;
            if (threads == 1) {
                const double without_tail = c.seconds - c.last_batch_gap;
                const Contender* wc = find("wc -l");
                notes.push_back(fmt::format(
                    "catch-up: the last batch ({} lines) came {:.1f} ms after the one before "
                    "it: at the end of the file a partial batch waits for linger ({} ms by "
                    "default); without that wait snaptail took {:.3f} s, {:.2f}x wc -l",
                    c.last_batch_lines, c.last_batch_gap * 1e3, defaults.linger.count(),
                    without_tail,
                    wc != nullptr && without_tail > 0
                        ? wc->median(&ProgramRun::seconds) / without_tail
                        : 0.0));
                const double bound = mib_of(static_cast<double>(defaults.read_ahead_bytes)) + 16;
                rows.push_back(
                    {"catch-up: peak RSS",
                     fmt::format("{:.1f} MiB (read-ahead high water {:.2f} MiB, {} batches)", peak,
                                 mib_of(static_cast<double>(c.read_ahead_high_water)), c.batches),
                     fmt::format("<= {:.0f} MiB", bound), verdict(true, peak <= bound)});
            } else {
                rows.push_back({"catch-up: peak RSS, 2 parse threads",
                                fmt::format("{:.1f} MiB", peak), "-", "info"});
            }
        }
        if (config.results) {
            write_results(*config.results, results, data, config.rounds);
        }
        fmt::print("1. catch-up done\n");

        if (!config.catch_up_only) {
            // 2. a sink slowed to lag_lines_per_second.
            {
                const auto run = in_child<Lagging>("lagging sink", scenario_limit, [&] {
                    return lagging_sink(data, config.lag_lines_per_second, config.lag_duration);
                });
                const Lagging& l = run.result;
                const bool ok = run.ok && l.in_order && l.errors == 0 && l.records > 0;
                broken = broken || !ok;
                const double peak = static_cast<double>(l.hwm_kib) / 1024.0;
                const double read_ahead = mib_of(static_cast<double>(defaults.read_ahead_bytes));
                const double bound = read_ahead + 16;
                rows.push_back(
                    {fmt::format("lagging sink ({:.0f} lines/s, {:.0f} s): peak RSS",
                                 config.lag_lines_per_second,
                                 std::chrono::duration<double>(config.lag_duration).count()),
                     fmt::format("{:.1f} MiB ({:.1f} MiB before the tailer; {:.0f} lines/s "
                                 "delivered, backlog {:.0f} MiB)",
                                 peak, static_cast<double>(l.baseline_kib) / 1024.0,
                                 static_cast<double>(l.records) / l.seconds,
                                 mib_of(static_cast<double>(l.lag))),
                     fmt::format("<= {:.0f} MiB", bound), verdict(ok, peak <= bound)});
                rows.push_back({"lagging sink: read_ahead_high_water",
                                fmt::format("{:.2f} MiB",
                                            mib_of(static_cast<double>(l.read_ahead_high_water))),
                                fmt::format("<= {:.0f} MiB (read_ahead_bytes)", read_ahead),
                                verdict(ok, mib_of(static_cast<double>(l.read_ahead_high_water)) <=
                                                read_ahead)});
                notes.push_back(fmt::format("lagging sink: ru_maxrss from wait4 {:.1f} MiB",
                                            static_cast<double>(run.usage.ru_maxrss) / 1024.0));
            }
            fmt::print("2. lagging sink done\n");

            // 3. an idle tailer.
            {
                const auto run = in_child<Idle>("idle tailer", scenario_limit, [&] {
                    return idle_tailer(scratch / "idle.log", config.idle_duration);
                });
                const Idle& d = run.result;
                const bool ok = run.ok && d.errors == 0 && d.records == 0;
                broken = broken || !ok;
                const double percent = d.seconds > 0 ? 100.0 * d.cpu / d.seconds : 0.0;
                rows.push_back(
                    {fmt::format("idle tailer ({:.0f} s): CPU", d.seconds),
                     fmt::format("{:.3f}% ({:.1f} ms cpu, {:.1f} wakeups/s)", percent, d.cpu * 1e3,
                                 static_cast<double>(d.wakeups) / d.seconds),
                     "< 1%", verdict(ok, percent < 1.0)});
            }
            fmt::print("3. idle tailer done\n");

            // 4. live latency with linger 0, with one parse thread and with two.
            for (const unsigned threads : {1u, 2u}) {
                const auto run = in_child<Latency>("live latency", scenario_limit, [&] {
                    return live_latency(scratch / "live.log", config.live_lines_per_second,
                                        config.latency_duration, threads);
                });
                const Latency& t = run.result;
                const bool ok = run.ok && t.ready && t.in_order && t.errors == 0 &&
                                t.received == t.written && t.written > 0;
                if (!ok) {
                    fmt::print(stderr, "bench_tailer: live latency: {} written, {} received{}{}\n",
                               t.written, t.received,
                               t.ready ? "" : ", tailer never opened the file",
                               t.in_order ? "" : ", out of order");
                }
                broken = broken || !ok;
                rows.push_back({fmt::format("live latency ({:.0f} lines/s, linger 0, {} lines{})",
                                            config.live_lines_per_second, t.written,
                                            threads > 1 ? ", 2 parse threads" : ""),
                                fmt::format("p50 {}, p90 {}, p99 {}, p99.9 {}, max {} ({} batches)",
                                            micros(t.p50_ns), micros(t.p90_ns), micros(t.p99_ns),
                                            micros(t.p999_ns), micros(t.max_ns), t.batches),
                                "p99 < 1 ms", verdict(ok, t.p99_ns < 1'000'000)});
            }
            {
                const auto run = in_child<Latency>("pipe latency", scenario_limit, [&] {
                    return pipe_latency(config.live_lines_per_second, config.latency_duration);
                });
                const Latency& t = run.result;
                const bool ok = run.ok && t.received == t.written && t.written > 0;
                broken = broken || !ok;
                rows.push_back({"  same writer into a pipe, no snaptail (machine)",
                                fmt::format("p50 {}, p90 {}, p99 {}, p99.9 {}, max {}",
                                            micros(t.p50_ns), micros(t.p90_ns), micros(t.p99_ns),
                                            micros(t.p999_ns), micros(t.max_ns)),
                                "-", ok ? "info" : "BROKEN"});
            }
            fmt::print("4. live latency done\n");
        }
        fmt::print("\n");

        print_table(rows);
        for (const std::string& note : notes) {
            fmt::print("note: {}\n", note);
        }
        const std::string load_at_end = load_average();
        fmt::print("load average at end: {}\n", load_at_end);
        if (std::max(std::stod(load_at_start), std::stod(load_at_end)) >
            0.5 * static_cast<double>(cpus)) {
            fmt::print(
                "note: the machine was busy (1-minute load above half of its {} CPUs): wall-clock "
                "figures (throughput, latency) are pessimistic; cpu times are less affected\n",
                cpus);
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "bench_tailer: {}\n", e.what());
        return 1;
    }
    if (broken) {
        fmt::print(stderr, "bench_tailer: something is broken (see above)\n");
        return 1;
    }
    return 0;
}
