// The file on disk is the buffer: a slow sink stops the reader instead of growing memory.
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <snaptail/batching_tailer.hpp>

#include <thread>

using namespace snaptail;
using namespace snaptail::test;

TEST_CASE("a slow sink on a large file keeps read-ahead within read_ahead_bytes",
          "[tailer][backpressure]") {
    TempDir dir;
    const auto path = dir / "big.log";
    constexpr int total = 20'000;  // about 2 MiB, 32 times the read-ahead bound
    std::vector<std::string> lines;
    lines.reserve(total);
    for (int i = 1; i <= total; ++i) {
        lines.push_back(fmt::format("{:08} {:->90}", i, ""));
    }
    append(path, text_of(lines));

    auto options = quick_options(path);
    options.read_ahead_bytes = 64 << 10;
    options.max_line_bytes = 1024;
    options.max_batch_lines = 500;
    Collector got;
    std::size_t batches_seen = 0;
    got.before_batch = [&](Batch<std::string_view>&) {
        ++batches_seen;
        std::this_thread::sleep_for(200us);  // a sink slower than the reader
    };
    BatchingTailer<RawLineParser> tailer(options, RawLineParser{}, got.sink());
    tailer.start();
    REQUIRE(got.wait_for_lines(total));
    tailer.stop();

    CHECK(got.lines() == lines);
    const auto stats = tailer.stats();
    CHECK(stats.read_ahead_high_water <= options.read_ahead_bytes);
    CHECK(stats.read_ahead_high_water > 0);
    CHECK(stats.bytes == fs::file_size(path));
    CHECK(batches_seen == stats.batches);
}
