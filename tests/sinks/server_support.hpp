// What the sink tests and benchmarks share: child processes that cannot outlive their owner
// (RAII), servers of their own on loopback in temporary directories (PostgreSQL, nats-server),
// and a log writer that remembers where every line went. No Catch2 here.
#pragma once

#include "find_program.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/position.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

extern char** environ;

namespace snaptail::test {

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
inline int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        throw std::system_error(errno, std::generic_category(), "free_port");
    }
    ::close(fd);
    return ntohs(address.sin_port);
}

/// Whether something accepts TCP connections on 127.0.0.1:port.
inline bool port_open(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool open = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    return open;
}

/// Polls `condition` every 10 ms until it holds or `limit` passes.
template <class Condition>
bool wait_until(Condition&& condition, std::chrono::milliseconds limit = deadline) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > until) {
            return false;
        }
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

/// Who a server runs as: PostgreSQL refuses to run as root, and CI runs as root.
struct RunAs {
    uid_t uid;
    gid_t gid;
};

/// `nobody` when running as root; nobody else otherwise.
inline std::optional<RunAs> unprivileged_user() {
    if (::geteuid() != 0) {
        return std::nullopt;
    }
    const passwd* pw = ::getpwnam("nobody");
    if (pw == nullptr) {
        throw std::runtime_error("running as root and there is no user 'nobody' to run servers as");
    }
    return RunAs{pw->pw_uid, pw->pw_gid};
}

inline std::string slurp_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The last `max` bytes of a file (a child's log, for a failure message).
inline std::string tail_of(const fs::path& path, std::size_t max = 4000) {
    const std::string text = slurp_file(path);
    return text.size() > max ? text.substr(text.size() - max) : text;
}

/// A child process in a process group of its own, with stdout and stderr appended to a file.
/// Destruction stops the group: `stop_signal` first, SIGKILL after `grace`, then reaps it.
class Child {
  public:
    Child(std::vector<std::string> argv, const fs::path& output, std::optional<RunAs> as = {},
          int stop_signal = SIGKILL, std::chrono::milliseconds grace = 10s)
        : stop_signal_(stop_signal), grace_(grace) {
        std::vector<char*> args;
        for (auto& arg : argv) {
            args.push_back(arg.data());
        }
        args.push_back(nullptr);
        const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (out < 0) {
            throw std::system_error(errno, std::generic_category(), "open " + output.string());
        }
        if (as && ::fchown(out, as->uid, as->gid) != 0) {
            ::close(out);
            throw std::system_error(errno, std::generic_category(), "chown " + output.string());
        }
        pid_ = ::fork();
        if (pid_ == 0) {
            // Only async-signal-safe calls from here to exec: the parent may have threads.
            ::setpgid(0, 0);
            ::dup2(out, STDOUT_FILENO);
            ::dup2(out, STDERR_FILENO);
            const int devnull = ::open("/dev/null", O_RDONLY);
            ::dup2(devnull, STDIN_FILENO);
            if (as) {
                if (::syscall(SYS_setgroups, 0, nullptr) != 0 ||
                    ::syscall(SYS_setresgid, as->gid, as->gid, as->gid) != 0 ||
                    ::syscall(SYS_setresuid, as->uid, as->uid, as->uid) != 0) {
                    ::_exit(126);
                }
            }
            ::execve(args[0], args.data(), environ);
            ::_exit(127);
        }
        ::close(out);
        if (pid_ < 0) {
            throw std::system_error(errno, std::generic_category(), "fork");
        }
        ::setpgid(pid_, pid_);  // also here, so that a group exists before the child runs
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() { stop(); }

    pid_t pid() const noexcept { return pid_; }
    bool running() const noexcept { return pid_ > 0; }

    /// Sends `sig` to the child's process group.
    void signal(int sig) const noexcept {
        if (pid_ > 0) {
            ::kill(-pid_, sig);
        }
    }

    /// Waits for the child; its exit status, or 128 + the signal that ended it.
    int wait() {
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    /// Whether it has exited (reaping it if so).
    bool exited(int& status_out) {
        int status = 0;
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r != pid_) {
            return false;
        }
        pid_ = -1;
        status_out = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return true;
    }

    /// Stops the group (stop_signal, then SIGKILL after the grace period) and reaps the child.
    void stop() noexcept {
        if (pid_ <= 0) {
            return;
        }
        const pid_t group = pid_;
        ::kill(-group, stop_signal_);
        const auto until = std::chrono::steady_clock::now() + grace_;
        int status = 0;
        while (::waitpid(pid_, &status, WNOHANG) == 0) {
            if (std::chrono::steady_clock::now() > until) {
                ::kill(-group, SIGKILL);
                ::waitpid(pid_, &status, 0);
                break;
            }
            std::this_thread::sleep_for(5ms);
        }
        ::kill(-group, SIGKILL);  // what the leader left behind (PostgreSQL's backends)
        pid_ = -1;
    }

  private:
    pid_t pid_{-1};
    int stop_signal_;
    std::chrono::milliseconds grace_;
};

/// Runs a program to its end; throws with its output if it fails.
inline void run_program(std::vector<std::string> argv, const fs::path& output,
                        std::optional<RunAs> as = {}) {
    const std::string shown = argv.front();
    Child child(std::move(argv), output, as);
    const int status = child.wait();
    if (status != 0) {
        throw std::runtime_error(
            fmt::format("{} exited with {}:\n{}", shown, status, slurp_file(output)));
    }
}

/// The directory with PostgreSQL's server programs (initdb, postgres): the newest
/// /usr/lib/postgresql/<version>/bin, or the one on PATH.
inline std::optional<fs::path> postgres_bin_dir() {
    std::vector<fs::path> dirs;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
        dirs.push_back(entry.path() / "bin");
    }
    std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
        return std::stoi(a.parent_path().filename().string()) >
               std::stoi(b.parent_path().filename().string());
    });
    const auto initdb = find_program("initdb", dirs);
    if (!initdb || !fs::exists(initdb->parent_path() / "postgres")) {
        return std::nullopt;
    }
    return initdb->parent_path();
}

