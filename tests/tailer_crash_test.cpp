// Crash safety of the checkpoint: snaptail-follow is killed at random moments while this test
// appends to its file and rotates it, and restarted each time. Over all the outputs, no line may
// be missing, each run must deliver in file order, and what a restart delivers again must be no
// more than the one commit the kill interrupted (nothing after a graceful SIGTERM).
// SNAPTAIL_CRASH_SEED=<n> replays a schedule; SNAPTAIL_CRASH_VERBOSE=1 prints every run's log.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/checkpoint_store.hpp>
#include <snaptail/position.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

using namespace snaptail;
using namespace snaptail::test;

namespace {

#ifdef SNAPTAIL_FOLLOW_PATH
constexpr std::string_view follow_binary = SNAPTAIL_FOLLOW_PATH;
#else
constexpr std::string_view follow_binary;
#endif

// The schedule (how many lines, where writes are cut, when to rotate, when to kill) comes from
// one seed; the child's timing does not, so a seed reproduces the schedule, not the interleaving.
std::uint64_t crash_seed() {
    if (const char* text = std::getenv("SNAPTAIL_CRASH_SEED")) {
        const std::string_view value(text);
        std::uint64_t seed = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seed);
        if (ec != std::errc{} || end != value.data() + value.size()) {
            throw std::invalid_argument("SNAPTAIL_CRASH_SEED must be an unsigned integer, not '" +
                                        std::string(value) + "'");
        }
        return seed;
    }
    std::random_device device;
    return (std::uint64_t{device()} << 32) ^ std::uint64_t{device()};
}

class Dice {
  public:
    explicit Dice(std::uint64_t seed) : rng_(seed) {}
    std::uint64_t between(std::uint64_t low, std::uint64_t high) {
        return std::uniform_int_distribution<std::uint64_t>(low, high)(rng_);
    }
    bool chance(std::uint64_t percent) { return between(1, 100) <= percent; }

  private:
    std::mt19937_64 rng_;
};

std::string slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string shorten(std::string_view text, std::size_t max = 80) {
    return text.size() <= max ? std::string(text) : std::string(text.substr(0, max)) + "...";
}

void write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            throw std::system_error(errno, std::generic_category(), "write to the log");
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

// The log: numbered lines "seq=<n> <padding>", appended with write(2) in pieces that may stop
// inside a line, and rotated by rename. It remembers every line and where each line of each file
// ends, so that a checkpoint (file identity, offset) maps back to the last line it covers.
class LogWriter {
  public:
    LogWriter(fs::path path, Dice& dice) : path_(std::move(path)), dice_(dice) { create(); }
    LogWriter(const LogWriter&) = delete;
    LogWriter& operator=(const LogWriter&) = delete;
    ~LogWriter() { ::close(fd_); }

    /// Appends `count` new lines in one to four write(2) calls. With `stop_inside_line`, the
    /// tail of the last new line is held back until the next append or finish_line().
    void append(std::size_t count, bool stop_inside_line) {
        std::string text = std::move(held_);
        held_.clear();
        std::size_t last_start = text.size();
        auto& file = files_.back();
        for (std::size_t i = 0; i < count; ++i) {
            std::string line = "seq=" + std::to_string(lines_.size() + 1) + " ";
            const auto padding = dice_.between(0, 120);
            for (std::uint64_t j = 0; j < padding; ++j) {
                line += alphabet[dice_.between(0, alphabet.size() - 1)];
            }
            last_start = text.size();
            text += line;
            text += '\n';
            file.generated += line.size() + 1;
            file.line_ends.push_back(file.generated);
            lines_.push_back(std::move(line));
        }
        if (stop_inside_line && count > 0) {
            const auto cut =
                static_cast<std::size_t>(dice_.between(last_start + 1, text.size() - 1));
            held_ = text.substr(cut);
            text.resize(cut);
        }
        write_in_pieces(text);
    }

    /// Writes the held-back tail of the last line, if any.
    void finish_line() {
        std::string text = std::move(held_);
        held_.clear();
        write_in_pieces(text);
    }

    /// Renames the file to `to` and continues in a new file at the path.
    void rotate(const fs::path& to) {
        finish_line();
        ::close(fd_);
        fd_ = -1;
        fs::rename(path_, to);
        create();
    }

