// snaptail-follow as a user runs it: byte-exact output, exit codes, signals, --stats.
#include "prometheus_samples.hpp"
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <regex>
#include <sstream>

#ifdef SNAPTAIL_FOLLOW_PATH

using namespace snaptail::test;

namespace {

std::string slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// snaptail-follow with its stdout and stderr in files.
class Follow {
  public:
    Follow(const TempDir& dir, std::vector<std::string> args)
        : out_(dir / "stdout"), err_(dir / "stderr") {
        args.insert(args.begin(), SNAPTAIL_FOLLOW_PATH);
        std::vector<char*> argv;
        for (auto& arg : args) {
            argv.push_back(arg.data());
        }
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        posix_spawn_file_actions_addopen(&actions, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        REQUIRE(rc == 0);
    }
    Follow(const Follow&) = delete;
    Follow& operator=(const Follow&) = delete;
    ~Follow() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    void signal(int sig) const { ::kill(pid_, sig); }
    /// Bytes the child has read with read(2)/pread(2) so far (/proc/PID/io rchar).
    std::uint64_t bytes_read() const {
        std::ifstream io("/proc/" + std::to_string(pid_) + "/io");
        std::string key;
        std::uint64_t value = 0;
        while (io >> key >> value) {
            if (key == "rchar:") {
                return value;
            }
        }
        return 0;
    }
    /// Waits for exit; returns the exit status (or 128 + signal).
    int wait() {
        int status = 0;
        REQUIRE(::waitpid(pid_, &status, 0) == pid_);
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::string out() const { return slurp(out_); }
    std::string err() const { return slurp(err_); }

  private:
    fs::path out_;
    fs::path err_;
    pid_t pid_{-1};
};

/// What snaptail-follow prints for `content` (whole lines only): each line without its '\n'
/// and a trailing '\r', long lines under `policy`, each followed by '\n'. An independent
/// model of the framer's rules, to check the output byte for byte.
std::string expected_output(std::string_view content, std::size_t max_line_bytes,
                            std::string_view policy) {
    std::string out;
    while (!content.empty()) {
        const auto nl = content.find('\n');
        if (nl == std::string_view::npos) {
            FAIL("expected_output takes whole lines");
        }
        std::string_view line = content.substr(0, nl);
        content.remove_prefix(nl + 1);
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (line.size() <= max_line_bytes) {
            out.append(line).push_back('\n');
        } else if (policy == "truncate") {
            out.append(line.substr(0, max_line_bytes)).push_back('\n');
        } else if (policy == "split") {
            for (; line.size() > max_line_bytes; line.remove_prefix(max_line_bytes)) {
                out.append(line.substr(0, max_line_bytes)).push_back('\n');
            }
            out.append(line).push_back('\n');
        }  // skip: nothing
    }
    return out;
}

/// A log that breaks the runs snaptail-follow writes straight from its read buffer in every
/// way: lines shorter and longer than the size below which runs are copied, CRLF lines, lone
/// CRs, empty lines, NUL bytes and invalid UTF-8, and lines longer than `long_bytes`, in an
/// irregular mix so that one batch holds many runs (and more iovecs than IOV_MAX).
std::string mixed_log(int lines, std::size_t long_bytes) {
    std::string content;
    std::uint64_t state = 12345;
    auto next = [&state] {  // a small LCG: the same log every run
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return state >> 33;
    };
    for (int i = 0; i < lines; ++i) {
        std::string line = fmt::format("{:06} ", i);
        const auto kind = next() % 16;
        std::size_t length = 0;
        if (kind == 0) {
            length = long_bytes + 1 + next() % 700;  // long
        } else if (kind == 1) {
            length = 0;  // empty (the number is dropped below)
        } else if (kind < 6) {
            length = next() % 120;  // short: copied
        } else {
            length = 200 + next() % 500;  // around and above the copy threshold
        }
        while (line.size() < length) {
            line.push_back(static_cast<char>('a' + next() % 26));
        }
        if (kind == 1) {
            line.clear();
        }
        if (i % 13 == 5 && !line.empty()) {
            line[line.size() / 2] = '\0';
        }
        if (i % 17 == 3) {
            line += "\xff\xfe\rmid";  // invalid UTF-8 and a lone CR: content
        }
        if (i % 7 == 2) {
            line += '\r';  // CRLF: the '\r' is stripped
        }
        content += line;
        content += '\n';
    }
    return content;
}

/// The value of `"key":N` in --stats output.
std::uint64_t stat_of(const std::string& err, const std::string& key) {
    std::smatch match;
    REQUIRE(std::regex_search(err, match, std::regex("\"" + key + "\":([0-9]+)")));
    return std::stoull(match[1].str());
}

}  // namespace

TEST_CASE("snaptail-follow prints every line byte-exact and in order", "[follow]") {
    TempDir dir;
    const auto path = dir / "app.log";
    std::string content;
    for (int i = 0; i < 3000; ++i) {
        content += fmt::format("line {} \xff\xfe", i);
        content += std::string("\0", 1);
        content += "\n";
    }
    content += "crlf\r\n\n";
    append(path, content);
    Follow follow(dir, {"--idle-exit-ms", "200", "--batch-lines", "64", path.string()});
    CHECK(follow.wait() == 0);
    std::string expected = content;
    expected.replace(expected.size() - 7, 7, "crlf\n\n");
    CHECK(follow.out() == expected);
}

TEST_CASE("snaptail-follow writes byte-exact output whatever breaks the runs in its buffer",
          "[follow]") {
    // The output is written from the read buffer in runs of adjacent lines; every line that is
    // not followed by its own '\n' there (CRLF, long lines) ends a run, short runs are copied,
    // and a batch may need more iovecs than one writev takes.
    TempDir dir;
    const auto path = dir / "app.log";
    const std::string content = mixed_log(6000, 1000);
    append(path, content);
    for (const std::string policy : {"truncate", "skip", "split"}) {
        for (const std::string batch_lines : {"4096", "1000000"}) {
            DYNAMIC_SECTION(policy << ", --batch-lines " << batch_lines) {
                Follow follow(dir,
                              {"--idle-exit-ms", "200", "--max-line-bytes", "1000", "--long-lines",
                               policy, "--batch-lines", batch_lines, "--batch-bytes", "100000000",
                               "--linger-ms", "100", path.string()});
                CHECK(follow.wait() == 0);
                CHECK(follow.out() == expected_output(content, 1000, policy));
            }
        }
    }
    SECTION("a copied line right after IOV_MAX iovecs") {
        // 512 long CRLF lines take two iovecs each (the line, then its '\n' from elsewhere):
        // the short CRLF line after them is copied when no iovec is left, and more copies
        // follow it into the staging buffer.
        std::string content_at_limit;
        for (int round = 0; round < 3; ++round) {
            for (int i = 0; i < 512; ++i) {
                content_at_limit += fmt::format("{:04}{}\r\n", i, std::string(300, 'L'));
            }
            for (int i = 0; i < 100; ++i) {
                content_at_limit += fmt::format("short {} {}\r\n", round, i);
            }
        }
        const auto limit_path = dir / "limit.log";
        append(limit_path, content_at_limit);
        Follow follow(dir, {"--idle-exit-ms", "200", "--batch-lines", "1000000", "--batch-bytes",
                            "100000000", "--linger-ms", "100", limit_path.string()});
        CHECK(follow.wait() == 0);
        CHECK(follow.out() == expected_output(content_at_limit, 1000, "truncate"));
    }
    SECTION("CRLF lines only: every line copied, more than the staging buffer in a batch") {
        std::string crlf;
        for (int i = 0; i < 30000; ++i) {
            crlf += fmt::format("crlf line {}\r\n", i);
        }
        const auto crlf_path = dir / "crlf.log";
        append(crlf_path, crlf);
        Follow follow(dir, {"--idle-exit-ms", "200", "--batch-lines", "1000000", "--batch-bytes",
                            "100000000", "--linger-ms", "100", crlf_path.string()});
        CHECK(follow.wait() == 0);
        CHECK(follow.out() == expected_output(crlf, 1000, "truncate"));
    }
}

TEST_CASE("snaptail-follow --parse-threads 2 catches up byte-exact, reading with both threads",
          "[follow]") {
    TempDir dir;
    const auto path = dir / "app.log";
    // Several MiB: a backlog that both threads read in ranges (see --stats' parallel_reads).
    const std::string content = mixed_log(30000, 2000);
    append(path, content);
    for (const std::string policy : {"truncate", "split"}) {
        DYNAMIC_SECTION(policy) {
            Follow follow(dir, {"--idle-exit-ms", "200", "--parse-threads", "2", "--max-line-bytes",
                                "2000", "--long-lines", policy, "--stats", path.string()});
            CHECK(follow.wait() == 0);
            CHECK(follow.out() == expected_output(content, 2000, policy));
            CHECK(stat_of(follow.err(), "parallel_reads") > 0);
        }
    }
    Follow zero(dir, {"--parse-threads", "0", path.string()});
    CHECK(zero.wait() == 2);
    CHECK_THAT(zero.err(), has_substring("parse_threads"));
}

TEST_CASE("snaptail-follow ends the unterminated last line of a rotated file with a newline",
          "[follow]") {
    // The last line of a retired file has no '\n' after it in the read buffer: the byte there
    // is not the batch's, and the newline written after the line comes from elsewhere.
    const std::string long_tail(700, 'z');
    for (const std::string& last :
         {std::string("partial"), long_tail, long_tail + "\r", std::string("x\0y", 3)}) {
        DYNAMIC_SECTION("last line of " << last.size() << " bytes") {
            TempDir dir;
            const auto path = dir / "app.log";
            const std::string first = text_of(numbered(std::string(300, 'a'), 1, 50));
            append(path, first + last);
            Follow follow(dir, {"--rotate-wait-ms", "50", "--poll-ms", "20", "--linger-ms", "1",
                                path.string()});
            REQUIRE(eventually([&] { return follow.out().size() >= first.size(); }));
            fs::rename(path, dir / "app.log.1");
            append(path, "c\nd\n");
            std::string expected = first + last;
            if (expected.back() == '\r') {
                expected.pop_back();
            }
            expected += "\nc\nd\n";
            REQUIRE(eventually([&] { return follow.out().size() >= expected.size(); }));
            follow.signal(SIGTERM);
            CHECK(follow.wait() == 0);
            CHECK(follow.out() == expected);
        }
    }
}

TEST_CASE("snaptail-follow writes to a pipe (which it widens) byte-exact", "[follow]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const std::string content = mixed_log(20000, 1000);
    append(path, content);
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    std::vector<std::string> args{SNAPTAIL_FOLLOW_PATH, "--idle-exit-ms", "200",
                                  "--max-line-bytes",   "1000",           path.string()};
    std::vector<char*> argv;
    for (auto& arg : args) {
        argv.push_back(arg.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    REQUIRE(rc == 0);
    std::string out;
    std::array<char, 4096> buffer{};  // small reads: the writer fills the pipe and waits
    for (ssize_t n = 0; (n = ::read(fds[0], buffer.data(), buffer.size())) != 0;) {
        if (n < 0 && errno == EINTR) {
            continue;
        }
        REQUIRE(n > 0);
        out.append(buffer.data(), static_cast<std::size_t>(n));
    }
    // It asked for a 1 MiB pipe buffer, which unprivileged processes get unless the system's
    // limit is lower.
    long max_size = 0;
    std::ifstream("/proc/sys/fs/pipe-max-size") >> max_size;
    if (max_size >= (1 << 20)) {
        CHECK(::fcntl(fds[0], F_GETPIPE_SZ) == (1 << 20));
    }
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(out == expected_output(content, 1000, "truncate"));
}

TEST_CASE("snaptail-follow writes its output up to where writing fails, then exits 1", "[follow]") {
    // A file size limit makes a writev short in the middle of a run (the rest is written by
    // the next call, which fails with EFBIG): the bytes before it are exact, the batch is not
    // delivered, and the exit status says so.
    TempDir dir;
    const auto path = dir / "app.log";
    const std::string content = text_of(numbered(std::string(290, 'w'), 1, 4000));
    append(path, content);
    constexpr rlim_t limit = 300'007;
    rlimit old{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    rlimit limited = old;
    limited.rlim_cur = limit;
    // SIGXFSZ ignored is inherited across exec: the child's write fails instead of killing it.
    struct sigaction ignore {};
    struct sigaction previous {};
    ignore.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGXFSZ, &ignore, &previous) == 0);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);
    std::optional<Follow> follow;
    try {
        follow.emplace(dir, std::vector<std::string>{"--idle-exit-ms", "200", path.string()});
    } catch (...) {
        ::setrlimit(RLIMIT_FSIZE, &old);
        ::sigaction(SIGXFSZ, &previous, nullptr);
        throw;
    }
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &old) == 0);
    REQUIRE(::sigaction(SIGXFSZ, &previous, nullptr) == 0);
    CHECK(follow->wait() == 1);
    CHECK(follow->out() == content.substr(0, limit));
    CHECK_THAT(follow->err(), has_substring("write to stdout: File too large; stopping"));
}

