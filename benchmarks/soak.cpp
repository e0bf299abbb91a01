// Soak: a writer appends numbered lines at a steady rate and rotates the log every N MiB while
// snaptail-follow (with a checkpoint) follows it; every line that comes out is checked on the
// fly. At the end: lines delivered, rotations survived, peak RSS and CPU of the follower, and
// a verdict (exit 1 if a line was lost, duplicated or reordered).
//
//   soak FOLLOW_BINARY [--seconds N] [--rate LINES_PER_S] [--rotate-mib N] [--dir DIR]
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <poll.h>

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

struct Config {
    std::string follow;
    double seconds = 60;
    long rate = 20'000;
    long rotate_mib = 64;
    fs::path dir;
};

[[noreturn]] void usage() {
    fmt::print(stderr,
               "usage: soak FOLLOW_BINARY [--seconds N] [--rate LINES_PER_S] [--rotate-mib N] "
               "[--dir DIR]\n");
    std::exit(2);
}

Config parse(int argc, char** argv) {
    if (argc < 2) {
        usage();
    }
    Config c;
    c.follow = argv[1];
    for (int i = 2; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (i + 1 >= argc) {
            usage();
        }
        const char* v = argv[++i];
        if (a == "--seconds") {
            c.seconds = std::atof(v);
        } else if (a == "--rate") {
            c.rate = std::atol(v);
        } else if (a == "--rotate-mib") {
            c.rotate_mib = std::atol(v);
        } else if (a == "--dir") {
            c.dir = v;
        } else {
            usage();
        }
    }
    if (c.dir.empty()) {
        c.dir = fs::temp_directory_path() / fmt::format("snaptail-soak-{}", ::getpid());
    }
    return c;
}

// Checks the follower's output stream: "seq=<n> ..." with n = 1, 2, 3, ... exactly.
class Verifier {
  public:
    void feed(std::string_view bytes) {
        partial_.append(bytes);
        std::size_t start = 0;
        for (std::size_t nl; (nl = partial_.find('\n', start)) != std::string::npos;
             start = nl + 1) {
            check(std::string_view(partial_).substr(start, nl - start));
        }
        partial_.erase(0, start);
    }
    std::uint64_t lines() const { return next_ - 1; }
    std::uint64_t errors() const { return errors_; }

  private:
    void check(std::string_view line) {
        std::uint64_t seq = 0;
        if (line.starts_with("seq=")) {
            std::from_chars(line.data() + 4, line.data() + line.size(), seq);
        }
        if (seq != next_) {
            if (errors_++ < 10) {
                fmt::print(stderr, "soak: expected seq={}, got '{}'\n", next_, line.substr(0, 60));
            }
            next_ = seq + 1;
            return;
        }
        ++next_;
    }
    std::string partial_;
    std::uint64_t next_ = 1;
    std::uint64_t errors_ = 0;
};