    /// Lines whose newline has been written.
    std::uint64_t complete_lines() const { return lines_.size() - (held_.empty() ? 0 : 1); }
    /// The line numbered `seq` (from 1), without its newline.
    const std::string& line(std::uint64_t seq) const { return lines_.at(seq - 1); }
    FileId current_file() const { return files_.back().id; }

    /// The number of the last line before `offset` in file `id`; an error when that is not
    /// the end of a written line of a file this writer created.
    std::uint64_t seq_at(FileId id, std::uint64_t offset, std::string& error) const {
        for (const auto& file : files_) {
            if (file.id != id) {
                continue;
            }
            const auto it = std::upper_bound(file.line_ends.begin(), file.line_ends.end(), offset);
            const auto before = static_cast<std::uint64_t>(it - file.line_ends.begin());
            const std::uint64_t boundary = before == 0 ? 0 : *(it - 1);
            if (boundary != offset || offset > file.written) {
                error = fmt::format(
                    "offset {} of file {} (lines {}..) is not the end of a written line "
                    "({} bytes written)",
                    offset, file.name, file.first_seq, file.written);
            }
            return file.first_seq - 1 + before;
        }
        error = fmt::format("file {} was not created by the writer", id);
        return 0;
    }

  private:
    struct File {
        FileId id;
        std::string name;  // as first created
        std::uint64_t first_seq;
        std::vector<std::uint64_t> line_ends;
        std::uint64_t generated{0};
        std::uint64_t written{0};
    };

    static constexpr std::string_view alphabet =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.:;,=/|{}[]\"'";

    void create() {
        fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
        struct stat st {};
        if (fd_ < 0 || ::fstat(fd_, &st) != 0) {
            throw std::system_error(errno, std::generic_category(), "create " + path_.string());
        }
        File file;
        file.id =
            FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
        file.name = fmt::format("#{} ({})", files_.size(), file.id);
        file.first_seq = lines_.size() + 1;
        files_.push_back(std::move(file));
    }

    void write_in_pieces(std::string_view text) {
        auto pieces = dice_.between(1, 4);
        while (!text.empty()) {
            const auto size = --pieces == 0
                                  ? text.size()
                                  : static_cast<std::size_t>(dice_.between(1, text.size()));
            write_all(fd_, text.substr(0, size));
            files_.back().written += size;
            text.remove_prefix(size);
        }
    }

    fs::path path_;
    Dice& dice_;
    int fd_{-1};
    std::vector<std::string> lines_;
    std::vector<File> files_;
    std::string held_;  // the unwritten tail of the last line
};

// snaptail-follow running with stdin from /dev/null and stdout and stderr in files. Killed and
// reaped on destruction if it still runs.
class Child {
  public:
    Child(std::vector<std::string> args, const fs::path& out, const fs::path& err) {
        std::vector<char*> argv;
        for (auto& arg : args) {
            argv.push_back(arg.data());
        }
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        // Whatever this process does with signals, the child starts from the defaults.
        posix_spawnattr_t attributes;
        posix_spawnattr_init(&attributes);
        sigset_t none;
        sigemptyset(&none);
        sigset_t defaults;
        sigemptyset(&defaults);
        sigaddset(&defaults, SIGINT);
        sigaddset(&defaults, SIGTERM);
        sigaddset(&defaults, SIGPIPE);
        posix_spawnattr_setsigmask(&attributes, &none);
        posix_spawnattr_setsigdefault(&attributes, &defaults);
        posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        const int rc = ::posix_spawn(&pid_, argv[0], &actions, &attributes, argv.data(), environ);
        posix_spawnattr_destroy(&attributes);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0) {
            pid_ = -1;
            throw std::system_error(rc, std::generic_category(), "posix_spawn " + args.front());
        }
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }

    /// True once the child has ended (it is not reaped).
    bool ended() const {
        siginfo_t info{};
        return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
               info.si_pid != 0;
    }

    /// True once snaptail-follow's main thread blocks SIGTERM (its signal thread then takes it).
    bool blocks_sigterm() const {
        std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
        for (std::string line; std::getline(status, line);) {
            if (line.starts_with("SigBlk:")) {
                const auto hex = line.find_first_not_of(" \t", 7);
                std::uint64_t mask = 0;
                if (hex == std::string::npos ||
                    std::from_chars(line.data() + hex, line.data() + line.size(), mask, 16).ec !=
                        std::errc{}) {
                    return false;
                }
                return (mask & (std::uint64_t{1} << (SIGTERM - 1))) != 0;
            }
        }
        return false;
    }

    /// Sends `signal` and reaps the child; its wait status, or nullopt if it outlived the
    /// deadline (it is then killed).
    std::optional<int> stop(int signal) {
        ::kill(pid_, signal);
        return reap();
    }

    /// Waits for the child to end by itself; as stop().
    std::optional<int> reap() {
        const auto until = std::chrono::steady_clock::now() + deadline;
        for (;;) {
            int status = 0;
            const pid_t done = ::waitpid(pid_, &status, WNOHANG);
            if (done == pid_) {
                pid_ = -1;
                return status;
            }
            if (done < 0 || std::chrono::steady_clock::now() > until) {
                return std::nullopt;  // the destructor kills it
            }
            std::this_thread::sleep_for(2ms);
        }
    }

  private:
    pid_t pid_{-1};
};