TEST_CASE("snaptail-follow reports bad usage with exit status 2", "[follow]") {
    TempDir dir;
    const std::vector<std::vector<std::string>> bad{
        {},
        {"--batch-lines", "ten", "x.log"},
        {"--long-lines", "wrap", "x.log"},
        {"--no-such-option", "x.log"},
        {"a.log", "b.log"},
        {"--batch-lines", "0", "x.log"},
        {"--linger-ms"},
        {"--linger-ms", "-5", "x.log"},
        {"--batch-lines", "0x10", "x.log"},
        {"--dir", dir.path().string(), "--glob", "*.log", "x.log"},
        {"--dir", dir.path().string()},
        {"--glob", "*.log", "x.log"},
        {"--all-files", "x.log"},
        {"--dir", dir.path().string(), "--glob", "*.log", "--order", "size"},
        {"--dir", dir.path().string(), "--glob", "/abs/*.log"},
    };
    for (const auto& args : bad) {
        Follow follow(dir, args);
        CHECK(follow.wait() == 2);
        CHECK_THAT(follow.err(), has_substring("snaptail-follow:"));
        CHECK_THAT(follow.err(), has_substring("usage:"));
    }
    Follow zero(dir, {"--batch-lines", "0", "x.log"});
    CHECK(zero.wait() == 2);
    CHECK_THAT(zero.err(), has_substring("max_batch_lines = 0"));
}