void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n <= 0) {
            fmt::print(stderr, "soak: write failed: {}\n", std::strerror(errno));
            std::exit(1);
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace

int main(int argc, char** argv) {
    const Config c = parse(argc, argv);
    fs::create_directories(c.dir);
    const fs::path log = c.dir / "soak.log";
    const fs::path checkpoint = c.dir / "soak.ck";

    int out[2];
    if (::pipe(out) != 0) {
        return 1;
    }
    std::vector<std::string> args{c.follow,    "--checkpoint",     checkpoint.string(),
                                  "--stats",   "--rotate-wait-ms", "200",
                                  log.string()};
    std::vector<char*> argv_child;
    for (auto& a : args) {
        argv_child.push_back(a.data());
    }
    argv_child.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    const std::string stats_path = (c.dir / "stats.json").string();
    posix_spawn_file_actions_addopen(&actions, 2, stats_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    pid_t child = 0;
    if (posix_spawn(&child, argv_child[0], &actions, nullptr, argv_child.data(), environ) != 0) {
        fmt::print(stderr, "soak: cannot start {}\n", c.follow);
        return 1;
    }
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    ::fcntl(out[0], F_SETFL, O_NONBLOCK);

    Verifier verifier;
    std::vector<char> buffer(1 << 20);
    auto drain = [&](int timeout_ms) {
        pollfd p{out[0], POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) {
            return false;
        }
        bool any = false;
        for (;;) {
            const ssize_t n = ::read(out[0], buffer.data(), buffer.size());
            if (n <= 0) {
                return any;
            }
            any = true;
            verifier.feed(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
        }
    };

    const auto start = clock_type::now();
    const auto end = start + std::chrono::duration<double>(c.seconds);
    const std::uint64_t rotate_bytes = static_cast<std::uint64_t>(c.rotate_mib) << 20;
    std::uint64_t seq = 0;
    std::uint64_t file_bytes = 0;
    long rotations = 0;
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    std::string chunk;
    const auto tick = std::chrono::milliseconds(10);
    auto next = start;
    std::uint64_t last_report = 0;
    while (clock_type::now() < end) {
        next += tick;
        const auto elapsed = std::chrono::duration<double>(next - start).count();
        const auto due = static_cast<std::uint64_t>(elapsed * static_cast<double>(c.rate));
        chunk.clear();
        while (seq < due) {
            ++seq;
            fmt::format_to(std::back_inserter(chunk),
                           "seq={} time={} payload=soak-order-status-line-with-some-padding-"
                           "to-look-like-a-real-log-entry-0123456789abcdef\n",
                           seq, elapsed);
        }
        write_all(fd, chunk);
        file_bytes += chunk.size();
        if (file_bytes >= rotate_bytes) {
            ++rotations;
            fs::rename(log, c.dir / fmt::format("soak.log.{}", rotations));
            std::error_code ignored;
            fs::remove(c.dir / fmt::format("soak.log.{}", rotations - 3), ignored);
            ::close(fd);
            fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            file_bytes = 0;
        }
        while (clock_type::now() < next) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(next - clock_type::now());
            drain(static_cast<int>(std::max<long>(left.count(), 0)));
        }
        if (seq - last_report >= static_cast<std::uint64_t>(c.rate) * 60) {
            last_report = seq;
            fmt::print(stderr, "soak: {:.0f} s, {} written, {} verified, {} rotations\n", elapsed,
                       seq, verifier.lines(), rotations);
        }
    }
    ::close(fd);
    // Let the follower catch up, then stop it: SIGTERM delivers all complete lines read.
    const auto catch_up = clock_type::now() + std::chrono::seconds(30);
    while (verifier.lines() < seq && clock_type::now() < catch_up) {
        drain(100);
    }
    ::kill(child, SIGTERM);
    int status = 0;
    rusage usage{};
    ::wait4(child, &status, 0, &usage);
    while (drain(100)) {
    }
    const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                       static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
    const double wall = std::chrono::duration<double>(clock_type::now() - start).count();
    std::ifstream stats(stats_path);
    std::string stats_line;
    std::getline(stats, stats_line);

    const bool ok = verifier.errors() == 0 && verifier.lines() == seq && WIFEXITED(status) &&
                    WEXITSTATUS(status) == 0;
    fmt::print("soak: {:.0f} s at {} lines/s, rotation every {} MiB\n", c.seconds, c.rate,
               c.rotate_mib);
    fmt::print(
        "| lines written | lines delivered | out of order/lost | rotations | peak RSS | "
        "CPU |\n|---|---|---|---|---|---|\n");
    fmt::print("| {} | {} | {} | {} | {:.1f} MiB | {:.2f}% ({:.1f} s) |\n", seq, verifier.lines(),
               verifier.errors(), rotations, static_cast<double>(usage.ru_maxrss) / 1024.0,
               100.0 * cpu / wall, cpu);
    fmt::print("follower stats: {}\n", stats_line);
    fmt::print("verdict: {}\n", ok ? "every line delivered once, in order" : "FAILED");
    std::error_code ignored;
    fs::remove_all(c.dir, ignored);
    return ok ? 0 : 1;
}