std::string describe_status(std::optional<int> status) {
    if (!status) {
        return "still running at the deadline";
    }
    if (WIFEXITED(*status)) {
        return fmt::format("exit status {}", WEXITSTATUS(*status));
    }
    if (WIFSIGNALED(*status)) {
        return fmt::format("killed by signal {} ({})", WTERMSIG(*status),
                           ::strsignal(WTERMSIG(*status)));
    }
    return fmt::format("wait status {:#x}", *status);
}

// When, after the spawn, the kill is sent (before a random sleep of a few milliseconds).
enum class KillMoment {
    at_once,            // while the program may still be loading
    after_start,        // once main() has set up its signal handling
    after_output,       // once it has printed its first line
    after_catching_up,  // once its checkpoint covers every complete line written so far
};

constexpr std::string_view name_of(KillMoment moment) {
    switch (moment) {
        case KillMoment::at_once:
            return "at once";
        case KillMoment::after_start:
            return "after start";
        case KillMoment::after_output:
            return "after first output";
        case KillMoment::after_catching_up:
            return "after catching up";
    }
    return "?";
}

struct Scenario {
    std::string_view name;
    int signal;  // SIGKILL or SIGTERM
    unsigned commit_interval_ms;
    int kills;
};

// One run of snaptail-follow and what it left behind.
struct Run {
    std::string how;  // batch size and how it ended, for the failure report
    std::uint64_t batch_lines{0};
    bool polling{false};   // --no-inotify
    bool graceful{false};  // ended by SIGTERM or --idle-exit-ms: it commits on the way out
    std::optional<int> status;
    bool status_ok{false};
    std::uint64_t resumed_after{0};  // the checkpoint's line when it started (0: none)
    std::uint64_t committed{0};      // ... and when it had ended
    std::string output;
    std::string errors;
    // Filled in by the checks.
    std::vector<std::uint64_t> seqs;
    std::uint64_t again{0};  // lines an earlier run had delivered already
};

class CrashTest {
  public:
    CrashTest(const Scenario& scenario, std::uint64_t seed)
        : scenario_(scenario),
          dice_(seed),
          path_(dir_ / "app.log"),
          checkpoint_(dir_ / "checkpoint"),
          store_(checkpoint_),
          writer_(path_, dice_) {
        fs::create_directory(dir_ / "runs");
    }

    void run_all() {
        writer_.append(dice_.between(20, 300), dice_.chance(30));
        for (int k = 0; k < scenario_.kills && problems_.empty(); ++k) {
            run_and_kill();
            if (dice_.chance(35)) {
                rotate_if_safe("while stopped");
            }
        }
        if (problems_.empty()) {
            run_to_idle_exit();
        }
    }