/// A PostgreSQL server of the test's own: initdb in a temporary directory (as `nobody` when
/// running as root), listening on 127.0.0.1 at a free port, trust authentication, fsync off.
/// stop() and start() keep its data; destruction stops it (immediate shutdown).
class PostgresServer {
  public:
    /// Why no server can be started here, or nullopt if one can.
    static std::optional<std::string> unavailable() {
        if (!postgres_bin_dir()) {
            return "PostgreSQL's initdb and postgres were not found (Debian: apt-get install "
                   "postgresql)";
        }
        return std::nullopt;
    }

    PostgresServer() : bin_(*postgres_bin_dir()), as_(unprivileged_user()), port_(free_port()) {
        if (as_ && ::chown(dir_.path().c_str(), as_->uid, as_->gid) != 0) {
            throw std::system_error(errno, std::generic_category(), "chown the server directory");
        }
        run_program({(bin_ / "initdb").string(), "-D", (dir_ / "data").string(), "-U", "snaptail",
                     "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"},
                    dir_ / "initdb.log", as_);
        start();
    }

    /// Starts the server and waits until it accepts connections.
    void start() {
        const std::size_t ready_before = times_ready();
        server_.emplace(
            std::vector<std::string>{(bin_ / "postgres").string(), "-D", (dir_ / "data").string(),
                                     "-p", std::to_string(port_), "-k", dir_.path().string(), "-c",
                                     "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                                     "full_page_writes=off"},
            dir_ / "server.log", as_, SIGQUIT);
        // The port opens before the server accepts sessions ("the database system is starting
        // up"); the log says when it does.
        if (!wait_until([&] { return times_ready() > ready_before; }, 60s)) {
            throw std::runtime_error("PostgreSQL did not start:\n" + log());
        }
    }

    /// Stops the server as a crash would (SIGQUIT: immediate shutdown, no checkpoint).
    void stop() { server_.reset(); }

    /// A libpq connection string for database `dbname`.
    std::string conninfo(std::string_view dbname = "postgres") const {
        return fmt::format("host=127.0.0.1 port={} user=snaptail dbname={} connect_timeout=10",
                           port_, dbname);
    }
    std::string log() const { return slurp_file(dir_ / "server.log"); }

  private:
    std::size_t times_ready() const {
        const std::string text = log();
        std::size_t n = 0;
        for (auto at = text.find(ready_line); at != text.npos; at = text.find(ready_line, at + 1)) {
            ++n;
        }
        return n;
    }
    static constexpr std::string_view ready_line = "database system is ready to accept connections";

    TempDir dir_;
    fs::path bin_;
    std::optional<RunAs> as_;
    int port_;
    std::optional<Child> server_;
};

/// A nats-server with JetStream, its store in a temporary directory, on 127.0.0.1; optionally a
/// node of a cluster (routes to the others' cluster ports). stop() and start() keep its store.
class NatsServer {
  public:
    static std::optional<std::string> unavailable() {
        if (!find_program("nats-server", {"/usr/sbin", "/usr/bin"})) {
            return "nats-server was not found (Debian: apt-get install nats-server)";
        }
        return std::nullopt;
    }

    struct Cluster {
        std::string name;         // this node's server name
        int port;                 // this node's cluster (route) port
        std::vector<int> routes;  // the other nodes' cluster ports
    };

    explicit NatsServer(std::optional<Cluster> cluster = {})
        : binary_(*find_program("nats-server", {"/usr/sbin", "/usr/bin"})),
          port_(free_port()),
          cluster_(std::move(cluster)) {
        start();
    }