TEST_CASE("snaptail-follow -h and --help print the help on stdout and exit 0", "[follow]") {
    TempDir dir;
    for (const char* flag : {"-h", "--help"}) {
        Follow follow(dir, {flag});
        CHECK(follow.wait() == 0);
        const std::string out = follow.out();
        CHECK_THAT(out, Catch::Matchers::StartsWith("usage: snaptail-follow [options] [PATH]\n"));
        for (const char* option : {"--from-beginning",     "--from-end",
                                   "--batch-lines N",      "--batch-bytes N",
                                   "--linger-ms N",        "--parse-threads N",
                                   "--max-line-bytes N",   "--long-lines POLICY",
                                   "--read-ahead-bytes N", "--poll-ms N",
                                   "--rotate-wait-ms N",   "--no-inotify",
                                   "--checkpoint FILE",    "--commit-interval-ms N",
                                   "--sink-delay-ms N",    "--idle-exit-ms N",
                                   "--show-batches",       "--stats",
                                   "--dir ROOT",           "--glob PATTERN",
                                   "--all-files",          "--order name|mtime",
                                   "--max-open-files N"}) {
            CHECK_THAT(out, has_substring(option));
        }
        CHECK(follow.err().empty());
    }
}

TEST_CASE("SIGTERM and SIGINT: complete lines already read are printed, exit status 0",
          "[follow]") {
    for (int sig : {SIGTERM, SIGINT}) {
        DYNAMIC_SECTION("signal " << sig) {
            TempDir dir;
            const auto path = dir / "app.log";
            // 5 MB: more than a sanitizer runtime reads of /proc at start, so the kernel's
            // count of bytes read says the file was read; less than the read-ahead, so all
            // of it is held undelivered until the signal.
            const std::string all = text_of(numbered("line", 1, 500'000));
            append(path, all + "unfinished");
            // A long linger and huge batches: without the signal nothing would be printed.
            Follow follow(dir, {"--linger-ms", "3600000", "--batch-lines", "1000000",
                                "--batch-bytes", "100000000", "--stats", path.string()});
            REQUIRE(eventually([&] { return follow.bytes_read() >= all.size(); }));
            follow.signal(sig);
            CHECK(follow.wait() == 0);
            // Exactly the complete lines among the bytes it had read, in order; never the
            // unfinished one. (--stats says how many bytes it read.)
            const std::string err = follow.err();
            const auto at = err.find("\"bytes\":");
            REQUIRE(at != std::string::npos);
            const std::size_t bytes = std::stoull(err.substr(at + 8));
            REQUIRE(bytes > 0);
            CHECK(follow.out() == all.substr(0, all.rfind('\n', bytes - 1) + 1));
        }
    }
}

TEST_CASE("snaptail-follow --stats prints the final counters as one JSON object", "[follow]") {
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, "a\nb\nc\n");
    Follow follow(dir, {"--idle-exit-ms", "100", "--stats", path.string()});
    CHECK(follow.wait() == 0);
    CHECK(follow.out() == "a\nb\nc\n");
    const std::string err = follow.err();
    CHECK_THAT(err, Catch::Matchers::StartsWith("{\"lines\":3,\"bytes\":6,\"records\":3,"));
    CHECK_THAT(err, Catch::Matchers::EndsWith("}\n"));
}

TEST_CASE("snaptail-follow --checkpoint: a valid checkpoint decides, an invalid one is reported",
          "[follow]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const auto checkpoint = dir / "app.ck";
    append(path, "a\nb\n");
    {
        Follow first(dir,
                     {"--idle-exit-ms", "100", "--checkpoint", checkpoint.string(), path.string()});
        CHECK(first.wait() == 0);
        CHECK(first.out() == "a\nb\n");
    }
    append(path, "c\n");
    {
        Follow resumed(dir, {"--idle-exit-ms", "100", "--checkpoint", checkpoint.string(),
                             "--from-beginning", path.string()});
        CHECK(resumed.wait() == 0);
        CHECK(resumed.out() == "c\n");  // the checkpoint decided, not --from-beginning
    }
    append(checkpoint, "garbage after the end\n");
    append(path, "d\n");
    {
        Follow fallback(dir, {"--idle-exit-ms", "100", "--checkpoint", checkpoint.string(),
                              "--from-end", path.string()});
        CHECK(fallback.wait() == 0);
        CHECK(fallback.out().empty());  // --from-end decided: nothing new after the start
        CHECK_THAT(fallback.err(), has_substring(checkpoint.string()));
        CHECK_THAT(fallback.err(), has_substring("after the closing 'end'"));
    }
}

TEST_CASE("snaptail-follow prints a few errors of a kind and the count of the rest", "[follow]") {
    // The default error handler: a file of 200 overlong lines must not print 200 messages.
    TempDir dir;
    const auto path = dir / "app.log";
    std::string content;
    for (int i = 1; i <= 200; ++i) {
        content += fmt::format("{:04}{}\n", i, std::string(60, 'x'));
    }
    append(path, content);
    Follow follow(dir, {"--idle-exit-ms", "200", "--max-line-bytes", "16", "--long-lines", "skip",
                        path.string()});
    CHECK(follow.wait() == 0);
    CHECK(follow.out().empty());
    std::string expected;
    for (int i = 1; i <= 10; ++i) {
        expected += fmt::format(
            "snaptail: long_line: {}: line {} at byte {}: line longer than max_line_bytes (16) "
            "was skipped\n",
            path.string(), i, (i - 1) * 65);
    }
    expected += fmt::format(
        "snaptail: long_line: {}: more errors of this kind in the next N ms are counted, "
        "not printed\n"
        "snaptail: long_line: {}: 190 more errors of this kind not printed\n",
        path.string(), path.string());
    // The window is 10 s from the first error: the notice, printed a little later, says how
    // much of it is left.
    const std::string err = follow.err();
    std::smatch match;
    REQUIRE(std::regex_search(err, match, std::regex("next ([0-9]+) ms")));
    CHECK(std::stoi(match[1].str()) > 9'000);
    CHECK(std::stoi(match[1].str()) <= 10'000);
    CHECK(std::regex_replace(err, std::regex("next [0-9]+ ms"), "next N ms") == expected);
}

TEST_CASE(
    "snaptail-follow --metrics-file is rewritten while it runs and at exit, and matches --stats",
    "[follow][prometheus]") {
    TempDir dir;
    const auto path = dir / "app.log";
    const auto metrics = dir / "snaptail.prom";
    append(path, text_of(numbered("line", 1, 1000)));
    Follow follow(dir, {"--metrics-file", metrics.string(), "--metrics-interval-ms", "50",
                        "--batch-lines", "100", "--stats", path.string()});
    const std::string label = fmt::format("{{path=\"{}\"}}", path.string());
    auto lines_in_file = [&] {
        const auto samples = prometheus_samples(slurp(metrics));
        const auto it = samples.find("snaptail_lines_total" + label);
        return it == samples.end() ? std::string() : it->second;
    };
    REQUIRE(eventually([&] { return lines_in_file() == "1000"; }));
    append(path, text_of(numbered("more", 1, 500)));
    REQUIRE(eventually([&] { return lines_in_file() == "1500"; }));  // rewritten while running
    follow.signal(SIGTERM);
    REQUIRE(follow.wait() == 0);
    // At exit: every counter the JSON stats print has the same value in the metrics file.
    const std::string err = follow.err();
    const auto samples = prometheus_samples(slurp(metrics));
    const std::vector<std::pair<std::string, std::string>> pairs{
        {"lines", "snaptail_lines_total"},
        {"bytes", "snaptail_bytes_total"},
        {"records", "snaptail_records_total"},
        {"batches", "snaptail_batches_total"},
        {"commits", "snaptail_commits_total"},
        {"offset", "snaptail_offset_bytes"},
        {"lag", "snaptail_lag_bytes"},
        {"pending_bytes", "snaptail_pending_bytes"},
        {"read_ahead_high_water", "snaptail_read_ahead_high_water_bytes"}};
    for (const auto& [json, metric] : pairs) {
        std::smatch match;
        REQUIRE(std::regex_search(err, match, std::regex("\"" + json + "\":([0-9]+)")));
        INFO(metric);
        REQUIRE(samples.count(metric + label) == 1);
        CHECK(samples.at(metric + label) == match[1].str());
    }
    CHECK(samples.at("snaptail_lines_total" + label) == "1500");
    if (const auto promtool = find_program("promtool")) {
        const auto verdict = promtool_check(*promtool, metrics);
        CHECK(verdict.output == "");
        CHECK(verdict.status == 0);
    }
}

TEST_CASE("snaptail-follow --dir --glob prints the hourly files' lines byte-exact, file by file",
          "[follow][file_set]") {
    TempDir dir;
    std::string expected;
    for (const auto& [date, hour] : std::vector<std::pair<int, int>>{
             {20261204, 9}, {20261204, 10}, {20261204, 23}, {20261205, 0}}) {
        std::string content;
        for (int i = 0; i < 500; ++i) {
            content += fmt::format("{}/{} line {} \xff", date, hour, i);
            content += std::string("\0", 1);
            content += "\n";
        }
        const auto file = dir / "hourly" / std::to_string(date) / std::to_string(hour);
        fs::create_directories(file.parent_path());
        append(file, content);
        expected += content;
    }
    Follow follow(dir, {"--idle-exit-ms", "200", "--batch-lines", "64", "--show-batches", "--dir",
                        dir.path().string(), "--glob", "hourly/*/*"});
    CHECK(follow.wait() == 0);
    CHECK(follow.out() == expected);
    // --show-batches names the file of each batch: 8 batches of hour 9 (500 lines, 64 a batch).
    const std::string err = follow.err();
    const std::regex batch_line("batch [0-9]+: " + (dir / "hourly/20261204/9").string() + ": ");
    const auto count = std::distance(std::sregex_iterator(err.begin(), err.end(), batch_line),
                                     std::sregex_iterator());
    CHECK(count == 8);
}

TEST_CASE("snaptail-follow --dir --all-files prints every file's lines in order within it",
          "[follow][file_set]") {
    TempDir dir;
    for (int f = 0; f < 5; ++f) {
        append(dir / fmt::format("app{}.log", f), text_of(numbered(fmt::format("f{}", f), 1, 300)));
    }
    Follow follow(dir, {"--idle-exit-ms", "200", "--batch-lines", "16", "--all-files", "--stats",
                        "--dir", dir.path().string(), "--glob", "app*.log"});
    CHECK(follow.wait() == 0);
    std::map<std::string, std::vector<std::string>> per_file;
    std::istringstream lines(follow.out());
    for (std::string line; std::getline(lines, line);) {
        per_file[line.substr(0, line.find('-'))].push_back(line);
    }
    REQUIRE(per_file.size() == 5);
    for (int f = 0; f < 5; ++f) {
        CHECK(per_file[fmt::format("f{}", f)] == numbered(fmt::format("f{}", f), 1, 300));
    }
    CHECK_THAT(follow.err(), has_substring("\"files_found\":5"));
}

#else

TEST_CASE("snaptail-follow tests need the examples", "[follow]") {
    WARN("SNAPTAIL_BUILD_EXAMPLES is OFF: the snaptail-follow tests were not built");
}

#endif