    /// Checks every run's output against the log and the checkpoints; empty when all is well.
    std::vector<std::string> check() {
        const std::uint64_t total = writer_.complete_lines();
        std::vector<std::uint8_t> seen(total + 1, 0);
        std::uint64_t delivered_before = 0;  // highest line delivered by the runs so far
        std::size_t furthest = 0;            // ... by this run first
        for (std::size_t k = 0; k < runs_.size(); ++k) {
            Run& run = runs_[k];
            const auto where = fmt::format("run {}", k);
            if (!run.status_ok) {
                problem(fmt::format("{} ({}): {}", where, run.how, describe_status(run.status)));
            }
            if (!run.errors.empty()) {
                problem(fmt::format("{} wrote to stderr:\n{}", where, shorten(run.errors, 2000)));
            }
            parse_output(run, where, total);
            for (std::size_t i = 0; i < run.seqs.size(); ++i) {
                const std::uint64_t seq = run.seqs[i];
                seen[seq] = 1;
                const std::uint64_t expected = i == 0 ? run.resumed_after + 1 : run.seqs[i - 1] + 1;
                if (seq != expected) {
                    problem(i == 0 ? fmt::format("{} began at line {}, but its checkpoint said "
                                                 "line {} was the last one delivered",
                                                 where, seq, run.resumed_after)
                                   : fmt::format("{}: line {} follows line {} ({})", where, seq,
                                                 run.seqs[i - 1],
                                                 seq <= run.seqs[i - 1] ? "out of order"
                                                                        : "lines skipped"));
                }
                run.again += seq <= delivered_before ? 1 : 0;
            }
            const std::uint64_t last = run.seqs.empty() ? run.resumed_after : run.seqs.back();
            if (run.committed < run.resumed_after || run.committed > last) {
                problem(fmt::format(
                    "{}: the checkpoint says line {} after the run, which delivered lines up "
                    "to {} and resumed after line {}{}",
                    where, run.committed, last, run.resumed_after,
                    run.committed > last ? ": a crash now loses lines" : ""));
            }
            if (run.graceful && run.committed != last) {
                problem(
                    fmt::format("{} ({}) ended gracefully with line {} delivered, yet its "
                                "checkpoint says line {}",
                                where, run.how, last, run.committed));
            }
            // A killed run leaves at most its last batch delivered but not committed (with a
            // commit after every batch); a graceful one leaves nothing.
            const bool per_batch = scenario_.commit_interval_ms == 0;
            if (!run.graceful && per_batch && last - run.committed > run.batch_lines) {
                problem(
                    fmt::format("{} ({}) was killed with lines {}..{} delivered but not "
                                "committed, more than one batch",
                                where, run.how, run.committed + 1, last));
            }
            // So the lines a run delivers again are at most one batch of the run that delivered
            // them first (checkpoints never move back), and none if that run stopped gracefully.
            if (run.again > 0) {
                const Run& first = runs_[furthest];
                if (first.graceful) {
                    problem(
                        fmt::format("{} delivered {} line(s) again, up to line {} which run {} "
                                    "({}) had delivered and committed",
                                    where, run.again, delivered_before, furthest, first.how));
                } else if (per_batch && run.again > first.batch_lines) {
                    problem(
                        fmt::format("{} delivered {} line(s) again, more than one batch of run "
                                    "{} ({}), which delivered them first",
                                    where, run.again, furthest, first.how));
                }
            }
            if (last > delivered_before) {
                delivered_before = last;
                furthest = k;
            }
        }
        std::uint64_t missing = 0;
        for (std::uint64_t seq = 1; seq <= total; ++seq) {
            if (seen[seq] == 0 && ++missing <= 10) {
                problem(fmt::format("line {} was never delivered", seq));
            }
        }
        if (missing > 10) {
            problem(fmt::format("... {} lines never delivered in all", missing));
        }
        if (!runs_.empty() && runs_.back().committed != total) {
            problem(fmt::format("the final checkpoint says line {}, not the last line {}",
                                runs_.back().committed, total));
        }
        return problems_;
    }

    /// One line per run: how it ran, what it delivered, where its checkpoint was.
    std::string run_log() const {
        std::string log;
        for (std::size_t k = 0; k < runs_.size(); ++k) {
            const Run& run = runs_[k];
            log += fmt::format("run {}: {}; resumed after {}; delivered {}; checkpoint after {}\n",
                               k, run.how, run.resumed_after,
                               run.seqs.empty() ? std::string("nothing")
                                                : fmt::format("{}..{} ({} again)", run.seqs.front(),
                                                              run.seqs.back(), run.again),
                               run.committed);
        }
        for (const auto& event : events_) {
            log += event + "\n";
        }
        return log;
    }

    std::uint64_t lines_written() const { return writer_.complete_lines(); }
    std::size_t rotations() const { return rotations_; }

  private:
    void problem(std::string text) {
        if (problems_.size() < 40) {
            problems_.push_back(std::move(text));
        }
    }

    // The line the checkpoint covers, 0 when there is none yet.
    std::uint64_t checkpointed_line() {
        const auto saved = store_.load();
        if (!saved) {
            return 0;
        }
        std::string error;
        const auto seq = writer_.seq_at(saved->file, saved->offset, error);
        if (!error.empty()) {
            problem("the checkpoint names no line boundary: " + error);
        }
        return seq;
    }

