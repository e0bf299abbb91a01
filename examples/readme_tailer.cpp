// The README's "Following a file" snippet, compiled so that it stays true. Follows the path
// given on the command line (default /var/log/orders.log) until SIGINT.
#include <snaptail/batching_tailer.hpp>

#include <fmt/format.h>
#include <signal.h>

#include <cstdio>
#include <string_view>

namespace {

std::size_t lines_seen = 0;

void handle(std::string_view line) {
    ++lines_seen;
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fputc('\n', stdout);
}

}  // namespace

int main(int argc, char** argv) {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // the tailer's thread inherits this

    // --- README snippet ---
    snaptail::TailOptions options;
    options.path = "/var/log/orders.log";
    options.checkpoint_path = "/var/lib/myapp/orders.ck";  // resume where we left off

    if (argc > 1) {  // not in the README: let the example run anywhere
        options.path = argv[1];
        options.checkpoint_path = argc > 2 ? argv[2] : std::string(argv[1]) + ".ck";
    }

    snaptail::BatchingTailer tailer(options, snaptail::RawLineParser{},
                                    [](snaptail::Batch<std::string_view>& batch) {
                                        for (std::string_view line : batch.records()) {
                                            handle(line);  // views into snaptail's buffer
                                        }
                                    });
    tailer.start();  // on its own thread; tailer.stop() delivers what was read, commits, joins
    // --- end of snippet ---

    int signal = 0;
    sigwait(&signals, &signal);
    tailer.stop();
    std::fflush(stdout);
    fmt::print(stderr, "readme_tailer: {} lines; {}\n", lines_seen, tailer.stats());
    return 0;
}