    /// Starts the server and waits until it accepts client connections.
    void start() {
        std::vector<std::string> args{
            binary_.string(),     "-js", "-sd", (dir_ / "store").string(), "-a", "127.0.0.1", "-p",
            std::to_string(port_)};
        if (cluster_) {
            std::string routes;
            for (int route : cluster_->routes) {
                routes += fmt::format("{}nats://127.0.0.1:{}", routes.empty() ? "" : ",", route);
            }
            args.insert(args.end(),
                        {"-n", cluster_->name, "--cluster_name", "snaptail", "--cluster",
                         fmt::format("nats://127.0.0.1:{}", cluster_->port), "--routes", routes});
        }
        server_.emplace(std::move(args), dir_ / "server.log", std::nullopt, SIGTERM);
        if (!wait_until([&] { return port_open(port_); }, 30s)) {
            throw std::runtime_error("nats-server did not start:\n" + log());
        }
    }
    /// Kills the server (SIGKILL: no clean shutdown).
    void kill() {
        if (server_) {
            server_->signal(SIGKILL);
            server_->wait();
            server_.reset();
        }
    }
    std::string url() const { return fmt::format("nats://127.0.0.1:{}", port_); }
    int port() const noexcept { return port_; }
    std::string log() const { return slurp_file(dir_ / "server.log"); }

  private:
    TempDir dir_;
    fs::path binary_;
    int port_;
    std::optional<Cluster> cluster_;
    std::optional<Child> server_;
};

/// A log the tests append numbered lines to ("seq=<n> <padding>") and rotate by rename; it
/// remembers which file (identity) and offset each line went to.
class NumberedLog {
  public:
    explicit NumberedLog(fs::path path, std::uint64_t seed = 1)
        : path_(std::move(path)), rng_(seed) {
        create();
    }
    NumberedLog(const NumberedLog&) = delete;
    NumberedLog& operator=(const NumberedLog&) = delete;
    ~NumberedLog() { ::close(fd_); }

    /// Appends `count` lines with one write(2).
    void append(std::size_t count) {
        std::string text;
        for (std::size_t i = 0; i < count; ++i) {
            const std::uint64_t seq = lines_.size() + 1;
            std::string line = fmt::format("seq={} ", seq);
            const auto padding = std::uniform_int_distribution<int>(0, 60)(rng_);
            for (int j = 0; j < padding; ++j) {
                line += static_cast<char>('a' + (seq + static_cast<std::uint64_t>(j)) % 26);
            }
            where_.push_back({files_.back().id, files_.back().size + text.size()});
            text += line;
            text += '\n';
            lines_.push_back(std::move(line));
        }
        std::string_view rest = text;
        while (!rest.empty()) {
            const ssize_t n = ::write(fd_, rest.data(), rest.size());
            if (n <= 0) {
                throw std::system_error(errno, std::generic_category(), "write the log");
            }
            rest.remove_prefix(static_cast<std::size_t>(n));
        }
        files_.back().size += text.size();
    }

    /// Renames the file to "<path>.<n>" and continues in a new file at the path.
    void rotate() {
        ::close(fd_);
        fd_ = -1;
        fs::rename(path_, fmt::format("{}.{}", path_.string(), files_.size()));
        create();
    }

    const fs::path& path() const noexcept { return path_; }
    std::uint64_t size() const noexcept { return lines_.size(); }
    const std::string& line(std::uint64_t seq) const { return lines_.at(seq - 1); }
    /// Where line `seq` (from 1) was written.
    std::pair<FileId, std::uint64_t> where(std::uint64_t seq) const {
        const auto& w = where_.at(seq - 1);
        return {w.file, w.offset};
    }
    /// Lines written to the files before the current one.
    std::uint64_t lines_before_current() const noexcept { return files_.back().first_seq - 1; }
    std::size_t files() const noexcept { return files_.size(); }

  private:
    struct File {
        FileId id;
        std::uint64_t first_seq;
        std::uint64_t size;
    };
    struct Where {
        FileId file;
        std::uint64_t offset;
    };

    void create() {
        fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
        struct stat st {};
        if (fd_ < 0 || ::fstat(fd_, &st) != 0) {
            throw std::system_error(errno, std::generic_category(), "create " + path_.string());
        }
        files_.push_back(
            {FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)},
             lines_.size() + 1, 0});
    }

    fs::path path_;
    std::mt19937_64 rng_;
    int fd_{-1};
    std::vector<File> files_;
    std::vector<std::string> lines_;
    std::vector<Where> where_;
};

/// The seed of a randomized test: SNAPTAIL_SINK_SEED, or a fresh one (printed by the test).
inline std::uint64_t sink_test_seed() {
    if (const char* text = std::getenv("SNAPTAIL_SINK_SEED")) {
        return std::strtoull(text, nullptr, 10);
    }
    std::random_device device;
    return (std::uint64_t{device()} << 32) ^ std::uint64_t{device()};
}

}  // namespace snaptail::test