    // Rotates only when the checkpoint names the file at the path. A file rotated away twice
    // while no follower had reached it is out of any follower's reach (a documented limitation;
    // a resume reports it as a gap), so the test never does that.
    void rotate_if_safe(std::string_view when) {
        const auto saved = store_.load();
        if (!saved || saved->file != writer_.current_file()) {
            return;
        }
        const auto to = dir_ / fmt::format("app.log.{}", ++rotations_);
        writer_.rotate(to);
        events_.push_back(fmt::format("rotation {} {} (before run {}), at line {}", rotations_,
                                      when, runs_.size(), writer_.complete_lines()));
    }

    std::unique_ptr<Child> spawn(Run& run, bool idle_exit) {
        run.resumed_after = checkpointed_line();
        run.batch_lines = std::vector<std::uint64_t>{1, 3, 8, 32}[dice_.between(0, 3)];
        const auto k = runs_.size();
        out_ = dir_ / "runs" / fmt::format("run_{}.out", k);
        err_ = dir_ / "runs" / fmt::format("run_{}.err", k);
        std::vector<std::string> args{std::string(follow_binary),
                                      "--checkpoint",
                                      checkpoint_.string(),
                                      "--commit-interval-ms",
                                      std::to_string(scenario_.commit_interval_ms),
                                      "--from-beginning",
                                      "--batch-lines",
                                      std::to_string(run.batch_lines),
                                      "--linger-ms",
                                      "1",
                                      "--rotate-wait-ms",
                                      "50",
                                      "--poll-ms",
                                      "20"};
        if (idle_exit) {
            args.insert(args.end(), {"--idle-exit-ms", "300"});
        }
        run.polling = dice_.chance(25);
        if (run.polling) {
            args.emplace_back("--no-inotify");
        }
        args.push_back(path_.string());
        return std::make_unique<Child>(std::move(args), out_, err_);
    }

    void finish(Run& run) {
        run.committed = checkpointed_line();
        run.output = slurp(out_);
        run.errors = slurp(err_);
        runs_.push_back(std::move(run));
    }

    // Whether the child has come to `moment`. Once main() runs, SIGTERM is blocked and waits
    // for snaptail-follow's signal thread, so a SIGTERM is then a request to stop.
    bool reached(KillMoment moment, const Child& child, std::uint64_t written) {
        if (moment == KillMoment::at_once) {
            return true;
        }
        if (!child.blocks_sigterm()) {
            return false;
        }
        if (moment == KillMoment::after_output) {
            std::error_code ec;
            return fs::file_size(out_, ec) > 0 && !ec;
        }
        if (moment == KillMoment::after_catching_up) {
            return checkpointed_line() >= written || !problems_.empty();
        }
        return true;
    }

    void run_and_kill() {
        Run run;
        auto child = spawn(run, false);
        const bool term = scenario_.signal == SIGTERM;
        // SIGTERM before main() blocks it would kill the child by default: not what is tested.
        auto moment = static_cast<KillMoment>(dice_.between(term ? 1 : 0, 3));
        if (moment == KillMoment::after_output && writer_.complete_lines() <= run.resumed_after) {
            moment = KillMoment::after_start;  // nothing new to print yet
        }
        const auto bursts = dice_.between(1, 12);
        writer_.append(dice_.between(1, 80), dice_.chance(30));
        const auto written = writer_.complete_lines();
        if (!eventually([&] { return reached(moment, *child, written) || child->ended(); })) {
            problem(fmt::format("run {}: the moment '{}' did not come within {} s", runs_.size(),
                                name_of(moment), deadline.count()));
        }
        // The writer keeps appending in small bursts, so that the child is often busy
        // delivering and committing when the kill comes. The random pauses make the moment of
        // the kill random; they synchronise nothing. With a commit interval the window is
        // longer, so that interval commits happen before kills.
        const std::uint64_t window = 30 + 2 * std::uint64_t{scenario_.commit_interval_ms};
        std::uint64_t slept = 0;
        for (std::uint64_t b = 1; b < bursts; ++b) {
            const auto pause = dice_.between(0, window / 8);
            std::this_thread::sleep_for(std::chrono::milliseconds(pause));
            slept += pause;
            if (dice_.chance(10)) {
                rotate_if_safe("while running");
            }
            writer_.append(dice_.between(1, 40), dice_.chance(30));
        }
        const auto pause =
            dice_.chance(50) ? 0 : dice_.between(0, window - std::min(slept, window));
        std::this_thread::sleep_for(std::chrono::milliseconds(pause));
        run.status = child->stop(scenario_.signal);
        run.graceful = term;
        run.status_ok =
            run.status && (term ? WIFEXITED(*run.status) && WEXITSTATUS(*run.status) == 0
                                : WIFSIGNALED(*run.status) && WTERMSIG(*run.status) == SIGKILL);
        run.how = fmt::format("--batch-lines {}{}, {} {} + {} ms", run.batch_lines,
                              run.polling ? " --no-inotify" : "", term ? "SIGTERM" : "SIGKILL",
                              name_of(moment), slept + pause);
        finish(run);
    }

