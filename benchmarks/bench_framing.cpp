// bench_framing: what finding line ends costs, apart from the tailer. It reads a page-cached log
// in 256 KiB preads (the tailer's read size) into one buffer and frames its lines in several
// ways, from none (the copy out of the page cache alone) to memchr per line (what LineFramer
// does) and a newline bitmask (16 or 64 bytes compared at once, the set bits taken one by one),
// with and without the per-line bookkeeping a batch needs (a 32-byte line reference and a
// 16-byte record per line). Each way prints its wall and CPU time per GiB and per line; run one
// way under `valgrind --tool=callgrind` with --only to count its instructions.
//
//   bench_framing --data PATH [--rounds N] [--only NAME]
//
// The buffer is reused for every read, so that it stays in cache: what is measured is the
// framing, not the tailer's window. A line cut by a read's end is moved to the front (one
// line's bytes) and completed by the next read.
#include "../examples/example_cli.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t read_bytes = std::size_t{256} << 10;

// What a framing pass found: lines and content bytes (to check every way against the others).
struct Count {
    std::uint64_t lines{0};
    std::uint64_t content{0};
    bool operator==(const Count&) const = default;
};

// The bookkeeping a batch does per line: a reference to it and a record (the identity
// parser's string_view), in vectors emptied every 4096 lines as a cut batch would be.
struct LineRef {
    std::string_view text;
    std::uint64_t line;
    std::uint64_t offset;
};

struct Batch {
    std::vector<LineRef> lines;
    std::vector<std::string_view> records;
    std::uint64_t offset{0};
    Batch() {
        lines.reserve(4096);
        records.reserve(4096);
    }
    void add(Count& count, std::string_view text) {
        lines.push_back(LineRef{text, count.lines, offset});
        offset += text.size() + 1;
        if (lines.size() == 4096) {
            for (const LineRef& line : lines) {
                records.push_back(line.text);
            }
            lines.clear();
            records.clear();
        }
    }
};

// Frames buffer[0, size): calls on_line(begin, end) for each complete line and returns the
// index after the last '\n' (the start of an incomplete line).
template <class OnLine>
std::size_t frame_memchr(const char* buffer, std::size_t size, OnLine&& on_line) {
    std::size_t start = 0;
    while (start < size) {
        const auto* nl = static_cast<const char*>(std::memchr(buffer + start, '\n', size - start));
        if (nl == nullptr) {
            break;
        }
        const auto end = static_cast<std::size_t>(nl - buffer);
        on_line(start, end);
        start = end + 1;
    }
    return start;
}

// The same with the positions of '\n' taken from a bitmask of 16 bytes at a time (SSE2: any
// x86-64), or plain bytes elsewhere.
template <class OnLine>
std::size_t frame_sse2(const char* buffer, std::size_t size, OnLine&& on_line) {
    std::size_t start = 0;
    std::size_t i = 0;
#if defined(__x86_64__)
    const __m128i newline = _mm_set1_epi8('\n');
    for (; i + 16 <= size; i += 16) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(buffer + i));
        auto mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, newline)));
        while (mask != 0) {
            const std::size_t end = i + static_cast<std::size_t>(__builtin_ctz(mask));
            on_line(start, end);
            start = end + 1;
            mask &= mask - 1;
        }
    }
#endif
    for (; i < size; ++i) {
        if (buffer[i] == '\n') {
            on_line(start, i);
            start = i + 1;
        }
    }
    return start;
}

#if defined(__x86_64__)
// 64 bytes at a time with AVX2 (two compares, one 64-bit mask); the caller checks the CPU.
template <class OnLine>
__attribute__((target("avx2"))) std::size_t frame_avx2(const char* buffer, std::size_t size,
                                                       OnLine&& on_line) {
    std::size_t start = 0;
    std::size_t i = 0;
    const __m256i newline = _mm256_set1_epi8('\n');
    for (; i + 64 <= size; i += 64) {
        const __m256i low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(buffer + i));
        const __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(buffer + i + 32));
        auto mask =
            static_cast<std::uint64_t>(
                static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(low, newline)))) |
            static_cast<std::uint64_t>(
                static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(high, newline))))
                << 32;
        while (mask != 0) {
            const std::size_t end = i + static_cast<std::size_t>(__builtin_ctzll(mask));
            on_line(start, end);
            start = end + 1;
            mask &= mask - 1;
        }
    }
    for (; i < size; ++i) {
        if (buffer[i] == '\n') {
            on_line(start, i);
            start = i + 1;
        }
    }
    return start;
}
#endif

enum class Scan { none, memchr, sse2, avx2 };

struct Way {
    std::string name;
    Scan scan;
    bool bookkeeping;
};

struct Timing {
    double wall{0};
    double user{0};
    double sys{0};
    Count count;
};

double seconds_of(const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6;
}