    void run_to_idle_exit() {
        writer_.finish_line();
        Run run;
        auto child = spawn(run, true);
        run.status = child->reap();
        run.graceful = true;
        run.status_ok = run.status && WIFEXITED(*run.status) && WEXITSTATUS(*run.status) == 0;
        run.how = fmt::format("--batch-lines {}{}, --idle-exit-ms 300", run.batch_lines,
                              run.polling ? " --no-inotify" : "");
        finish(run);
    }

    // Splits a run's output into line numbers, checking each line byte for byte. A SIGKILL
    // may cut the sink's write(2) short, so a killed run may end in a piece of its next line.
    void parse_output(Run& run, const std::string& where, std::uint64_t total) {
        std::string_view rest = run.output;
        while (!rest.empty()) {
            const auto newline = rest.find('\n');
            const std::string_view line = rest.substr(0, newline);
            std::uint64_t seq = 0;
            const bool numbered =
                line.starts_with("seq=") &&
                std::from_chars(line.data() + 4, line.data() + line.size(), seq).ec == std::errc{};
            if (newline == std::string_view::npos) {
                const std::uint64_t next =
                    (run.seqs.empty() ? run.resumed_after : run.seqs.back()) + 1;
                if (run.graceful || next > total || !writer_.line(next).starts_with(line)) {
                    problem(fmt::format("{}: output ends in an incomplete line '{}'", where,
                                        shorten(line)));
                }
                break;
            }
            if (!numbered || seq == 0 || seq > total || writer_.line(seq) != line) {
                problem(fmt::format("{}: delivered '{}', which is not a line of the log", where,
                                    shorten(line)));
            } else {
                run.seqs.push_back(seq);
            }
            rest.remove_prefix(newline + 1);
        }
    }

    Scenario scenario_;
    Dice dice_;
    TempDir dir_;
    fs::path path_;
    fs::path checkpoint_;
    CheckpointStore store_;
    LogWriter writer_;
    fs::path out_;
    fs::path err_;
    std::vector<Run> runs_;
    std::vector<std::string> events_;
    std::vector<std::string> problems_;
    std::size_t rotations_{0};
};

}  // namespace

TEST_CASE(
    "snaptail-follow killed at random moments and restarted loses no line and repeats "
    "at most one commit",
    "[tailer][crash]") {
    if (follow_binary.empty()) {
        WARN("skipped: SNAPTAIL_FOLLOW_PATH (the path of snaptail-follow) is not defined");
        return;
    }
    REQUIRE(fs::exists(follow_binary));
    const Scenario scenarios[] = {
        {"SIGKILL, commit after every batch: at most one batch again", SIGKILL, 0, 40},
        {"SIGKILL, commit every 50 ms: resumes exactly at the checkpoint", SIGKILL, 50, 20},
        {"SIGTERM: nothing again", SIGTERM, 0, 20},
    };
    for (const auto& scenario : scenarios) {
        DYNAMIC_SECTION(scenario.name) {
            const std::uint64_t seed = crash_seed();
            INFO("seed " << seed << " (rerun with SNAPTAIL_CRASH_SEED=" << seed << ")");
            CrashTest test(scenario, seed);
            test.run_all();
            const auto problems = test.check();
            std::ostringstream report;
            for (const auto& problem : problems) {
                report << problem << "\n";
            }
            INFO(problems.size() << " problem(s):\n"
                                 << report.str() << "\n"
                                 << test.lines_written() << " lines written, " << test.rotations()
                                 << " rotations\n"
                                 << test.run_log());
            CHECK(problems.empty());
            if (std::getenv("SNAPTAIL_CRASH_VERBOSE") != nullptr) {
                WARN(test.lines_written()
                     << " lines written, " << test.rotations() << " rotations\n"
                     << test.run_log());
            }
        }
    }
}