// Reads the whole file once, framing it the given way.
Timing run(const std::string& path, const Way& way) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "open " + path);
    }
    // Room for one read after a carried-over line (lines are much shorter than a read).
    const std::size_t capacity = 2 * read_bytes;
    const auto buffer = std::make_unique<char[]>(capacity);
    Batch batch;
    Timing t;
    rusage before{};
    ::getrusage(RUSAGE_SELF, &before);
    const auto started = Clock::now();
    std::size_t have = 0;  // bytes carried over from the previous read
    std::uint64_t offset = 0;
    for (;;) {
        const ssize_t n = ::pread(fd, buffer.get() + have, std::min(read_bytes, capacity - have),
                                  static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            ::close(fd);
            throw std::system_error(errno, std::generic_category(), "pread " + path);
        }
        if (n == 0) {
            break;
        }
        offset += static_cast<std::uint64_t>(n);
        const std::size_t size = have + static_cast<std::size_t>(n);
        const char* const data = buffer.get();
        auto on_line = [&](std::size_t begin, std::size_t end) {
            ++t.count.lines;
            t.count.content += end - begin;
            if (way.bookkeeping) {
                batch.add(t.count, std::string_view(data + begin, end - begin));
            }
        };
        std::size_t used = size;
        switch (way.scan) {
            case Scan::none:
                break;
            case Scan::memchr:
                used = frame_memchr(data, size, on_line);
                break;
            case Scan::sse2:
                used = frame_sse2(data, size, on_line);
                break;
            case Scan::avx2:
#if defined(__x86_64__)
                used = frame_avx2(data, size, on_line);
#endif
                break;
        }
        have = size - used;
        std::memmove(buffer.get(), buffer.get() + used, have);
    }
    t.wall = std::chrono::duration<double>(Clock::now() - started).count();
    rusage after{};
    ::getrusage(RUSAGE_SELF, &after);
    t.user = seconds_of(after.ru_utime) - seconds_of(before.ru_utime);
    t.sys = seconds_of(after.ru_stime) - seconds_of(before.ru_stime);
    ::close(fd);
    return t;
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const std::size_t mid = values.size() / 2;
    return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::string data;
    int rounds = 7;
    std::string only;
    CLI::App app("Times ways of finding line ends in a page-cached log.", "bench_framing");
    snaptail::examples::set_style(app);
    app.add_option("--data", data, "the log (read once first, to be in the page cache)")
        ->required()
        ->type_name("PATH");
    app.add_option("--rounds", rounds, "rounds, each running every way once (default 7)")
        ->transform(snaptail::examples::non_negative_integer)
        ->check(CLI::Range(1, 1000).description(""))
        ->type_name("N");
    app.add_option("--only", only, "run only the way named NAME, once (for callgrind)")
        ->type_name("NAME");
    snaptail::examples::parse_command_line(app, argc, argv);

    std::vector<Way> ways{
        {"pread", Scan::none, false},
        {"pread+memchr", Scan::memchr, false},
        {"pread+sse2", Scan::sse2, false},
        {"pread+memchr+bookkeeping", Scan::memchr, true},
        {"pread+sse2+bookkeeping", Scan::sse2, true},
    };
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        ways.insert(ways.begin() + 3, Way{"pread+avx2", Scan::avx2, false});
        ways.push_back(Way{"pread+avx2+bookkeeping", Scan::avx2, true});
    }
#endif
    try {
        if (!only.empty()) {
            for (const Way& way : ways) {
                if (way.name == only) {
                    const Timing t = run(data, way);
                    fmt::print("{}: {} lines, {} content bytes\n", way.name, t.count.lines,
                               t.count.content);
                    return 0;
                }
            }
            snaptail::examples::usage_error("no way named '" + only + "'");
        }
        run(data, ways.front());  // into the page cache
        std::vector<std::vector<Timing>> timings(ways.size());
        for (int round = 0; round < rounds; ++round) {
            for (std::size_t i = 0; i < ways.size(); ++i) {
                timings[i].push_back(run(data, ways[i]));
            }
        }
        Count expected;
        for (std::size_t i = 0; i < ways.size(); ++i) {
            const Count& count = timings[i].front().count;
            if (ways[i].scan != Scan::none) {
                if (expected.lines == 0) {
                    expected = count;
                } else if (!(count == expected)) {
                    fmt::print(stderr, "bench_framing: {} found {} lines, others {}\n",
                               ways[i].name, count.lines, expected.lines);
                    return 1;
                }
            }
        }
        const double gib = [&] {
            const int fd = ::open(data.c_str(), O_RDONLY | O_CLOEXEC);
            const off_t size = ::lseek(fd, 0, SEEK_END);
            ::close(fd);
            return static_cast<double>(size) / static_cast<double>(1 << 30);
        }();
        fmt::print("bench_framing: {} ({:.2f} GiB, {} lines), medians of {} rounds, per GiB\n",
                   data, gib, expected.lines, rounds);
        fmt::print(
            "| way | wall ms | user ms | sys ms | user ns/line |\n|---|---:|---:|---:|---:|\n");
        for (std::size_t i = 0; i < ways.size(); ++i) {
            std::vector<double> wall;
            std::vector<double> user;
            std::vector<double> sys;
            for (const Timing& t : timings[i]) {
                wall.push_back(t.wall);
                user.push_back(t.user);
                sys.push_back(t.sys);
            }
            fmt::print("| {} | {:.1f} | {:.1f} | {:.1f} | {:.2f} |\n", ways[i].name,
                       median(wall) * 1e3 / gib, median(user) * 1e3 / gib, median(sys) * 1e3 / gib,
                       median(user) * 1e9 /
                           static_cast<double>(std::max<std::uint64_t>(expected.lines, 1)));
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "bench_framing: {}\n", e.what());
        return 1;
    }
    return 0;
}
